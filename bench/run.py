"""`make bench`: ingest throughput of `revmon replay` against a bare Faust agent, same machine.

Both read the same kind of input from the embedded Tansu broker: a simulated history,
one event per message (`--batch 1`, the like-for-like comparison) and, for revmon, also
batched (`--batch 500`, how bulk replays send). Rates are events per second per worker,
from the first processed batch until every acknowledged offset is consumed.

    python bench/run.py [--leads-per-day 520 --days 400]   # ~1M events
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import faust
import orjson

from revmon.broker import Connection, EmbeddedBroker, ensure_topics
from revmon.endoffsets import use_true_end_offsets
from revmon.engine import MetricEngine
from revmon.events import LeadCreated
from revmon.logs import configure
from revmon.produce import produce_file
from revmon.replay import replay_on, replay_settings
from revmon.settings import load_settings
from revmon.simulate import SimulationConfig, simulate, write_jsonl


async def bare_agent(servers: str, path: Path) -> tuple[int, float]:
    """Events/s of a Faust agent that only decodes each message's JSON."""
    settings = load_settings(None, broker=f"kafka://{servers}")
    tag = uuid.uuid4().hex[:8]
    topics = settings.topics.model_copy(
        update={n: f"bare{tag}.{n}" for n in ("crm", "marketing", "billing")}
    )
    connection = Connection(servers, settings.kafka)
    await ensure_topics(connection, topics.inputs, settings.partitions)
    produced = await produce_file(path, connection, topics, batch=1)
    app = faust.App(
        f"bare-{tag}",
        broker=f"kafka://{servers}",
        store="memory://",
        web_enabled=False,
        datadir=tempfile.mkdtemp(),
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
    )
    use_true_end_offsets(app)
    topic = app.topic(*topics.inputs, key_serializer="raw", value_serializer="raw")
    seen: dict[tuple[str, int], int] = {}
    counted = [0]
    first: list[float] = []

    async def agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            if not first:
                first.append(time.monotonic())
            decoded = orjson.loads(event.message.value)
            counted[0] += len(decoded) if isinstance(decoded, list) else 1
            seen[(event.message.topic, event.message.partition)] = event.message.offset

    app.agent(topic, name="bare")(agent)
    await app.start()
    try:
        # Polling the agent's progress is the measurement itself.
        while not all(seen.get(tp, -1) >= off for tp, off in produced.last_offsets.items()):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    finally:
        elapsed = time.monotonic() - first[0]
        await app.stop()
    return counted[0], elapsed


async def revmon_replay(servers: str, path: Path, batch: int) -> tuple[int, float]:
    """Events/s of revmon's worker on the same file."""
    settings = replay_settings(load_settings(None, broker=f"kafka://{servers}"))
    tag = uuid.uuid4().hex[:8]
    topics = settings.topics.model_copy(
        update={n: f"rev{tag}.{n}" for n in ("crm", "marketing", "billing", "dead_letter")}
    )
    settings = settings.model_copy(update={"topics": topics})
    result = await replay_on(servers, path, settings, batch=batch, limit=3600)
    assert result.caught_up
    return result.produced.lines, result.process_seconds


def memory_per_open_lead(count: int) -> float:
    """Bytes of engine state per open lead, for `count` leads created on one partition."""
    settings = load_settings()
    engine = MetricEngine(settings)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    ledgers = engine.ledgers(0)
    engine.recovered(0)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        event = LeadCreated(
            event_id=f"e{i}",
            occurred_at=start + timedelta(seconds=i),
            type="lead.created",
            lead_id=f"lead-{i:08d}",
            channel="organic",
        )
        engine.apply(event, 0)
        if i % 10_000 == 0:
            for ledger in ledgers.values():
                ledger.drain()  # what the worker's journal flush does once per batch
    for ledger in ledgers.values():
        ledger.drain()
    engine.outbox.clear()
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / count


def main() -> int:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=400)
    parser.add_argument("--leads-per-day", type=float, default=520.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--open-leads", type=int, default=1_000_000)
    args = parser.parse_args()
    configure("WARNING")
    per_lead = memory_per_open_lead(args.open_leads)
    print(f"state memory: {per_lead:,.0f} bytes per open lead at {args.open_leads:,} open leads")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "history.jsonl"
        settings = load_settings()
        config = SimulationConfig.from_settings(
            settings, days=args.days, seed=args.seed, leads_per_day=args.leads_per_day
        )
        started = time.monotonic()
        count = write_jsonl(simulate(config), path)
        print(f"simulated {count:,} events in {time.monotonic() - started:.1f}s", flush=True)
        with EmbeddedBroker() as broker:
            servers = broker.bootstrap_servers
            n, secs = asyncio.run(bare_agent(servers, path))
            bare = n / secs
            print(f"bare Faust agent (JSON decode only), 1 event/message: {bare:,.0f} events/s")
            rows = []
            for batch in (1, 500):
                n, secs = asyncio.run(revmon_replay(servers, path, batch))
                rows.append((batch, n / secs))
                print(
                    f"revmon replay, {batch} events/message: {n / secs:,.0f} events/s "
                    f"({n / secs / bare:.2f} of the bare agent)",
                    flush=True,
                )
    print(
        orjson.dumps(
            {
                "events": count,
                "bare": bare,
                "revmon": {str(b): r for b, r in rows},
                "bytes_per_open_lead": per_lead,
            }
        ).decode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

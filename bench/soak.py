"""`make bench`: a soak, months of simulated input compressed into minutes, to see that
memory and state stay flat once the windows are full.

A `revmon run` worker (event clock, memory store, embedded broker) gets a simulated
history at a steady rate, one event per message. The simulated business is steady too,
so that a flat curve is what a correct daemon must show: a constant lead rate (no yearly
growth, no seasonal wave), a finite market of accounts that new leads come from once it
is known, and customers that churn as fast as new ones sign. Closed leads and deals are
forgotten after `--retention` (the worker's `closed_retention`, by default its shortest
allowed value).

Every few seconds the worker's resident memory (`VmRSS`) and the simulated day it has
reached (the watermark) are sampled. At the end the state changelogs are read once, puts
and deletes applied in order, which gives the live state (keys and bytes, what a
compacted changelog keeps) at each sample's wall time. Both saw-tooth: the journal is
trimmed, old dedupe ids and closed entities forgotten and windows expired at each
snapshot. Once the longest window, the retention and the dedupe horizon are full, the
peaks of the first half of the remaining samples are compared with those of the second
half: they must not grow by more than `--tolerance`.

    python bench/soak.py [--days 540 --leads-per-day 100 --seconds 240 --every 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from freshness import steady_load, wait_ready

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.endoffsets import true_end_offsets
from revmon.kpi.pipeline import FORECAST_HORIZON, PACE_WINDOWS
from revmon.logs import configure
from revmon.settings import Settings, load_settings
from revmon.simulate import SimulationConfig, simulate, write_jsonl

DAY = 86_400.0


@dataclass
class Sample:
    """One sample of the running worker."""

    wall: float  # unix seconds
    day: float  # simulated days since the history's start
    rss: int  # bytes
    keys: int = 0  # live state records (filled from the changelogs)
    state: int = 0  # live state bytes


def rss(pid: int) -> int:
    """Resident memory of process `pid`, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def watermark(port: int) -> float | None:
    """The worker's watermark (event time it has reached), or None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            for line in reply.read().splitlines():
                if line.startswith(b"revmon_watermark_seconds "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


# The steady business (see the module's docstring): churn that balances the new customers
# of 100 leads a day, and the accounts there are to sell to.
STEADY = {"lead_growth": 0.0, "yearly_wave": 0.0, "monthly_cancel": 0.04, "annual_billing": 0.0}
MARKET_PER_DAILY_LEAD = 50


def worker_config(
    tmp: Path, servers: str, retention: str, snapshot_every: int
) -> tuple[Path, Settings, int]:
    """A `revmon run` config on its own topics; the path, its settings and its web port."""
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    config = {
        "broker": f"kafka://{servers}",
        "clock": "event",
        "closed_retention": retention,
        "web_port": port,
        "topics": {n: f"soak{tag}.{n}" for n in ("crm", "marketing", "billing", "metrics")}
        | {"dead_letter": f"soak{tag}.dlq", "alerts": f"soak{tag}.alerts"},
        "worker": {
            "app_id": f"soak-{tag}",
            "store": "memory",
            "data_dir": str(tmp / tag),
            "snapshot_every": snapshot_every,
        },
    }
    path = tmp / "soak.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, load_settings(path), port


async def live_state(
    connection: Connection, changelogs: list[str], partitions: int, samples: list[Sample]
) -> None:
    """Fill each sample's live state (keys, bytes) by replaying the changelogs in time order."""
    options = connection.aiokafka_options()
    tps = [TopicPartition(t, p) for t in changelogs for p in range(partitions)]
    ends = {tp: end for tp, end in (await true_end_offsets(options, tps)).items() if end > 0}
    consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[tuple[int, bytes, int]] = []  # (timestamp ms, key, value size or -1)
    try:
        consumer.assign(list(ends))
        await consumer.seek_to_beginning(*ends)
        while [tp for tp in ends if await consumer.position(tp) < ends[tp]]:
            for tp, batch in (await consumer.getmany(timeout_ms=1000)).items():
                for r in batch:
                    size = -1 if r.value is None else len(r.value)
                    key = tp.topic.encode() + b"|" + (r.key or b"")
                    records.append((r.timestamp, key, size))
    finally:
        await consumer.stop()
    records.sort(key=lambda r: r[0])
    live: dict[bytes, int] = {}
    total = 0
    i = 0
    for sample in samples:
        while i < len(records) and records[i][0] <= sample.wall * 1000:
            _, key, size = records[i]
            total -= live.pop(key, 0)
            if size >= 0:
                live[key] = size
                total += size
            i += 1
        sample.keys, sample.state = len(live), total


def soak(args: argparse.Namespace, history: Path, start_at: float, count: int) -> list[Sample]:
    """Run the worker under the steady load; the samples."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        config, settings, port = worker_config(
            Path(tmp), broker.bootstrap_servers, args.retention, args.snapshot_every
        )
        connection = Connection(broker.bootstrap_servers, settings.kafka)
        topics = settings.topics
        asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 4))
        worker = subprocess.Popen(
            [sys.executable, "-m", "revmon", "run", "--config", str(config)],
            env={k: v for k, v in os.environ.items() if not k.startswith("REVMON_")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        samples: list[Sample] = []
        try:
            wait_ready(port)
            rate = count / args.seconds
            print(f"soak: {count:,} events over {args.days} days at {rate:,.0f} events/s")
            loop = asyncio.new_event_loop()
            load = loop.create_task(steady_load(history, connection, topics, rate))
            last_day = -1.0
            while True:
                loop.run_until_complete(asyncio.sleep(args.every))
                mark = watermark(port)
                day = (mark - start_at) / DAY if mark is not None else 0.0
                samples.append(Sample(time.time(), day, rss(worker.pid)))
                if load.done() and day == last_day:
                    break  # everything sent and applied
                last_day = day
            loop.run_until_complete(load)
            loop.close()
            app_id = settings.worker.app_id
            changelogs = [f"{app_id}-state-changelog", f"{app_id}-accounts-changelog"]
            asyncio.run(live_state(connection, changelogs, settings.partitions, samples))
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    return samples


def main() -> int:
    """Run the soak; print the curve and whether memory and state stayed flat."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=540)
    parser.add_argument("--leads-per-day", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=240.0, help="wall time of the feed")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--tolerance", type=float, default=0.15, help="allowed growth")
    parser.add_argument(
        "--retention", default="365d", help="the worker's closed_retention (default 365d)"
    )
    parser.add_argument(
        "--snapshot-every",
        type=int,
        default=10_000,
        help="the worker's worker.snapshot_every: the saw-tooth's period, in changes",
    )
    args = parser.parse_args()
    if args.days < 30:
        parser.error("a soak runs at least 30 simulated days")
    configure("WARNING")
    settings = load_settings(None, closed_retention=args.retention)
    # Full windows: the longest window any book keeps (the pipeline's 365-day forecast),
    # the retention of closed entities and the dedupe horizon have passed.
    longest = max(*(w.seconds for w in settings.window_list), PACE_WINDOWS[-1].seconds)
    retention = settings.closed_retention or 0.0
    full_day = (max(longest, FORECAST_HORIZON, retention) + settings.dedupe_horizon) / DAY
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.jsonl"
        config = SimulationConfig.from_settings(
            settings,
            days=args.days,
            seed=11,
            leads_per_day=args.leads_per_day,
            market=round(args.leads_per_day * MARKET_PER_DAILY_LEAD),
            **STEADY,
        )
        count = write_jsonl(simulate(config), history)
        start_at = config.start.timestamp()
        samples = soak(args, history, start_at, count)
    print(f"{'day':>6} {'RSS MiB':>8} {'state keys':>10} {'state MiB':>9}")
    for s in samples:
        print(f"{s.day:6.1f} {s.rss / 2**20:8.1f} {s.keys:10,} {s.state / 2**20:9.2f}")
    full = [s for s in samples if s.day >= full_day]
    if len(full) < 4:
        print(f"the windows were never full (day {full_day:.0f}): run more --days")
        return 1
    # The journal is trimmed and old ids forgotten at each snapshot, so memory and state
    # saw-tooth between snapshots: compare the peaks of the two halves after the windows
    # are full.
    half = len(full) // 2
    early, late = full[:half], full[half:]
    rss_early, rss_late = max(s.rss for s in early), max(s.rss for s in late)
    state_early, state_late = max(s.state for s in early), max(s.state for s in late)
    rss_growth = rss_late / rss_early - 1
    state_growth = state_late / state_early - 1 if state_early else 0.0
    print(
        f"peaks, days {early[0].day:.0f}-{early[-1].day:.0f} (windows full) against days "
        f"{late[0].day:.0f}-{late[-1].day:.0f}: RSS {rss_early / 2**20:.1f} -> "
        f"{rss_late / 2**20:.1f} MiB ({rss_growth:+.1%}), state {state_early / 2**20:.2f} -> "
        f"{state_late / 2**20:.2f} MiB ({state_growth:+.1%})"
    )
    flat = rss_growth <= args.tolerance and state_growth <= args.tolerance
    print("flat" if flat else f"GROWING (more than {args.tolerance:.0%})")
    return 0 if flat else 1


if __name__ == "__main__":
    raise SystemExit(main())

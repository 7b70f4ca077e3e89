"""`make bench`: freshness, the time from an event being produced to its effect on
`/metrics` and on the metrics topic, under a steady input at half the measured maximum.

1. The maximum: `revmon replay` of a simulated history (one event per message), events/s.
2. A `revmon run` worker (event clock, `publish_interval` 1s unless given) on the
   embedded broker gets that history at half the maximum rate, one event per message, and
   every 0.2 s a probe event dated after every other (an `expense.recorded`), so that the
   moment it is applied is the moment the watermark (`revmon_watermark_seconds`, SPEC §3.9,
   computed with every other series) reaches its `occurred_at`.
3. Freshness per probe: send → the first `/metrics` scrape (polled every 250 ms) showing it,
   and send → the metrics-topic message carrying it. p50 and p99 over the probes.

    python bench/freshness.py [--days 200 --leads-per-day 300 --seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from run import revmon_replay

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.logs import configure
from revmon.produce import route
from revmon.settings import Topics, load_settings
from revmon.simulate import SimulationConfig, simulate, write_jsonl

PROBE_EVERY = 0.2
SCRAPE_EVERY = 0.25  # a scrape costs the worker 25-170 ms: polling faster would slow it
PROBE_BASE = datetime(2030, 1, 1, tzinfo=UTC)  # after every simulated event
WATERMARK = b"revmon_watermark_seconds"


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def worker_config(tmp: Path, servers: str, interval: str) -> tuple[Path, Topics, int]:
    """A `revmon run` config on its own topics; returns it, the topics and its web port."""
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    topics = {n: f"fresh{tag}.{n}" for n in ("crm", "marketing", "billing", "metrics")}
    config = {
        "broker": f"kafka://{servers}",
        "clock": "event",
        "publish_interval": interval,
        "web_port": port,
        "topics": topics | {"dead_letter": f"fresh{tag}.dlq", "alerts": f"fresh{tag}.alerts"},
        "worker": {"app_id": f"fresh-{tag}", "store": "memory", "data_dir": str(tmp / tag)},
    }
    path = tmp / "freshness.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, load_settings(path).topics, port


SCRAPES: list[float] = []  # seconds per scrape of /metrics


def watermark(port: int) -> float | None:
    """The watermark on the worker's /metrics, or None."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            body = reply.read()
            SCRAPES.append(time.monotonic() - started)
            for line in body.splitlines():
                if line.startswith(WATERMARK + b" "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


class Probes:
    """Probe send times, and when each was first seen on /metrics and on the topic."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, float]] = []  # (occurred_at, wall time sent)
        self.metrics: dict[int, float] = {}
        self.topic: dict[int, float] = {}

    def seen(self, where: dict[int, float], mark: float, at: float) -> None:
        """Every probe with occurred_at <= `mark` not seen yet there is seen at `at`."""
        for i, (occurred, _) in enumerate(self.sent):
            if occurred <= mark and i not in where:
                where[i] = at

    def delays(self, where: dict[int, float]) -> list[float]:
        """Seconds from send to seen, per probe seen."""
        return [where[i] - sent for i, (_, sent) in enumerate(self.sent) if i in where]


async def steady_load(path: Path, connection: Connection, topics: Topics, rate: float) -> None:
    """Send the history one event per message at `rate` events/s until cancelled."""
    producer = AIOKafkaProducer(**connection.aiokafka_options(), linger_ms=5)
    await producer.start()
    try:
        started = time.monotonic()
        with path.open("rb") as lines:
            for sent, line in enumerate(lines):
                due = started + sent / rate
                delay = due - time.monotonic()
                if delay > 0.005:
                    await asyncio.sleep(delay)
                raw = line.strip()
                topic, key, _ = route(raw, topics)
                await producer.send(topic, value=raw, key=key)
    finally:
        await producer.stop()


async def probe(connection: Connection, topics: Topics, probes: Probes, seconds: float) -> None:
    """Send a probe every PROBE_EVERY seconds for `seconds`."""
    producer = AIOKafkaProducer(**connection.aiokafka_options(), linger_ms=0)
    await producer.start()
    try:
        for i in range(int(seconds / PROBE_EVERY)):
            occurred = PROBE_BASE + timedelta(seconds=i)
            event = {
                "event_id": f"probe-{uuid.uuid4().hex}",
                "type": "expense.recorded",
                "occurred_at": occurred.isoformat(),
                "category": "other",
                "amount": 0,
            }
            raw = orjson.dumps(event)
            topic, key, _ = route(raw, topics)
            probes.sent.append((occurred.timestamp(), time.time()))
            await producer.send(topic, value=raw, key=key)
            await asyncio.sleep(PROBE_EVERY)
    finally:
        await producer.stop()


async def scrape_loop(port: int, probes: Probes, every: float) -> None:
    """Poll /metrics every `every` seconds, marking the probes it shows."""
    while True:
        mark = await asyncio.to_thread(watermark, port)
        if mark is not None:
            probes.seen(probes.metrics, mark, time.time())
        await asyncio.sleep(every)


async def topic_loop(connection: Connection, topic: str, probes: Probes) -> None:
    """Follow the metrics topic, marking the probes each watermark message shows."""
    consumer = AIOKafkaConsumer(
        topic, **connection.aiokafka_options(), group_id=None, auto_offset_reset="latest"
    )
    await consumer.start()
    try:
        while True:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                for record in records:
                    if record.key == WATERMARK and record.value is not None:
                        mark = orjson.loads(record.value)["value"]
                        probes.seen(probes.topic, mark, time.time())
    finally:
        await consumer.stop()


def wait_ready(port: int, limit: float = 90) -> None:
    """Poll the worker's /readyz."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the worker never became ready")


async def measure(
    servers: str, history: Path, rate: float, seconds: float, interval: str, scrape_every: float
) -> Probes:
    """Run the worker under the steady load with probes; returns what was seen."""
    with tempfile.TemporaryDirectory() as tmp:
        config, topics, port = worker_config(Path(tmp), servers, interval)
        connection = Connection(servers, load_settings(config).kafka)
        await ensure_topics(
            connection, [*topics.inputs, topics.metrics], 4, compacted=[topics.metrics]
        )
        worker = subprocess.Popen(  # noqa: ASYNC220  # once, before measuring
            [
                sys.executable,
                "-m",
                "revmon",
                "run",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("REVMON_")},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probes = Probes()
        try:
            await asyncio.to_thread(wait_ready, port)
            load = asyncio.create_task(steady_load(history, connection, topics, rate))
            watchers = [
                asyncio.create_task(scrape_loop(port, probes, scrape_every)),
                asyncio.create_task(topic_loop(connection, topics.metrics, probes)),
            ]
            await asyncio.sleep(5)  # the load reaches its steady state
            await probe(connection, topics, probes, seconds)
            await asyncio.sleep(5)  # the last probes land
            for task in [load, *watchers]:
                task.cancel()
            await asyncio.gather(load, *watchers, return_exceptions=True)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
    return probes


def main() -> int:
    """Measure the maximum, then freshness at half of it; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=200)
    parser.add_argument("--leads-per-day", type=float, default=300.0)
    parser.add_argument("--seconds", type=float, default=30.0, help="probing time")
    parser.add_argument("--publish-interval", default="1s")
    parser.add_argument("--fraction", type=float, default=0.5, help="input rate / maximum")
    parser.add_argument("--scrape-every", type=float, default=SCRAPE_EVERY, help="seconds")
    args = parser.parse_args()
    configure("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        history = Path(tmp) / "history.jsonl"
        config = SimulationConfig.from_settings(
            load_settings(), days=args.days, seed=3, leads_per_day=args.leads_per_day
        )
        count = write_jsonl(simulate(config), history)
        with EmbeddedBroker() as broker:
            servers = broker.bootstrap_servers
            n, secs = asyncio.run(revmon_replay(servers, history, 1))
            maximum = n / secs
            rate = maximum * args.fraction
            print(f"maximum: {maximum:,.0f} events/s ({count:,} events, 1 per message)")
            probes = asyncio.run(
                measure(
                    servers,
                    history,
                    rate,
                    args.seconds,
                    args.publish_interval,
                    args.scrape_every,
                )
            )
    scrape = statistics.median(SCRAPES)
    print(f"/metrics scrape: median {scrape * 1000:,.0f} ms over {len(SCRAPES)} scrapes")
    figures = {
        "maximum": maximum,
        "rate": rate,
        "publish_interval": args.publish_interval,
        "scrape_seconds": scrape,
    }
    for where, seen in (("metrics", probes.metrics), ("topic", probes.topic)):
        delays = probes.delays(seen)
        if not delays:
            print(f"{where}: no probe seen")
            continue
        p50, p99 = statistics.median(delays), percentile(delays, 0.99)
        third = max(1, len(delays) // 3)
        trend = (statistics.median(delays[:third]), statistics.median(delays[-third:]))
        figures[where] = {
            "p50": p50,
            "p99": p99,
            "probes": len(delays),
            "sent": len(probes.sent),
            "p50_first_third": trend[0],
            "p50_last_third": trend[1],
        }
        print(
            f"freshness at {rate:,.0f} events/s, {where}: p50 {p50 * 1000:,.0f} ms, "
            f"p99 {p99 * 1000:,.0f} ms ({len(delays)} of {len(probes.sent)} probes)",
            flush=True,
        )
    print(orjson.dumps(figures).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`revmon demo`: embedded broker, worker and a simulated revenue engine fed live, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from revmon import app as app_module
from revmon.broker import Connection, EmbeddedBroker
from revmon.produce import route
from revmon.settings import Settings
from revmon.simulate import SimulationConfig, simulate
from revmon.web import WebServer
from revmon.worker import run_until

log = structlog.get_logger(__name__)

SUMMARY_EVERY = 10.0


def demo_settings(settings: Settings) -> Settings:
    """The demo runs on the event clock (simulated time) with memory-only state."""
    worker = settings.worker.model_copy(update={"store": "memory", "session_timeout": 6.0})
    return settings.model_copy(update={"clock": "event", "broker": "embedded", "worker": worker})


def paced(
    events: Iterator[dict[str, Any]],
    speed: float,
    live_from: float,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[tuple[float, dict[str, Any]]]:
    """Each event with the instant (on `clock`) it is due at.

    Events before `live_from` (unix seconds of simulated time) are due at once, the
    history; from there on simulated time runs `speed` times faster than `clock`.
    """
    wall0: float | None = None
    for event in events:
        at = datetime.fromisoformat(event["occurred_at"]).timestamp()
        if at < live_from:
            yield 0.0, event
            continue
        if wall0 is None:
            wall0 = clock()
        yield wall0 + (at - live_from) / speed, event


async def feed(
    connection: Connection,
    settings: Settings,
    config: SimulationConfig,
    speed: float,
    live_from: float,
) -> None:
    """Send the simulated history as it becomes due, keyed and routed like `produce`."""
    producer = AIOKafkaProducer(**connection.aiokafka_options(), linger_ms=20)
    await producer.start()
    try:
        for due, event in paced(simulate(config), speed, live_from):
            delay = due - time.monotonic()
            if delay > 0.05:
                await asyncio.sleep(delay)
            elif due == 0.0:
                await asyncio.sleep(0)  # the history: let the worker breathe
            raw = orjson.dumps(event)
            topic, key, _ = route(raw, settings.topics)
            await producer.send(topic, value=raw, key=key)
    finally:
        await producer.stop()


def summary(registry: CollectorRegistry) -> str:
    """One line for the terminal: simulated date and the operational counters."""

    def total(name: str) -> int:
        return int(sum(s.value for m in registry.collect() for s in m.samples if s.name == name))

    watermark = registry.get_sample_value("revmon_watermark_seconds")
    when = (
        datetime.fromtimestamp(watermark, UTC).strftime("%Y-%m-%d %H:%M")
        if watermark
        else "waiting"
    )
    return (
        f"[{when}] events {total('revmon_events_total'):,}"
        f"  rejected {total('revmon_events_rejected_total'):,}"
        f"  duplicates {total('revmon_events_duplicate_total'):,}"
    )


async def _demo(
    settings: Settings, servers: str, speed: float, seed: int, days: int, out: TextIO
) -> None:
    connection = Connection(servers, settings.kafka)
    await app_module.prepare_topics(settings, connection)
    revmon = app_module.build(settings, connection)
    web = WebServer.for_settings(settings, revmon.registry, revmon.ready)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=days)
    live_from = now.timestamp()
    config = SimulationConfig.from_settings(settings, days=days + 3650, seed=seed, start=start)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"revmon demo: metrics at {web.url}/metrics  (Ctrl-C to stop)", file=out, flush=True)

    async def report() -> None:
        while True:
            await asyncio.sleep(SUMMARY_EVERY)
            print(summary(revmon.registry), file=out, flush=True)

    tasks = [
        asyncio.create_task(feed(connection, settings, config, speed, live_from)),
        asyncio.create_task(report()),
    ]
    try:
        await run_until(revmon, stop.is_set, limit=float("inf"), web=web)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def run_demo(settings: Settings, *, speed: float, seed: int, history_days: int) -> int:
    """Run the demo until SIGINT or SIGTERM; returns the exit code."""
    settings = demo_settings(settings)
    with EmbeddedBroker() as broker:
        asyncio.run(
            _demo(settings, broker.bootstrap_servers, speed, seed, history_days, sys.stdout)
        )
    print("revmon demo: stopped", file=sys.stdout, flush=True)
    return 0

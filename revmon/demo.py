"""`revmon demo`: embedded broker, worker and a simulated revenue engine fed live, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
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
from revmon import shutdown
from revmon.broker import Connection, broker_for
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


def _money(amount: float) -> str:
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(amount) >= size:
            return f"{amount / size:,.1f}{suffix}"
    return f"{amount:,.0f}"


def summary(registry: CollectorRegistry, settings: Settings) -> str:
    """One line for the terminal: simulated date, counters and a few revenue figures."""
    collected = [s for m in registry.collect() for s in m.samples]
    window = "30d" if "30d" in settings.windows else settings.windows[0]

    def total(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in collected
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    watermark = registry.get_sample_value("revmon_watermark_seconds")
    when = (
        datetime.fromtimestamp(watermark, UTC).strftime("%Y-%m-%d %H:%M")
        if watermark
        else "waiting"
    )
    currency = settings.currency
    stage = settings.funnels.lead.stages[0]
    conversion = total("revmon_funnel_conversion_ratio", funnel="lead", stage=stage, window=window)
    return (
        f"[{when}] events {int(total('revmon_events_total')):,}"
        f"  rejected {int(total('revmon_events_rejected_total')):,}"
        f"  duplicates {int(total('revmon_events_duplicate_total')):,}"
        f" | {window}: revenue {currency} {_money(total('revmon_revenue_amount', window=window))}"
        f"  pipeline created {currency} "
        f"{_money(total('revmon_pipeline_created_amount', window=window))}"
        f"  new names {int(total('revmon_marketing_new_names', window=window)):,}"
        f" | open pipeline {currency} {_money(total('revmon_pipeline_open_amount'))}"
        f"  MRR {currency} {_money(total('revmon_mrr_amount'))}"
        + (f"  {stage} conversion {conversion:.0%}" if conversion else "")
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
    print(
        f"revmon demo: broker at {servers}, metrics at {web.url}/metrics  (Ctrl-C to stop)",
        file=out,
        flush=True,
    )

    async def report() -> None:
        while True:
            await asyncio.sleep(SUMMARY_EVERY)
            print(summary(revmon.registry, settings), file=out, flush=True)

    tasks = [
        asyncio.create_task(feed(connection, settings, config, speed, live_from)),
        asyncio.create_task(report()),
    ]
    try:
        await run_until(revmon, lambda: False, limit=float("inf"), web=web)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def run_demo(settings: Settings, *, speed: float, seed: int, history_days: int) -> int:
    """Run the demo until SIGINT or SIGTERM (`revmon.shutdown.Interrupted`).

    Raises:
        Interrupted: always, in the end: the demo runs until it is stopped.
    """
    settings = demo_settings(settings)
    try:
        with broker_for(settings, announce=False) as servers:
            shutdown.run(_demo(settings, servers, speed, seed, history_days, sys.stdout))
    finally:
        print("revmon demo: stopped", file=sys.stdout, flush=True)
    return 0

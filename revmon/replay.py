"""`revmon replay`: a JSON-lines file end to end through the real pipeline, on the event clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from revmon import app as app_module
from revmon.app import Revmon
from revmon.broker import Connection, broker_for
from revmon.exposition import render
from revmon.produce import ProduceReport, check_readable, produce_file
from revmon.settings import Settings

log = structlog.get_logger(__name__)

#: Event time between two evaluations of the alert rules in a replay.
DEFAULT_STEP = 86400.0


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay produced and whether the worker caught up with it."""

    produced: ProduceReport
    caught_up: bool
    exposition: bytes
    alerts: list[dict[str, Any]]  # every alerts-topic message, in order
    produce_seconds: float
    process_seconds: float  # waiting for the worker to apply what was produced


def reached(
    positions: dict[tuple[str, int], int], last_offsets: dict[tuple[str, int], int]
) -> bool:
    """True when every offset in `last_offsets` is below its partition's next position."""
    return all(positions.get(tp, 0) > offset for tp, offset in last_offsets.items())


def caught_up(revmon: Revmon, last_offsets: dict[tuple[str, int], int]) -> bool:
    """True once every acknowledged input offset, and every account fact, has been applied.

    The targets come from the producers' acknowledgements, never from the broker's end
    offsets (Tansu reports those short: the last batch's base offset + 1).
    """
    if not reached(revmon.ingest.positions(), last_offsets):
        return False
    accounts = revmon.accounts
    if accounts is None:
        return True
    facts = revmon.facts
    return facts.pending == 0 and reached(accounts.positions(), facts.last_offsets)


def replay_settings(settings: Settings) -> Settings:
    """Replay runs on the event clock with throw-away, memory-only state of its own."""
    worker = settings.worker.model_copy(
        update={
            "app_id": f"revmon-replay-{uuid.uuid4().hex[:12]}",
            "store": "memory",
            "session_timeout": 6.0,  # a replay's group has one member: join fast
        }
    )
    return settings.model_copy(update={"clock": "event", "worker": worker})


async def replay_on(
    servers: str,
    path: Path,
    settings: Settings,
    *,
    batch: int,
    limit: float,
    step: float | None = None,
) -> ReplayResult:
    """Produce `path` to the broker at `servers`, process it all, return the exposition.

    Alert rules are evaluated on coherent data: with `step` (seconds of event time), the
    file is produced a slice at a time and the rules are evaluated once the worker has
    applied each slice (every partition, and the account stage, up to that point: a
    partition that ran ahead of the others would show numbers no moment ever had); without
    it, everything is produced first, processed at full speed, and evaluated once at the end.
    """
    connection = Connection(servers, settings.kafka)
    await app_module.prepare_topics(settings, connection)
    revmon = app_module.build(settings, connection, alerts_on_timer=False)
    app = revmon.app
    alerting = revmon.alerting
    timings = {"produce": 0.0, "process": 0.0}

    async def until(condition: Callable[[], bool]) -> None:
        while not condition():
            if app.should_stop or app.crashed:
                raise RuntimeError(f"worker stopped: {app.crash_reason!r}")
            await asyncio.sleep(0.01)

    def evaluated() -> bool:
        if alerting is None:
            return True
        alerting.tick()  # on the first call: notices the ownership, then takes over
        return alerting.evaluating

    async def applied(report: ProduceReport) -> None:
        began = time.monotonic()
        await until(lambda: caught_up(revmon, report.last_offsets))
        if alerting is not None:
            alerting.tick()  # the evaluation after this slice
        timings["process"] += time.monotonic() - began

    finished = False
    produced = ProduceReport()
    if step is None:  # everything first: the worker then runs at full speed (`make bench`)
        began = time.monotonic()
        produced = await produce_file(path, connection, settings.topics, batch=batch)
        timings["produce"] = time.monotonic() - began
    await app.start()
    try:
        async with asyncio.timeout(limit):
            await until(revmon.ready)
            await until(evaluated)
            if step is not None:
                began = time.monotonic()
                produced = await produce_file(
                    path,
                    connection,
                    settings.topics,
                    batch=batch,
                    slice_seconds=step,
                    on_slice=applied,
                )
                timings["produce"] = time.monotonic() - began - timings["process"]
            await applied(produced)
            await until(lambda: alerting is None or alerting.idle())
            finished = True
    except TimeoutError:
        pass
    finally:
        await app.stop()
    alerts = alerting.messages if alerting is not None else []
    return ReplayResult(
        produced,
        finished,
        render(revmon.registry),
        alerts,
        timings["produce"],
        timings["process"],
    )


def replay(
    path: Path,
    settings: Settings,
    *,
    batch: int = 500,
    timeout: float = 3600.0,
    step: float | None = DEFAULT_STEP,
) -> ReplayResult:
    """Run a replay on the configured broker (the embedded one unless `broker:` says otherwise)."""
    check_readable(path)
    settings = replay_settings(settings)
    with broker_for(settings) as servers:
        return asyncio.run(
            replay_on(servers, path, settings, batch=batch, limit=timeout, step=step)
        )

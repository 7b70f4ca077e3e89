"""`revmon replay`: a JSON-lines file end to end through the real pipeline, on the event clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from revmon import app as app_module
from revmon import shutdown
from revmon.app import Revmon
from revmon.broker import Connection, broker_for, wait_for_broker
from revmon.events import Rejection
from revmon.exposition import render
from revmon.processors import Message
from revmon.produce import ProduceReport, check_readable, produce_file
from revmon.settings import Settings

log = structlog.get_logger(__name__)

#: Event time between two evaluations of the alert rules in a replay.
DEFAULT_STEP = 86400.0


@dataclass(frozen=True, slots=True)
class Tally:
    """What the worker made of the replayed events (its operational counters)."""

    applied: int = 0  # late ones included
    late: int = 0
    duplicate: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # by reason

    @classmethod
    def of(cls, registry: CollectorRegistry) -> Tally:
        """Read the counters of a worker's registry."""
        totals: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for family in registry.collect():
            for sample in family.samples:
                if sample.name == "revmon_events_rejected_total":
                    rejected[sample.labels["reason"]] += int(sample.value)
                else:
                    totals[sample.name] += int(sample.value)
        return cls(
            applied=totals["revmon_events_total"],
            late=totals["revmon_events_late_total"],
            duplicate=totals["revmon_events_duplicate_total"],
            rejected={reason: n for reason, n in sorted(rejected.items()) if n},
        )

    @property
    def rejected_total(self) -> int:
        """Rejected messages and batch elements, all reasons."""
        return sum(self.rejected.values())

    def summary(self) -> str:
        """`12 applied (1 late), 2 duplicate, 3 rejected (malformed_json 2, invalid_field 1)`."""
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.rejected.items())
        rejected = f"{self.rejected_total} rejected" + (f" ({reasons})" if reasons else "")
        return f"{self.applied} applied ({self.late} late), {self.duplicate} duplicate, {rejected}"


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What a replay produced and whether the worker caught up with it."""

    produced: ProduceReport
    caught_up: bool
    exposition: bytes
    alerts: list[dict[str, Any]]  # every alerts-topic message, in order
    produce_seconds: float
    process_seconds: float  # waiting for the worker to apply what was produced
    tally: Tally = field(default_factory=Tally)


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
    """Replay runs on the event clock with throw-away, memory-only state (and embedded
    broker) of its own."""
    worker = settings.worker.model_copy(
        update={
            "app_id": f"revmon-replay-{uuid.uuid4().hex[:12]}",
            "store": "memory",
            "session_timeout": 6.0,  # a replay's group has one member: join fast
        }
    )
    # A replay's embedded broker is its own: any free port, whatever `embedded_port` says.
    return settings.model_copy(update={"clock": "event", "worker": worker, "embedded_port": 0})


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
    await wait_for_broker(connection, settings.broker_wait)
    await app_module.prepare_topics(settings, connection)
    revmon = app_module.build(settings, connection, alerts_on_timer=False)
    app = revmon.app
    alerting = revmon.alerting
    timings = {"produce": 0.0, "process": 0.0}
    produced = ProduceReport(line_numbers={})  # filled as the file is sent
    revmon.ingest.on_reject.append(
        lambda message, rejection: _name_line(path, produced, message, rejection)
    )

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
    if step is None:  # everything first: the worker then runs at full speed (`make bench`)
        began = time.monotonic()
        await produce_file(path, connection, settings.topics, batch=batch, report=produced)
        timings["produce"] = time.monotonic() - began
    await app.start()
    try:
        async with asyncio.timeout(limit):
            await until(revmon.ready)
            await until(evaluated)
            if step is not None:
                began = time.monotonic()
                await produce_file(
                    path,
                    connection,
                    settings.topics,
                    batch=batch,
                    slice_seconds=step,
                    on_slice=applied,
                    report=produced,
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
        Tally.of(revmon.registry),
    )


def _name_line(path: Path, produced: ProduceReport, message: Message, rejection: Rejection) -> None:
    """Log a rejection with the file's line number, the position a person can look up."""
    line = produced.line_of(message.topic, message.partition, message.offset, rejection.index)
    log.warning(
        "line_rejected",
        file=str(path),
        line=line,
        reason=rejection.reason.value,
        detail=rejection.detail,
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
    with broker_for(settings, announce=False) as servers:  # private: nothing else uses it
        return shutdown.run(
            replay_on(servers, path, settings, batch=batch, limit=timeout, step=step)
        )

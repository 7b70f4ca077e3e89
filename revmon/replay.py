"""`revmon replay`: a JSON-lines file end to end through the real pipeline, on the event clock."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from revmon import app as app_module
from revmon import shutdown
from revmon.app import Revmon
from revmon.broker import Connection, broker_for, wait_for_broker
from revmon.errors import ConfigError
from revmon.events import Rejection
from revmon.exposition import render
from revmon.processors import Message
from revmon.produce import ProduceReport, check_readable, produce_file
from revmon.settings import Settings

log = structlog.get_logger(__name__)

#: Event time between two evaluations of the alert rules in a replay.
DEFAULT_STEP = 86400.0
#: How long a replay's consumer lets the broker hold a fetch that found nothing.
REPLAY_FETCH_MAX_WAIT_MS = 10


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


#: Called after each slice is applied and the rules evaluated, with `final` True after
#: the last one (`report` reads the registry there).
Observer = Callable[[ProduceReport, Revmon, bool], None]


@dataclass(frozen=True, slots=True)
class Cutoff:
    """`--until`: the events a replay keeps, by event time.

    A date keeps its whole day in the configured time zone (events before the next
    midnight: a CRM export stamps a date at midnight, so the next day's midnight is the
    next day); a timestamp keeps every event up to and including that instant.
    """

    at: float  # unix seconds
    inclusive: bool

    def admits(self, occurred_at: float) -> bool:
        """True for an event the replay sends."""
        return occurred_at <= self.at if self.inclusive else occurred_at < self.at

    @classmethod
    def parse(cls, text: str, timezone: str) -> Cutoff:
        """`2025-09-30` (a date in `timezone`) or an RFC 3339 timestamp with offset.

        Raises:
            ConfigError: neither a date nor a timestamp with an offset.
        """
        from zoneinfo import ZoneInfo

        try:
            day = date.fromisoformat(text)
        except ValueError:
            pass
        else:
            end = datetime.combine(day + timedelta(days=1), clock_time(), ZoneInfo(timezone))
            return cls(end.timestamp(), inclusive=False)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None:
            raise ConfigError(
                f"--until {text!r}: give a date (2025-09-30) or a timestamp with an offset "
                "(2025-09-30T18:00:00+00:00)"
            )
        return cls(moment.timestamp(), inclusive=True)


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
    edges: Sequence[float] | None = None,
    admit: Callable[[float], bool] | None = None,
    observe: Observer | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Produce `path` to the broker at `servers`, process it all, return the exposition.

    Alert rules are evaluated on coherent data: with `step` (seconds of event time), the
    file is produced a slice at a time and the rules are evaluated once the worker has
    applied each slice (every partition, and the account stage, up to that point: a
    partition that ran ahead of the others would show numbers no moment ever had); without
    it, everything is produced first, processed at full speed, and evaluated once at the end.
    `edges` (sorted unix seconds of event time) cut the slices at those instants instead
    of every `step`; `admit` keeps only the events it admits (`--until`); `observe` is
    called after every slice is applied and evaluated, and after the last one.
    `progress` is advanced by every line sent.
    """
    connection = Connection(servers, settings.kafka)
    await wait_for_broker(connection, settings.broker_wait)
    await app_module.prepare_topics(settings, connection)
    revmon = app_module.build(settings, connection, alerts_on_timer=False)
    app = revmon.app
    # Each slice waits for two hops (input, then account facts) through a broker that holds
    # an empty fetch for its whole wait (Tansu): a short wait halves a replay's time.
    app.fetch_max_wait_ms = REPLAY_FETCH_MAX_WAIT_MS
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

    async def applied(report: ProduceReport, *, final: bool = False) -> None:
        began = time.monotonic()
        await until(lambda: caught_up(revmon, report.last_offsets))
        if alerting is not None:
            alerting.tick()  # the evaluation after this slice
        if observe is not None:
            observe(report, revmon, final)
        timings["process"] += time.monotonic() - began

    finished = False
    if step is None and edges is None:  # everything first: the worker runs at full speed
        began = time.monotonic()
        await produce_file(
            path, connection, settings.topics, batch=batch, admit=admit, report=produced
        )
        timings["produce"] = time.monotonic() - began
    await app.start()
    try:
        async with asyncio.timeout(limit):
            await until(revmon.ready)
            await until(evaluated)
            if step is not None or edges is not None:
                began = time.monotonic()
                await produce_file(
                    path,
                    connection,
                    settings.topics,
                    batch=batch,
                    slice_seconds=None if edges is not None else step,
                    on_slice=applied,
                    report=produced,
                    edges=edges,
                    admit=admit,
                    progress=progress,
                )
                timings["produce"] = time.monotonic() - began - timings["process"]
            await applied(produced, final=True)
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
    until: Cutoff | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Run a replay on the configured broker (the embedded one unless `broker:` says otherwise).

    With `until`, only the events up to then (event time) are replayed, as if the file
    ended there.
    """
    check_readable(path)
    settings = replay_settings(settings)
    admit = until.admits if until is not None else None
    with broker_for(settings, announce=False) as servers:  # private: nothing else uses it
        return shutdown.run(
            replay_on(
                servers,
                path,
                settings,
                batch=batch,
                limit=timeout,
                step=step,
                admit=admit,
                progress=progress,
            )
        )

"""`revmon replay`: a JSON-lines file end to end through the real pipeline, on the event clock."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
from revmon.worker import run_until

log = structlog.get_logger(__name__)


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
    produce_seconds: float
    process_seconds: float  # from joined-and-recovered until caught up
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
    servers: str, path: Path, settings: Settings, *, batch: int, limit: float
) -> ReplayResult:
    """Produce `path` to the broker at `servers`, process it all, return the exposition."""
    connection = Connection(servers, settings.kafka)
    topics = settings.topics
    await wait_for_broker(connection, settings.broker_wait)
    await app_module.prepare_topics(settings, connection)
    began = time.monotonic()
    produced = await produce_file(path, connection, topics, batch=batch, line_numbers=True)
    produce_seconds = time.monotonic() - began
    revmon = app_module.build(settings, connection)
    revmon.ingest.on_reject.append(
        lambda message, rejection: _name_line(path, produced, message, rejection)
    )
    started: list[float] = []

    def done() -> bool:
        if not started and revmon.ready():
            started.append(time.monotonic())  # joined and recovered: processing starts
        return caught_up(revmon, produced.last_offsets)

    finished = await run_until(revmon, done, limit=limit, poll=0.01)
    process_seconds = time.monotonic() - (started[0] if started else time.monotonic())
    return ReplayResult(
        produced,
        finished,
        render(revmon.registry),
        produce_seconds,
        process_seconds,
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
    path: Path, settings: Settings, *, batch: int = 500, timeout: float = 3600.0
) -> ReplayResult:
    """Run a replay on the configured broker (the embedded one unless `broker:` says otherwise)."""
    check_readable(path)
    settings = replay_settings(settings)
    with broker_for(settings, announce=False) as servers:  # private: nothing else uses it
        return shutdown.run(replay_on(servers, path, settings, batch=batch, limit=timeout))

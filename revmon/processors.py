"""Ingest: raw input messages to applied events, rejections and coalesced state writes.

The batch handler in `app.py` only hands each fetched batch of messages to
`Ingest.handle()` and then calls `Ingest.flush()`; everything here is framework-free so
it can be unit-tested.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from revmon.events import EVENT_TYPES, Decoder, Event, Reason, Rejection
from revmon.exposition import OperationsMetrics
from revmon.kpi.customers import AccountFact
from revmon.kpi.ledger import Records
from revmon.logs import RateLimit
from revmon.state import Ledger, PartitionState, StateTable

log = structlog.get_logger(__name__)
#: `event_rejected` lines per reason and period; the counters and dead letters get them all.
REJECTION_LOG_BURST = 10
REJECTION_LOG_PERIOD = 60.0


@dataclass(frozen=True, slots=True)
class Message:
    """One input message as read from Kafka."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


class DeadLetters(Protocol):
    """Where rejected input goes (the dead-letter topic in the worker)."""

    def send(self, message: Message, rejection: Rejection) -> None:
        """Queue the rejected bytes with the four `revmon-*` headers."""


class Engine(Protocol):
    """The metric state that applied events update (`revmon.engine.MetricEngine`)."""

    def ledgers(self, partition: int) -> dict[str, Ledger]:
        """Fresh containers of `partition`'s state, for recovery to fill."""

    def recovered(self, partition: int) -> None:
        """Recovery has filled `partition`'s containers."""

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the state of `partitions` (all when None)."""

    def begin(self, topic: str, partition: int, offset: int) -> None:
        """The events applied or re-routed next come from this input message."""

    def apply(self, event: Event, partition: int, newest: float | None = None) -> bool:
        """Apply one valid, non-duplicate event; True when it was late (SPEC §1).

        `newest`: the newest `occurred_at` applied on the event's topic, this one included.
        """

    def retire(self, partition: int, newest: float) -> int:
        """Forget the closed entities older than `closed_retention` behind `newest`."""

    def reroute(self, event: Event, partition: int) -> None:
        """Send again what applying `event` sent onwards (input applied before a restart)."""


class NoEngine:
    """An engine that keeps nothing: every event counts as on time."""

    def ledgers(self, partition: int) -> dict[str, Ledger]:
        """No containers."""
        return {}

    def recovered(self, partition: int) -> None:
        """Nothing to re-derive."""

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Nothing to drop."""

    def begin(self, topic: str, partition: int, offset: int) -> None:
        """Nothing is sent onwards."""

    def apply(self, event: Event, partition: int, newest: float | None = None) -> bool:
        """Apply nothing."""
        return False

    def retire(self, partition: int, newest: float) -> int:
        """Nothing to forget."""
        return 0

    def reroute(self, event: Event, partition: int) -> None:
        """Nothing was sent onwards."""


def next_positions(states: Iterable[PartitionState]) -> dict[tuple[str, int], int]:
    """The next offset to read of each (topic, partition) the states have applied input of."""
    return {
        (topic, state.partition): offset + 1
        for state in states
        for topic, offset in state.offsets.items()
    }


#: Bytes of a rejected message the dead letter keeps when the whole would not fit (SPEC §9).
DEAD_LETTER_KEEP = 64 * 1024
#: Bytes of a rejected payload copied whole at most: with key and headers within 1 MiB.
_DEAD_LETTER_WHOLE = 1024 * 1024 - 64 * 1024


def dead_letter_value(rejection: Rejection) -> bytes:
    """What the dead letter carries: the rejected bytes, or their first 64 KiB for a
    `too_large` message (and any payload too large to copy within Kafka's 1 MiB)."""
    if _truncated(rejection):
        return rejection.payload[:DEAD_LETTER_KEEP]
    return rejection.payload


def _truncated(rejection: Rejection) -> bool:
    size = len(rejection.payload)
    too_large = rejection.reason is Reason.TOO_LARGE and size > DEAD_LETTER_KEEP
    return too_large or size > _DEAD_LETTER_WHOLE


def dead_letter_headers(message: Message, rejection: Rejection) -> list[tuple[str, bytes]]:
    """The headers SPEC §1 puts on a dead-lettered message (and §9's `revmon-truncated`,
    the original size, when it carries only the first 64 KiB)."""
    headers = [
        ("revmon-reason", rejection.reason.value.encode()),
        ("revmon-source-topic", message.topic.encode()),
        ("revmon-source-partition", str(message.partition).encode()),
        ("revmon-source-offset", str(message.offset).encode()),
    ]
    if rejection.index is not None:
        headers.append(("revmon-batch-index", str(rejection.index).encode()))
    if _truncated(rejection):
        headers.append(("revmon-truncated", str(len(rejection.payload)).encode()))
    return headers


class Ingest:
    """Decodes, judges, deduplicates and applies input; owns the per-partition state."""

    def __init__(
        self,
        *,
        decoder: Decoder,
        metrics: OperationsMetrics,
        table: StateTable,
        dead_letters: DeadLetters,
        engine: Engine,
        dedupe_horizon: float,
        wall_clock: Callable[[], float] = time.time,
        snapshot_every: int | None = None,
    ) -> None:
        self._wall_clock = wall_clock
        self._snapshot_every = snapshot_every
        self._decoder = decoder
        self._metrics = metrics
        self._table = table
        self._dead_letters = dead_letters
        self._engine = engine
        self._horizon = dedupe_horizon
        self._states: dict[int, PartitionState] = {}
        self._events = {t: metrics.events.labels(type=t) for t in EVENT_TYPES}
        #: Called with each rejection that is logged (`replay` names the file's line).
        self.on_reject: list[Callable[[Message, Rejection], None]] = []
        self._log_throttle = RateLimit(REJECTION_LOG_BURST, REJECTION_LOG_PERIOD)

    def state(self, partition: int) -> PartitionState:
        """The partition's state, recovered from the table the first time it is needed."""
        state = self._states.get(partition)
        if state is None:
            ledgers = self._engine.ledgers(partition)
            state = PartitionState.recover(partition, self._horizon, self._table, ledgers)
            state.snapshot_every = self._snapshot_every
            state.before_snapshot = functools.partial(self._engine.retire, partition)
            self._engine.recovered(partition)
            self._states[partition] = state
            log.info(
                "partition_state_recovered",
                partition=partition,
                offsets=state.offsets,
                event_ids=len(state.ids),
            )
        return state

    def handle(self, messages: Iterable[Message]) -> None:
        """Apply a batch of messages in order; redeliveries of applied offsets are skipped."""
        received = self._wall_clock()
        for message in messages:
            state = self.state(message.partition)
            if state.applied(message.topic, message.offset):
                self._reroute(message, state)
                continue
            self._engine.begin(message.topic, message.partition, message.offset)
            for index, item in enumerate(self._decoder.decode(message.value)):
                if isinstance(item, Rejection):
                    self._reject(message, item)
                elif state.is_duplicate(item.event_id, message.topic):
                    self._metrics.duplicates.inc()
                    state.skip(message.topic, message.offset, index)
                else:
                    state.remember(item.event_id, item.at, message.topic)
                    newest = state.newest_by_topic[message.topic]
                    if self._engine.apply(item, message.partition, newest):
                        self._metrics.late.inc()
                    self._events[item.type].inc()
            state.advance(message.topic, message.offset, received)

    def flush(self, partitions: Iterable[int] | None = None) -> None:
        """Write every dirty partition's changes to the table (one record each)."""
        for partition in self._states if partitions is None else partitions:
            state = self._states.get(partition)
            if state is not None and state.dirty:
                state.flush(self._table)

    def dirty_partitions(self) -> list[int]:
        """Partitions with changes not yet written."""
        return [p for p, s in self._states.items() if s.dirty]

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop in-memory state (on rebalance); it is recovered again when needed."""
        if partitions is None:
            self._states.clear()
        else:
            for partition in partitions:
                self._states.pop(partition, None)
        self._engine.forget(partitions)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each (topic, partition) this worker has state for."""
        return next_positions(self._states.values())

    def states(self) -> list[PartitionState]:
        """The partition states this worker holds."""
        return list(self._states.values())

    def newest_event(self) -> float | None:
        """The greatest `occurred_at` applied on this worker's partitions."""
        values = [s.newest for s in self._states.values() if s.newest is not None]
        return max(values) if values else None

    def _reroute(self, message: Message, state: PartitionState) -> None:
        """Input applied before a restart: its state is in place, but what it sent onwards
        after the last committed offset may be lost, so send exactly that again (the
        receivers drop it by source position when they have it)."""
        skipped = state.skipped_at(message.topic, message.offset)
        self._engine.begin(message.topic, message.partition, message.offset)
        for index, item in enumerate(self._decoder.decode(message.value)):
            if not isinstance(item, Rejection) and index not in skipped:
                self._engine.reroute(item, message.partition)

    def _reject(self, message: Message, rejection: Rejection) -> None:
        reason = rejection.reason.value
        self._metrics.rejected.labels(reason=reason).inc()
        self._dead_letters.send(message, rejection)
        show, suppressed = self._log_throttle.allow(reason, self._wall_clock())
        if suppressed:
            log.warning("event_rejected_suppressed", reason=reason, suppressed=suppressed)
        if not show:
            return
        log.warning(
            "event_rejected",
            reason=rejection.reason.value,
            detail=rejection.detail,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            batch_index=rejection.index,
        )
        for callback in self.on_reject:
            callback(message, rejection)


_FACT_MESSAGE_BYTES = 900 * 1024  # under Kafka's default 1 MiB message limit


def fact_messages(facts: Iterable[bytes]) -> Iterable[bytes]:
    """Encoded facts packed into JSON arrays of at most ~900 KiB each."""
    chunk: list[bytes] = []
    size = 0
    for fact in facts:
        if chunk and size + len(fact) + 1 > _FACT_MESSAGE_BYTES:
            yield b"[" + b",".join(chunk) + b"]"
            chunk, size = [], 0
        chunk.append(fact)
        size += len(fact) + 1
    if chunk:
        yield b"[" + b",".join(chunk) + b"]"


class AccountFacts(Protocol):
    """The account stage's state (`revmon.engine.MetricEngine`'s account books)."""

    def account_ledgers(self, partition: int) -> dict[str, Ledger]:
        """Fresh containers of account partition `partition`, for recovery to fill."""

    def account_recovered(self, partition: int) -> None:
        """Recovery has filled the partition's containers."""

    def account_forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the state of `partitions` (all when None)."""

    def account_apply(self, fact: AccountFact, partition: int) -> None:
        """Apply one account fact."""


#: The account stage's ledger of source positions: `<input topic>|<partition>` →
#: `[offset, ordinal]` of the last fact applied from there.
SOURCES = "accounts.sources"


def _advance(sources: Records, source: tuple[str, int, int, int]) -> bool:
    """Move the source's last applied position to `source`; False if it is not past it."""
    topic, partition, offset, ordinal = source
    key = f"{topic}|{partition}"
    last = sources.get(key)
    if last is not None and (offset, ordinal) <= (last[0], last[1]):
        return False
    sources.put(key, [offset, ordinal])
    return True


class AccountIngest:
    """The account stage: facts keyed by account, applied once each.

    Facts are revmon's own messages, so nothing is rejected. A fact re-sent after an input
    worker's restart is dropped silently by its source position: per input partition,
    facts reach an account partition in order, so one at or before the last applied
    position from there was applied already (exact, whatever the dedupe horizon).
    """

    def __init__(
        self,
        *,
        table: StateTable,
        engine: AccountFacts,
        dedupe_horizon: float,
        snapshot_every: int | None = None,
    ) -> None:
        self._snapshot_every = snapshot_every
        self._table = table
        self._engine = engine
        self._horizon = dedupe_horizon
        self._states: dict[int, PartitionState] = {}
        self._sources: dict[int, Records] = {}

    def state(self, partition: int) -> PartitionState:
        """The partition's state, recovered from the table the first time it is needed."""
        state = self._states.get(partition)
        if state is None:
            ledgers = self._engine.account_ledgers(partition)
            sources = ledgers[SOURCES] = Records()
            state = PartitionState.recover(partition, self._horizon, self._table, ledgers)
            state.snapshot_every = self._snapshot_every
            self._engine.account_recovered(partition)
            self._states[partition] = state
            self._sources[partition] = sources
        return state

    def handle(self, messages: Iterable[Message]) -> None:
        """Apply a batch of fact messages in order."""
        for message in messages:
            state = self.state(message.partition)
            if state.applied(message.topic, message.offset):
                continue
            sources = self._sources[message.partition]
            for fact in AccountFact.many_from_json(message.value):
                if fact.source is not None and not _advance(sources, fact.source):
                    continue  # re-sent after an input worker's restart: applied already
                event_id = fact.event.event_id
                if not state.is_duplicate(event_id):
                    state.remember(event_id, fact.event.at)
                    self._engine.account_apply(fact, message.partition)
            state.advance(message.topic, message.offset)

    def flush(self) -> None:
        """Write every dirty partition's changes (one record each)."""
        for state in self._states.values():
            state.flush(self._table)

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop partitions this worker no longer owns."""
        for partition in partitions:
            self._states.pop(partition, None)
            self._sources.pop(partition, None)
        self._engine.account_forget(partitions)

    def positions(self) -> dict[tuple[str, int], int]:
        """The next offset to read of each accounts-topic partition held."""
        return next_positions(self._states.values())

"""Per-partition worker state and how it is journaled to a changelogged table.

Why a journal: each table write is a changelog message, and one per event would cap a
worker at a few thousand events/s. So a partition's changes are coalesced and written
once per processed batch, as ONE record that holds the batch's new dedupe ids together
with the input offsets it covers. One record is atomic: after any crash the recovered
state is exactly "everything up to the offsets of the newest record", and the worker
skips input at or below those offsets instead of counting it again. At-least-once
delivery plus this check gives exactly-once effect without a transactional producer
(which Tansu does not have).

Keys are `j/<partition>/<seq>` (zero-padded, so they sort). A record is deleted once all
of its ids have left the dedupe horizon, except the newest record, which always stays
because it carries the offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

_SEQ_DIGITS = 12


class StateTable(Protocol):
    """The storage the journal is written to (a Faust table in the worker, a dict in tests)."""

    def records(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Every (key, value) stored for `partition`."""

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Store one record of `partition` (one changelog message)."""

    def delete(self, partition: int, key: str) -> None:
        """Remove one record of `partition` (a tombstone)."""


def journal_key(partition: int, seq: int) -> str:
    """The table key of journal record `seq` of `partition`."""
    return f"j/{partition}/{seq:0{_SEQ_DIGITS}d}"


def journal_prefix(partition: int) -> str:
    """The key prefix of every journal record of `partition`."""
    return f"j/{partition}/"


@dataclass(slots=True)
class _Record:
    seq: int
    newest_id_at: float


@dataclass(slots=True)
class PartitionState:
    """What one input partition number (of all input topics) has applied so far.

    `offsets[topic]` is the last input offset applied; `ids` maps each remembered
    `event_id` to its `occurred_at` (unix seconds).
    """

    partition: int
    horizon: float
    offsets: dict[str, int] = field(default_factory=dict)
    ids: dict[str, float] = field(default_factory=dict)
    newest: float | None = None
    seq: int = 0
    _pending: dict[str, float] = field(default_factory=dict)
    _records: list[_Record] = field(default_factory=list)
    _dirty: bool = False

    # -- input positions -------------------------------------------------------------
    def applied(self, topic: str, offset: int) -> bool:
        """True when the message at `offset` of `topic` was applied before (a redelivery)."""
        return offset <= self.offsets.get(topic, -1)

    def advance(self, topic: str, offset: int) -> None:
        """Record that the message at `offset` of `topic` has been handled."""
        self.offsets[topic] = offset
        self._dirty = True

    # -- dedupe ----------------------------------------------------------------------
    def is_duplicate(self, event_id: str) -> bool:
        """True when `event_id` was applied and still lies within the horizon of the newest."""
        at = self.ids.get(event_id)
        if at is None:
            return False
        return self.newest is None or at >= self.newest - self.horizon

    def remember(self, event_id: str, at: float) -> None:
        """Remember an applied event; it moves the partition's newest `occurred_at`."""
        self.ids[event_id] = at
        self._pending[event_id] = at
        if self.newest is None or at > self.newest:
            self.newest = at
        self._dirty = True

    # -- journal ---------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True when something changed since the last flush."""
        return self._dirty

    def flush(self, table: StateTable) -> None:
        """Write the changes since the last flush as one record, then expire old records."""
        if not self._dirty:
            return
        self.seq += 1
        value = {"offsets": self.offsets, "newest": self.newest, "ids": self._pending}
        table.put(self.partition, journal_key(self.partition, self.seq), orjson.dumps(value))
        newest_id_at = max(self._pending.values(), default=float("-inf"))
        self._records.append(_Record(self.seq, newest_id_at))
        self._pending = {}
        self._dirty = False
        self._expire(table)

    def _expire(self, table: StateTable) -> None:
        if self.newest is None:
            return
        cutoff = self.newest - self.horizon
        keep: list[_Record] = []
        for record in self._records:
            if record.seq != self.seq and record.newest_id_at < cutoff:
                table.delete(self.partition, journal_key(self.partition, record.seq))
            else:
                keep.append(record)
        if len(keep) != len(self._records):
            self.ids = {i: at for i, at in self.ids.items() if at >= cutoff}
        self._records = keep

    @classmethod
    def recover(cls, partition: int, horizon: float, table: StateTable) -> PartitionState:
        """Rebuild a partition's state from its journal records."""
        state = cls(partition=partition, horizon=horizon)
        for seq, value in sorted(_parse(partition, table.records(partition))):
            ids: dict[str, float] = value.get("ids", {})
            state.ids.update(ids)
            state._records.append(_Record(seq, max(ids.values(), default=float("-inf"))))
            state.seq = seq
            state.offsets = {str(t): int(o) for t, o in value.get("offsets", {}).items()}
            state.newest = value.get("newest")
        return state


def _parse(partition: int, items: Iterable[tuple[str, bytes]]) -> Iterator[tuple[int, Any]]:
    prefix = journal_prefix(partition)
    for key, raw in items:
        if key.startswith(prefix):
            yield int(key[len(prefix) :]), orjson.loads(raw)

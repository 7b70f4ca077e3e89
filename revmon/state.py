"""Per-partition worker state, journaled to a changelogged table and snapshotted.

Why a journal: each table write is a changelog message, and one per event would cap a
worker at a few thousand events/s. So a partition's changes are coalesced and written
once per processed batch as ONE record: the batch's new dedupe ids, the changes of the
metric books' ledgers, and the input offsets it covers. One record is atomic: after any
crash the recovered state is exactly "everything up to the offsets of the newest record",
and the worker skips input at or below those offsets instead of applying it twice.
At-least-once delivery plus this check gives an exactly-once effect without a
transactional producer (which Tansu does not have).

Why snapshots: entities live for months, so the journal cannot simply expire. Once the
changes journaled since the last snapshot outnumber the state itself, the whole state is
written as a snapshot (chunks, then a marker naming them), and the journal records it
covers are deleted. Writes stay O(1) amortized per change and recovery reads at most
about twice the state.

Why parts: Kafka refuses records over `max.message.bytes` (1 MiB by default), and one
batch of valid input (a bulk load of thousands of opportunities) can change more state
than that. Every record stays within `RECORD_BUDGET`: a change that would not fit is
written as parts `j/<p>/<seq>/<part>` (item lists, each within the budget) followed by
the journal record `j/<p>/<seq>` itself, which names how many parts it has and carries
the offsets. The journal record is the commit: a partition's changelog is one ordered
log, so when it is there every part written before it is there too, and recovery loads a
change only through its journal record; parts whose journal record never landed (a crash
between them) are ignored, deleted with the next snapshot, and a later flush that
reuses their sequence number overwrites them. So the argument above holds unchanged:
the recovered state is exactly everything up to the offsets of the newest journal
record. Snapshot chunks are cut by size as well as by count. Only a change that would
be large is split, so the usual batch still costs one record.

Keys (zero-padded numbers sort): `j/<p>/<seq>` journal records, `j/<p>/<seq>/<part>`
their parts, `s/<p>/<seq>/<chunk>` snapshot chunks, `m/<p>` the marker of the newest
complete snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from revmon.kpi.ledger import Records, Windows

_SEQ_DIGITS = 12
SNAPSHOT_CHUNK = 5_000  # items per snapshot record at most (and within RECORD_BUDGET)
#: Kafka's default `max.message.bytes`: no record revmon writes may be larger (SPEC §9).
RECORD_LIMIT = 1024 * 1024
#: Bytes of one state record's value at most: the limit less room for key and framing.
RECORD_BUDGET = 900 * 1024
SNAPSHOT_MIN_CHANGES = 50_000
#: How many input offsets back the skipped-event notes are kept: far more than can be
#: redelivered (what was read after the last commit).
SKIPPED_KEEP_OFFSETS = 1_000_000


class StateTable(Protocol):
    """The storage the journal is written to (a Faust table in the worker, a dict in tests)."""

    def records(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Every (key, value) stored for `partition`."""

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Store one record of `partition` (one changelog message)."""

    def delete(self, partition: int, key: str) -> None:
        """Remove one record of `partition` (a tombstone)."""


Ledger = Records | Windows


def journal_key(partition: int, seq: int) -> str:
    """The table key of journal record `seq` of `partition`."""
    return f"j/{partition}/{seq:0{_SEQ_DIGITS}d}"


def part_key(partition: int, seq: int, part: int) -> str:
    """The table key of part `part` of journal record `seq` (a change too large for one)."""
    return f"{journal_key(partition, seq)}/{part:06d}"


def journal_prefix(partition: int) -> str:
    """The key prefix of every journal record of `partition`."""
    return f"j/{partition}/"


def snapshot_key(partition: int, seq: int, chunk: int) -> str:
    """The table key of one chunk of the snapshot taken at `seq`."""
    return f"{snapshot_prefix(partition)}{seq:0{_SEQ_DIGITS}d}/{chunk:06d}"


def snapshot_prefix(partition: int) -> str:
    """The key prefix of every snapshot chunk of `partition`."""
    return f"s/{partition}/"


def belongs_to(key: str, partition: int) -> bool:
    """True when `key` is one of `partition`'s records (journal, snapshot chunk or marker)."""
    prefixes = (journal_prefix(partition), snapshot_prefix(partition))
    return key.startswith(prefixes) or key == marker_key(partition)


def marker_key(partition: int) -> str:
    """The table key naming the newest complete snapshot of `partition`."""
    return f"m/{partition}"


@dataclass(slots=True)
class PartitionState:
    """What one input partition number (of all input topics) has applied so far.

    `offsets[topic]` is the last input offset applied; `ids` maps each remembered
    `event_id` to its `occurred_at` (unix seconds); `skipped["<topic>|<offset>"]` lists
    the events of that message (indexes among its decoded items) that were not applied,
    so that a re-route after a restart sends onwards exactly what the first pass did;
    `ledgers` are the metric books' containers, registered by name before `recover()`.

    The dedupe horizon is measured from the newest `occurred_at` of the topic an event
    arrives on (`newest_by_topic`): the copies of an event travel the same
    topic-partition, and the three input topics of a partition are read at their own
    pace, so measuring from the partition's overall newest would make the outcome
    depend on how far one topic ran ahead of another.
    """

    partition: int
    horizon: float
    offsets: dict[str, int] = field(default_factory=dict)
    ids: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, list[int]] = field(default_factory=dict)
    newest: float | None = None
    newest_by_topic: dict[str, float] = field(default_factory=dict)
    #: Wall-clock time the last message of each topic arrived (SPEC §3.9 source freshness).
    received_by_topic: dict[str, float] = field(default_factory=dict)
    seq: int = 0
    ledgers: dict[str, Ledger] = field(default_factory=dict)
    snapshot_min_changes: int = SNAPSHOT_MIN_CHANGES
    #: A fixed number of changes between snapshots instead (`worker.snapshot_every`).
    snapshot_every: int | None = None
    #: Called at each snapshot with the oldest of the newest `occurred_at` by topic, to
    #: drop what no later event can need (the engine's retired closed entities).
    before_snapshot: Callable[[float], object] | None = None
    _pending: dict[str, float] = field(default_factory=dict)
    _pending_skipped: dict[str, list[int]] = field(default_factory=dict)
    _dirty: bool = False
    _since_snapshot: int = 0
    _journal: list[int] = field(default_factory=list)
    #: Part keys of the journal records since the snapshot, and orphaned parts.
    _parts: set[str] = field(default_factory=set)
    _snapshot_keys: list[str] = field(default_factory=list)

    # -- input positions -------------------------------------------------------------
    def applied(self, topic: str, offset: int) -> bool:
        """True when the message at `offset` of `topic` was applied before (a redelivery)."""
        return offset <= self.offsets.get(topic, -1)

    def advance(self, topic: str, offset: int, received: float | None = None) -> None:
        """Record that the message at `offset` of `topic` has been handled (and when it
        arrived, wall clock)."""
        self.offsets[topic] = offset
        if received is not None:
            self.received_by_topic[topic] = received
        self._dirty = True

    # -- dedupe ----------------------------------------------------------------------
    def is_duplicate(self, event_id: str, topic: str = "") -> bool:
        """True when `event_id` was applied and lies within the horizon of `topic`'s newest."""
        at = self.ids.get(event_id)
        if at is None:
            return False
        newest = self.newest_by_topic.get(topic)
        return newest is None or at >= newest - self.horizon

    def remember(self, event_id: str, at: float, topic: str = "") -> None:
        """Remember an applied event; it moves the newest `occurred_at` (and its topic's)."""
        self.ids[event_id] = at
        self._pending[event_id] = at
        if self.newest is None or at > self.newest:
            self.newest = at
        if at > self.newest_by_topic.get(topic, float("-inf")):
            self.newest_by_topic[topic] = at
        self._dirty = True

    def skip(self, topic: str, offset: int, index: int) -> None:
        """Note that item `index` of the message at `offset` of `topic` was not applied."""
        key = f"{topic}|{offset}"
        indexes = self.skipped.setdefault(key, [])
        indexes.append(index)
        self._pending_skipped[key] = indexes
        self._dirty = True

    def skipped_at(self, topic: str, offset: int) -> list[int]:
        """The items of the message at `offset` of `topic` that were not applied."""
        return self.skipped.get(f"{topic}|{offset}", [])

    # -- journal ---------------------------------------------------------------------
    @property
    def dirty(self) -> bool:
        """True when something changed since the last flush."""
        return self._dirty

    def flush(self, table: StateTable) -> None:
        """Write the changes since the last flush as one record; snapshot when it is due."""
        if not self._dirty:
            return
        self.seq += 1
        records: dict[str, Any] = {}
        points: dict[str, Any] = {}
        changes = len(self._pending) + len(self._pending_skipped)
        for name, ledger in self.ledgers.items():
            if isinstance(ledger, Records):
                drained = ledger.drain()
                if drained:
                    records[name] = drained
                    changes += len(drained)
            else:
                added = ledger.drain()
                if added:
                    points[name] = [list(p) for p in added]
                    changes += len(added)
        value = {
            "offsets": self.offsets,
            "newest": self.newest,
            "newest_by_topic": self.newest_by_topic,
            "received_by_topic": self.received_by_topic,
            "ids": self._pending,
            "records": records,
            "points": points,
        }
        if self._pending_skipped:
            value["skipped"] = self._pending_skipped
        raw = _dumps(value)
        if len(raw) > RECORD_BUDGET:
            raw = self._write_parts(table, value)
        table.put(self.partition, journal_key(self.partition, self.seq), raw)
        self._journal.append(self.seq)
        self._pending = {}
        self._pending_skipped = {}
        self._dirty = False
        self._since_snapshot += changes
        every = self.snapshot_every
        due = max(self.snapshot_min_changes, self._size()) if every is None else every
        if self._since_snapshot >= due:
            self.snapshot(table)

    def _write_parts(self, table: StateTable, value: dict[str, Any]) -> bytes:
        """Write a change too large for one record as parts; the journal record to commit them."""
        items = _change_items(value)
        count = 0
        for count, chunk in enumerate(_sized_chunks(items, SNAPSHOT_CHUNK, RECORD_BUDGET), 1):
            key = part_key(self.partition, self.seq, count - 1)
            table.put(self.partition, key, chunk)
            self._parts.add(key)
        head = {k: v for k, v in value.items() if k not in _CHANGE_FIELDS}
        head["parts"] = count
        return _dumps(head)

    def snapshot(self, table: StateTable) -> None:
        """Write the whole state as chunks plus a marker, then drop what it supersedes."""
        self._forget_old_ids()
        self._forget_old_skips()
        if self.before_snapshot is not None and self.newest_by_topic:
            self.before_snapshot(min(self.newest_by_topic.values()))
        if self.newest is not None:
            for ledger in self.ledgers.values():
                if isinstance(ledger, Windows):
                    ledger.expire(self.newest)
        keys: list[str] = []
        for i, chunk in enumerate(_sized_chunks(self._items(), SNAPSHOT_CHUNK, RECORD_BUDGET)):
            key = snapshot_key(self.partition, self.seq, i)
            table.put(self.partition, key, chunk)
            keys.append(key)
        marker = {
            "seq": self.seq,
            "chunks": len(keys),
            "offsets": self.offsets,
            "newest": self.newest,
            "newest_by_topic": self.newest_by_topic,
            "received_by_topic": self.received_by_topic,
        }
        table.put(self.partition, marker_key(self.partition), _dumps(marker))
        for key in self._snapshot_keys:
            table.delete(self.partition, key)
        for seq in self._journal:
            table.delete(self.partition, journal_key(self.partition, seq))
        for key in sorted(self._parts):
            table.delete(self.partition, key)
        self._snapshot_keys, self._journal, self._since_snapshot = keys, [], 0
        self._parts = set()

    def _size(self) -> int:
        size = len(self.ids) + len(self.skipped)
        for ledger in self.ledgers.values():
            size += len(ledger) if isinstance(ledger, Records) else ledger.point_count()
        return size

    def _items(self) -> Iterator[list[Any]]:
        for event_id, at in self.ids.items():
            yield ["i", event_id, at]
        for key, indexes in self.skipped.items():
            yield ["k", key, indexes]
        for name, ledger in self.ledgers.items():
            if isinstance(ledger, Records):
                for key, value in ledger.items():
                    yield ["r", name, key, value]
            else:
                for point in ledger.snapshot():
                    yield ["p", name, *point]

    def _forget_old_ids(self) -> None:
        # An id is forgotten once no topic's horizon can reach it any more.
        if self.newest_by_topic:
            cutoff = min(self.newest_by_topic.values()) - self.horizon
            self.ids = {i: at for i, at in self.ids.items() if at >= cutoff}

    def _forget_old_skips(self) -> None:
        def recent(key: str) -> bool:
            topic, _, offset = key.rpartition("|")
            return int(offset) > self.offsets.get(topic, -1) - SKIPPED_KEEP_OFFSETS

        self.skipped = {key: indexes for key, indexes in self.skipped.items() if recent(key)}

    # -- recovery --------------------------------------------------------------------
    @classmethod
    def recover(
        cls,
        partition: int,
        horizon: float,
        table: StateTable,
        ledgers: Mapping[str, Ledger] | None = None,
    ) -> PartitionState:
        """Rebuild a partition's state: its newest snapshot, then the journal after it."""
        state = cls(partition=partition, horizon=horizon, ledgers=dict(ledgers or {}))
        stored = dict(table.records(partition))
        marker_raw = stored.get(marker_key(partition))
        if marker_raw is not None:
            marker = orjson.loads(marker_raw)
            state.seq = int(marker["seq"])
            state.offsets = {str(t): int(o) for t, o in marker["offsets"].items()}
            state.newest = marker["newest"]
            state.newest_by_topic = dict(marker.get("newest_by_topic", {}))
            state.received_by_topic = dict(marker.get("received_by_topic", {}))
            for i in range(int(marker["chunks"])):
                key = snapshot_key(partition, state.seq, i)
                state._load_chunk(orjson.loads(stored[key]))
                state._snapshot_keys.append(key)
        live = set(state._snapshot_keys)
        # Chunks of an older snapshot, or of one whose marker never landed: delete them
        # with the next snapshot.
        state._snapshot_keys.extend(
            key for key in stored if key.startswith(snapshot_prefix(partition)) and key not in live
        )
        prefix = journal_prefix(partition)
        journal: list[tuple[int, bytes]] = []
        parts: dict[str, bytes] = {}
        for key, raw in stored.items():
            if key.startswith(prefix):
                seq_text, _, part = key[len(prefix) :].partition("/")
                if part:
                    parts[key] = raw
                else:
                    journal.append((int(seq_text), raw))
        # Every part is deleted with the next snapshot: those of the records loaded below,
        # and orphans whose journal record never landed (never loaded).
        state._parts.update(parts)
        snapshot_seq = state.seq
        for seq, raw in sorted(journal):
            if marker_raw is not None and seq <= snapshot_seq:
                state._journal.append(seq)  # covered by the snapshot; its delete did not land
                continue
            value = orjson.loads(raw)
            for i in range(int(value.get("parts", 0))):
                state._load_chunk(orjson.loads(parts[part_key(partition, seq, i)]))
            state._load_record(seq, value)
        return state

    def _load_chunk(self, items: list[list[Any]]) -> None:
        for item in items:
            if item[0] == "i":
                self.ids[item[1]] = item[2]
            elif item[0] == "k":
                self.skipped[item[1]] = item[2]
            elif item[0] == "r":
                self._records(item[1]).load([(item[2], item[3])])
            else:
                self._windows(item[1]).load([(item[2], item[3], item[4])])

    def _load_record(self, seq: int, value: Any) -> None:
        self.ids.update(value.get("ids", {}))
        self.skipped.update(value.get("skipped", {}))
        for name, changes in value.get("records", {}).items():
            self._records(name).load(changes.items())
        for name, points in value.get("points", {}).items():
            self._windows(name).load(points)
        self.seq = seq
        self.offsets = {str(t): int(o) for t, o in value.get("offsets", {}).items()}
        self.newest = value.get("newest")
        self.newest_by_topic = dict(value.get("newest_by_topic", {}))
        self.received_by_topic = dict(value.get("received_by_topic", {}))
        self._journal.append(seq)

    def _records(self, name: str) -> Records:
        ledger = self.ledgers.get(name)
        if not isinstance(ledger, Records):
            raise KeyError(f"state names an unknown record ledger {name!r}")
        return ledger

    def _windows(self, name: str) -> Windows:
        ledger = self.ledgers.get(name)
        if not isinstance(ledger, Windows):
            raise KeyError(f"state names an unknown window ledger {name!r}")
        return ledger


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


#: The fields of a journal record that hold the change itself (what parts carry).
_CHANGE_FIELDS = ("ids", "skipped", "records", "points")


def _change_items(value: Mapping[str, Any]) -> Iterator[list[Any]]:
    """A journal record's change as snapshot items (what `_load_chunk` applies)."""
    for event_id, at in value.get("ids", {}).items():
        yield ["i", event_id, at]
    for key, indexes in value.get("skipped", {}).items():
        yield ["k", key, indexes]
    for name, changes in value.get("records", {}).items():
        for key, record in changes.items():
            yield ["r", name, key, record]
    for name, points in value.get("points", {}).items():
        for point in points:
            yield ["p", name, *point]


def _sized_chunks(items: Iterable[list[Any]], count: int, budget: int) -> Iterator[bytes]:
    """Items encoded as JSON arrays of at most `count` items and `budget` bytes each.

    Cut by count first (one encoding in the usual case); an array over the budget is
    halved until it fits. A single item over the budget is written alone (input limits
    keep every item far below it).
    """
    chunk: list[list[Any]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= count:
            yield from _fit(chunk, budget)
            chunk = []
    if chunk:
        yield from _fit(chunk, budget)


def _fit(chunk: list[list[Any]], budget: int) -> Iterator[bytes]:
    raw = _dumps(chunk)
    if len(raw) <= budget or len(chunk) == 1:
        yield raw
        return
    half = len(chunk) // 2
    yield from _fit(chunk[:half], budget)
    yield from _fit(chunk[half:], budget)

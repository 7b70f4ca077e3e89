"""Per-partition state: dedupe memory, input offsets, and the one-record-per-flush journal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest

from revmon.kpi.ledger import Records, Windows
from revmon.state import (
    RECORD_BUDGET,
    SKIPPED_KEEP_OFFSETS,
    PartitionState,
    StateTable,
    journal_key,
    journal_prefix,
    marker_key,
    part_key,
    snapshot_key,
)
from revmon.storage import FaustStateTable

HORIZON = 100.0


class DictTable:
    """A StateTable over a dict that records every put and delete."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, bytes]] = {}
        self.puts: list[tuple[int, str]] = []
        self.deletes: list[tuple[int, str]] = []

    def records(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Every (key, value) of the partition, in insertion order."""
        return list(self.data.get(partition, {}).items())

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Store a record."""
        self.data.setdefault(partition, {})[key] = value
        self.puts.append((partition, key))

    def delete(self, partition: int, key: str) -> None:
        """Remove a record."""
        del self.data[partition][key]
        self.deletes.append((partition, key))

    def sorted_keys(self, partition: int = 0) -> list[str]:
        """The partition's keys, sorted."""
        return sorted(self.data.get(partition, {}))

    def value(self, key: str, partition: int = 0) -> Any:
        """A record's decoded value."""
        return orjson.loads(self.data[partition][key])


@pytest.fixture
def table() -> DictTable:
    """An empty dict-backed table."""
    return DictTable()


class FakeFaustTable(dict[bytes, bytes]):
    """What `FaustStateTable` uses of a Faust table: item writes, `pop` and `data`."""

    @property
    def data(self) -> dict[bytes, bytes]:
        """The stored items (a Faust table's store)."""
        return self


@pytest.fixture(params=["dict", "faust"])
def any_table(request: pytest.FixtureRequest) -> StateTable:
    """The test table, and the worker's adapter on a Faust table (one store, keys carry the
    partition: every partition's records in it, so reading one must pick its own)."""
    if request.param == "dict":
        return DictTable()
    faust_table = FaustStateTable(FakeFaustTable())
    for partition in (0, 1, 10):
        faust_table.anchor(partition, None)
    for partition in (1, 10):  # neighbours whose keys share a prefix with partition 0's
        other = _snapshotting(faust_table, every=2, partition=partition)
        _flush_ids(other, faust_table, 0, **{f"x{partition}": 1.0, f"y{partition}": 2.0})
        _flush_ids(other, faust_table, 1, **{f"z{partition}": 3.0})
    return faust_table


@pytest.fixture
def state() -> PartitionState:
    """A fresh state of partition 0 with a 100 s dedupe horizon."""
    return PartitionState(partition=0, horizon=HORIZON)


# -- dedupe ----------------------------------------------------------------------------


def test_unknown_id_is_not_a_duplicate(state: PartitionState) -> None:
    """An event_id never applied is not a duplicate."""
    assert not state.is_duplicate("e1")


def test_remembered_id_is_a_duplicate(state: PartitionState) -> None:
    """An applied event_id is a duplicate from then on."""
    state.remember("e1", 1000.0)

    assert state.is_duplicate("e1")
    assert not state.is_duplicate("e2")


@pytest.mark.parametrize(
    ("at", "duplicate"),
    [
        pytest.param(1000.0, True, id="newest"),
        pytest.param(950.0, True, id="inside"),
        pytest.param(900.0, True, id="on-the-edge"),
        pytest.param(899.999, False, id="just-outside"),
        pytest.param(0.0, False, id="far-outside"),
    ],
)
def test_horizon(state: PartitionState, at: float, duplicate: bool) -> None:
    """An id older than newest − horizon is no longer recognised as a duplicate."""
    state.remember("old", at)
    state.remember("newest", 1000.0)

    assert state.is_duplicate("old") is duplicate


def test_newest_only_moves_forward(state: PartitionState) -> None:
    """`newest` is the greatest occurred_at remembered, whatever the arrival order."""
    state.remember("a", 500.0)
    state.remember("b", 300.0)

    assert state.newest == 500.0

    state.remember("c", 700.0)

    assert state.newest == 700.0


def test_newer_event_pushes_old_ids_out_of_the_horizon(state: PartitionState) -> None:
    """An id stops being a duplicate once a newer event moves the horizon past it."""
    state.remember("a", 0.0)
    assert state.is_duplicate("a")

    state.remember("b", HORIZON + 1)

    assert not state.is_duplicate("a")


# -- offsets ---------------------------------------------------------------------------


def test_nothing_applied_at_start(state: PartitionState) -> None:
    """A fresh state has applied no offset, not even 0."""
    assert not state.applied("crm", 0)


@pytest.mark.parametrize(
    ("topic", "offset", "applied"),
    [
        pytest.param("crm", 4, True, id="below"),
        pytest.param("crm", 5, True, id="equal"),
        pytest.param("crm", 6, False, id="above"),
        pytest.param("billing", 0, False, id="other-topic"),
    ],
)
def test_applied_after_advance(
    state: PartitionState, topic: str, offset: int, applied: bool
) -> None:
    """After advance(topic, n), offsets up to n of that topic are applied, others not."""
    state.advance("crm", 5)

    assert state.applied(topic, offset) is applied


def test_advance_makes_state_dirty(state: PartitionState) -> None:
    """Advancing (even with no event remembered) is a change to write."""
    assert not state.dirty

    state.advance("crm", 0)

    assert state.dirty


# -- journal ---------------------------------------------------------------------------


def test_flush_writes_one_record_with_offsets_and_new_ids(
    state: PartitionState, table: DictTable
) -> None:
    """One flush writes exactly one record: all offsets, newest, and the ids since last flush."""
    state.remember("e1", 10.0)
    state.remember("e2", 20.0)
    state.advance("crm", 7, received=1000.0)
    state.advance("billing", 3)

    state.flush(table)

    assert table.puts == [(0, journal_key(0, 1))]
    assert table.value(journal_key(0, 1)) == {
        "offsets": {"crm": 7, "billing": 3},
        "newest": 20.0,
        "newest_by_topic": {"": 20.0},
        "received_by_topic": {"crm": 1000.0},
        "ids": {"e1": 10.0, "e2": 20.0},
        "records": {},
        "points": {},
    }
    assert not state.dirty


def test_received_times_survive_recovery_from_journal_and_snapshot(table: DictTable) -> None:
    """When each topic's last message arrived is state: a restart keeps source freshness."""
    state = PartitionState(partition=0, horizon=100.0)
    state.advance("crm", 1, received=1000.0)
    state.flush(table)
    assert PartitionState.recover(0, 100.0, table).received_by_topic == {"crm": 1000.0}
    state.advance("billing", 1, received=2000.0)
    state.snapshot(table)
    recovered = PartitionState.recover(0, 100.0, table)
    assert recovered.received_by_topic == {"crm": 1000.0, "billing": 2000.0}


def test_second_flush_writes_only_new_ids(state: PartitionState, table: DictTable) -> None:
    """Each record holds only the ids since the previous flush, and every offset."""
    state.remember("e1", 10.0)
    state.advance("crm", 0)
    state.flush(table)
    state.remember("e2", 20.0)
    state.advance("billing", 0)

    state.flush(table)

    assert table.puts == [(0, journal_key(0, 1)), (0, journal_key(0, 2))]
    assert table.value(journal_key(0, 2)) == {
        "offsets": {"crm": 0, "billing": 0},
        "newest": 20.0,
        "newest_by_topic": {"": 20.0},
        "received_by_topic": {},
        "ids": {"e2": 20.0},
        "records": {},
        "points": {},
    }


def test_flush_without_changes_writes_nothing(state: PartitionState, table: DictTable) -> None:
    """A flush with nothing changed writes no record, at start or after a flush."""
    state.flush(table)
    assert table.puts == []

    state.advance("crm", 0)
    state.flush(table)
    state.flush(table)

    assert len(table.puts) == 1


def test_offset_only_flush_has_no_ids(state: PartitionState, table: DictTable) -> None:
    """Input that was all rejected still writes its offsets (with no ids)."""
    state.advance("crm", 9)

    state.flush(table)

    assert table.value(journal_key(0, 1)) == {
        "offsets": {"crm": 9},
        "newest": None,
        "newest_by_topic": {},
        "received_by_topic": {},
        "ids": {},
        "records": {},
        "points": {},
    }


def test_journal_keys_sort_in_sequence_order() -> None:
    """Keys are zero-padded so that text order is sequence order."""
    keys = [journal_key(3, seq) for seq in (1, 2, 9, 10, 11, 100)]

    assert sorted(keys) == keys
    assert all(key.startswith(journal_prefix(3)) for key in keys)


# -- recovery --------------------------------------------------------------------------


def test_recover_rebuilds_ids_offsets_newest_and_seq(table: DictTable) -> None:
    """Recovery from the records gives the same ids, offsets, newest and sequence."""
    before = PartitionState(partition=0, horizon=HORIZON)
    before.remember("e1", 10.0)
    before.advance("crm", 1)
    before.flush(table)
    before.remember("e2", 30.0)
    before.remember("e3", 20.0)
    before.advance("crm", 2)
    before.advance("billing", 0)
    before.flush(table)

    after = PartitionState.recover(0, HORIZON, table)

    assert after.ids == {"e1": 10.0, "e2": 30.0, "e3": 20.0}
    assert after.offsets == {"crm": 2, "billing": 0}
    assert after.newest == 30.0
    assert after.seq == 2
    assert not after.dirty
    assert after.is_duplicate("e1")
    assert after.applied("crm", 2)
    assert not after.applied("crm", 3)


def test_recover_from_empty_table_is_a_fresh_state(table: DictTable) -> None:
    """With no records, recovery gives an empty state."""
    state = PartitionState.recover(0, HORIZON, table)

    assert (state.ids, state.offsets, state.newest, state.seq) == ({}, {}, None, 0)


def test_flush_after_recovery_continues_the_sequence(table: DictTable) -> None:
    """A recovered state writes its next record after the newest, never over one."""
    first = PartitionState(partition=0, horizon=HORIZON)
    first.remember("e1", 10.0)
    first.advance("crm", 0)
    first.flush(table)

    second = PartitionState.recover(0, HORIZON, table)
    second.remember("e2", 11.0)
    second.advance("crm", 1)
    second.flush(table)

    assert table.sorted_keys() == [journal_key(0, 1), journal_key(0, 2)]
    assert PartitionState.recover(0, HORIZON, table).ids == {"e1": 10.0, "e2": 11.0}


class SharedTable(DictTable):
    """A table whose records() yields every partition's records (one keyspace)."""

    def records(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Every record of every partition."""
        return [item for records in self.data.values() for item in records.items()]


@pytest.mark.parametrize(
    "other", [pytest.param(0, id="0"), pytest.param(10, id="10"), pytest.param(11, id="11")]
)
def test_recover_reads_only_its_own_partition(other: int) -> None:
    """Recovering partition 1 ignores journal keys of partitions 0, 10 and 11 in one keyspace."""
    table = SharedTable()
    mine = PartitionState(partition=1, horizon=HORIZON)
    mine.remember("mine", 5.0)
    mine.advance("crm", 1)
    mine.flush(table)
    theirs = PartitionState(partition=other, horizon=HORIZON)
    theirs.remember("theirs", 6.0)
    theirs.advance("crm", 99)
    theirs.flush(table)
    theirs.advance("crm", 100)
    theirs.flush(table)

    recovered = PartitionState.recover(1, HORIZON, table)

    assert recovered.ids == {"mine": 5.0}
    assert recovered.offsets == {"crm": 1}
    assert recovered.seq == 1


def test_recover_uses_the_newest_record_whatever_the_read_order(table: DictTable) -> None:
    """Records are applied in sequence order even when the table yields them out of order."""
    state = PartitionState(partition=0, horizon=HORIZON)
    for offset in range(12):
        state.remember(f"e{offset}", float(offset))
        state.advance("crm", offset)
        state.flush(table)
    shuffled = DictTable()
    for key in reversed(table.sorted_keys()):
        shuffled.put(0, key, table.data[0][key])

    recovered = PartitionState.recover(0, HORIZON, shuffled)

    assert recovered.offsets == {"crm": 11}
    assert recovered.seq == 12
    assert recovered.newest == 11.0


# -- expiry ----------------------------------------------------------------------------


def _flush_ids(state: PartitionState, table: StateTable, offset: int, **ids: float) -> None:
    for event_id, at in ids.items():
        state.remember(event_id, at)
    state.advance("crm", offset)
    state.flush(table)


def test_horizon_is_measured_per_topic(state: PartitionState) -> None:
    """A topic read far ahead of another does not push the other's ids out of its horizon."""
    state.remember("crm-1", 100.0, "crm")
    state.remember("bill-1", 10_000.0, "billing")

    assert state.is_duplicate("crm-1", "crm")
    assert not state.is_duplicate("crm-1", "billing")


def _ledgers() -> dict[str, Records | Windows]:
    return {"leads": Records(), "entries": Windows(retention=1_000.0)}


def _snapshotting(table: StateTable, every: int = 4, partition: int = 0) -> PartitionState:
    state = PartitionState(partition=partition, horizon=HORIZON, ledgers=_ledgers())
    state.snapshot_min_changes = every
    return state


def test_no_snapshot_before_enough_changes(table: DictTable) -> None:
    """Below the change threshold, flushes only append journal records."""
    state = _snapshotting(table, every=10)
    _flush_ids(state, table, 0, a=1.0)
    _flush_ids(state, table, 1, b=2.0)

    assert table.sorted_keys() == [journal_key(0, 1), journal_key(0, 2)]


def test_snapshot_replaces_the_journal(table: DictTable) -> None:
    """Once changes reach the threshold, a snapshot is written and the journal it covers goes."""
    state = _snapshotting(table, every=3)
    _flush_ids(state, table, 0, a=1.0)
    _flush_ids(state, table, 1, b=2.0, c=3.0)

    assert table.sorted_keys() == [marker_key(0), snapshot_key(0, 2, 0)]
    assert table.value(marker_key(0)) == {
        "seq": 2,
        "chunks": 1,
        "offsets": {"crm": 1},
        "newest": 3.0,
        "newest_by_topic": {"": 3.0},
        "received_by_topic": {},
    }


def test_recover_from_snapshot_and_later_journal(any_table: StateTable) -> None:
    """Recovery loads the snapshot, then applies the journal records written after it."""
    table = any_table
    state = _snapshotting(table, every=3)
    leads = state.ledgers["leads"]
    entries = state.ledgers["entries"]
    assert isinstance(leads, Records)
    assert isinstance(entries, Windows)
    leads.put("l1", ["mql", 5.0])
    entries.add("lead|mql", 5.0)
    _flush_ids(state, table, 0, a=1.0)
    _flush_ids(state, table, 1, b=2.0)  # snapshot
    leads.put("l2", ["name", 6.0])
    leads.delete("l1")
    entries.add("lead|name", 6.0, 2.0)
    _flush_ids(state, table, 2, c=6.0)

    ledgers = _ledgers()
    recovered = PartitionState.recover(0, HORIZON, table, ledgers)

    assert (recovered.seq, recovered.offsets, recovered.newest) == (3, {"crm": 2}, 6.0)
    assert set(recovered.ids) == {"a", "b", "c"}
    recovered_leads = ledgers["leads"]
    recovered_entries = ledgers["entries"]
    assert isinstance(recovered_leads, Records)
    assert isinstance(recovered_entries, Windows)
    assert dict(recovered_leads.items()) == {"l2": ["name", 6.0]}
    assert recovered_entries.sum("lead|mql", 10.0, 100.0) == 1.0
    assert recovered_entries.sum("lead|name", 10.0, 100.0) == 2.0
    assert recovered_leads.drain() == {}  # loading marks nothing as changed


def test_snapshot_drops_ids_outside_the_horizon(table: DictTable) -> None:
    """Ids older than newest − horizon are not carried into a snapshot."""
    state = _snapshotting(table, every=2)
    _flush_ids(state, table, 0, old=0.0, new=500.0)

    recovered = PartitionState.recover(0, HORIZON, table)

    assert set(recovered.ids) == {"new"}
    assert not recovered.is_duplicate("old")


def test_snapshot_without_marker_is_ignored_and_cleaned_up(table: DictTable) -> None:
    """Chunks whose marker never landed (a crash mid-snapshot) are ignored, then deleted."""
    state = _snapshotting(table, every=100)
    _flush_ids(state, table, 0, a=1.0)
    table.put(0, snapshot_key(0, 7, 0), orjson.dumps([["i", "ghost", 1.0]]))

    recovered = PartitionState.recover(0, HORIZON, table)
    assert set(recovered.ids) == {"a"}

    recovered.snapshot(table)
    assert snapshot_key(0, 7, 0) not in table.sorted_keys()
    assert table.sorted_keys() == [marker_key(0), snapshot_key(0, 1, 0)]


def test_journal_covered_by_a_snapshot_is_not_applied_twice(table: DictTable) -> None:
    """A journal record the snapshot covers (its delete lost) is skipped, then deleted."""
    state = _snapshotting(table, every=100)
    entries = state.ledgers["entries"]
    assert isinstance(entries, Windows)
    entries.add("k", 5.0)
    _flush_ids(state, table, 0, a=1.0)
    record = table.data[0][journal_key(0, 1)]
    state.snapshot(table)
    table.put(0, journal_key(0, 1), record)  # as if the tombstone never landed

    ledgers = _ledgers()
    recovered = PartitionState.recover(0, HORIZON, table, ledgers)
    recovered_entries = ledgers["entries"]
    assert isinstance(recovered_entries, Windows)

    assert recovered_entries.sum("k", 10.0, 100.0) == 1.0
    recovered.snapshot(table)
    assert journal_key(0, 1) not in table.sorted_keys()


def test_skipped_events_are_journaled_recovered_and_pruned(table: DictTable) -> None:
    """Which events of a message were not applied survives a restart (a re-route needs it),
    and a snapshot keeps only the notes of recent offsets."""
    state = _snapshotting(table, every=1_000)
    state.skip("crm", 7, 1)
    state.skip("crm", 7, 3)
    state.advance("crm", 7)
    state.flush(table)

    recovered = PartitionState.recover(0, HORIZON, table, _ledgers())
    assert recovered.skipped_at("crm", 7) == [1, 3]
    assert recovered.skipped_at("crm", 8) == []

    recovered.advance("crm", 7 + SKIPPED_KEEP_OFFSETS)
    recovered.skip("crm", 7 + SKIPPED_KEEP_OFFSETS, 0)
    recovered.snapshot(table)
    again = PartitionState.recover(0, HORIZON, table, _ledgers())
    assert again.skipped == {f"crm|{7 + SKIPPED_KEEP_OFFSETS}": [0]}


# -- records within Kafka's 1 MiB (SPEC §9) ---------------------------------------------


def _big_state(partition: int = 0) -> PartitionState:
    """A state with one record ledger and one window ledger."""
    ledgers: dict[str, Records | Windows] = {"opps": Records(), "w": Windows(retention=1e9)}
    return PartitionState(partition=partition, horizon=HORIZON, ledgers=ledgers)


def _bulk_change(state: PartitionState, first: int, count: int, offset: int) -> None:
    """A change of ~`count` × 600 bytes: ids, records and points, as a bulk load makes."""
    records, windows = state.ledgers["opps"], state.ledgers["w"]
    assert isinstance(records, Records)
    assert isinstance(windows, Windows)
    for n in range(first, first + count):
        state.remember(f"evt-{n:08d}", float(n))
        records.put(f"opp-{n:08d}", ["x" * 400, n, "stage", float(n)])
        windows.add(f"entries|opp|s{n % 7}", float(n), 1.0)
    state.advance("crm", offset)


def _restored(table: DictTable, partition: int = 0) -> PartitionState:
    """The state recovered from `table` into fresh ledgers."""
    fresh = _big_state(partition)
    return PartitionState.recover(partition, HORIZON, table, fresh.ledgers)


def _same(a: PartitionState, b: PartitionState) -> None:
    """Assert two states hold the same ids, offsets, records and points."""
    assert a.ids == b.ids
    assert a.offsets == b.offsets
    assert a.seq == b.seq
    ra, rb = a.ledgers["opps"], b.ledgers["opps"]
    wa, wb = a.ledgers["w"], b.ledgers["w"]
    assert isinstance(ra, Records)
    assert isinstance(rb, Records)
    assert isinstance(wa, Windows)
    assert isinstance(wb, Windows)
    assert dict(ra.items()) == dict(rb.items())
    assert sorted(wa.snapshot()) == sorted(wb.snapshot())


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(100, id="small-one-record"),
        pytest.param(3_000, id="bulk-load"),
        pytest.param(12_000, id="many-large-messages"),
    ],
)
def test_every_record_stays_within_the_budget(table: DictTable, count: int) -> None:
    """Whatever one batch changes, every record written is within 900 KiB and recovers whole."""
    state = _big_state()
    state.snapshot_min_changes = 10**9
    _bulk_change(state, 0, count, offset=0)

    state.flush(table)

    sizes = [len(v) for v in table.data[0].values()]
    assert max(sizes) <= RECORD_BUDGET
    assert (len(sizes) > 1) is (count > 100)
    _same(state, _restored(table))


def test_a_large_change_is_parts_then_its_journal_record(table: DictTable) -> None:
    """Parts are written first and the journal record, naming how many, commits them."""
    state = _big_state()
    state.snapshot_min_changes = 10**9
    _bulk_change(state, 0, 3_000, offset=0)

    state.flush(table)

    keys = [key for _, key in table.puts]
    assert keys[-1] == journal_key(0, 1)
    assert keys[:-1] == [part_key(0, 1, i) for i in range(len(keys) - 1)]
    assert table.value(journal_key(0, 1))["parts"] == len(keys) - 1


def test_parts_without_their_journal_record_are_ignored(table: DictTable) -> None:
    """A crash between the parts and their journal record recovers the state before them."""
    state = _big_state()
    state.snapshot_min_changes = 10**9
    _bulk_change(state, 0, 10, offset=0)
    state.flush(table)
    before = _restored(table)
    _bulk_change(state, 10, 3_000, offset=1)
    state.flush(table)
    del table.data[0][journal_key(0, 2)]  # the commit never landed

    after = _restored(table)

    _same(before, after)
    assert after.offsets == {"crm": 0}


def test_orphan_parts_are_overwritten_then_deleted_by_the_snapshot(table: DictTable) -> None:
    """After a crash, the next flushes reuse the orphans' keys and the snapshot deletes them all."""
    state = _big_state()
    state.snapshot_min_changes = 10**9
    _bulk_change(state, 0, 6_000, offset=0)
    state.flush(table)
    del table.data[0][journal_key(0, 1)]
    recovered = _restored(table)
    recovered.snapshot_min_changes = 10**9
    _bulk_change(recovered, 0, 3_000, offset=0)  # the redelivered input, smaller batch
    recovered.flush(table)
    assert _restored(table).offsets == {"crm": 0}
    _same(recovered, _restored(table))

    recovered.snapshot(table)

    assert not [k for k in table.data[0] if k.startswith(journal_prefix(0))]
    _same(recovered, _restored(table))


def test_snapshot_chunks_are_cut_by_size(table: DictTable) -> None:
    """A snapshot of large items writes chunks within the budget and recovers whole."""
    state = _big_state()
    state.snapshot_min_changes = 10**9
    _bulk_change(state, 0, 8_000, offset=0)
    state.flush(table)

    state.snapshot(table)

    chunks = [k for k in table.data[0] if k.startswith("s/0/")]
    assert len(chunks) > 2
    assert max(len(v) for v in table.data[0].values()) <= RECORD_BUDGET
    _same(state, _restored(table))

"""The funnel book: inventory, flows, partials and series (kpi/funnel.py, kpi/inventory.py)."""

from __future__ import annotations

import itertools
import math
import tracemalloc
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.utils import floatToGoString

from revmon.events import EVENT_ADAPTER, Event
from revmon.kpi.funnel import Changes, Effect, FunnelBook, funnel_specs, samples
from revmon.kpi.inventory import AGE_BUCKETS, le_label
from revmon.kpi.ledger import Point, Records, Sample
from revmon.settings import Settings, Window, load_settings

DAY = 86_400.0
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a midnight like CRM date-only exports
T = NOW - 5 * DAY
_ids = itertools.count()


@cache
def _settings() -> Settings:
    # Built inside a test (after conftest cleared REVMON_*), once: the packaged defaults.
    return load_settings(None)


def _event(type_: str, at: float, /, **fields: Any) -> Event:
    occurred = datetime.fromtimestamp(at, UTC).isoformat()
    data = {"type": type_, "event_id": f"e{next(_ids)}", "occurred_at": occurred, **fields}
    return EVENT_ADAPTER.validate_python({k: v for k, v in data.items() if v is not None})


def lead(lead_id: str, at: float, stage: str | None = None) -> Event:
    return _event("lead.created", at, lead_id=lead_id, stage=stage)


def lead_to(lead_id: str, at: float, stage: str) -> Event:
    return _event("lead.stage_changed", at, lead_id=lead_id, stage=stage)


def opp(opp_id: str, at: float, stage: str | None = None) -> Event:
    fields = {"account_id": "A1", "amount": "100", "kind": "new_business", "stage": stage}
    return _event("opportunity.created", at, opportunity_id=opp_id, **fields)


def opp_to(opp_id: str, at: float, stage: str) -> Event:
    return _event("opportunity.stage_changed", at, opportunity_id=opp_id, stage=stage)


def spend(at: float) -> Event:
    return _event("campaign.spend", at, campaign_id="C1", amount="10")


def book_with(events: Iterable[Event]) -> FunnelBook:
    book = FunnelBook.from_settings(_settings())
    for event in events:
        book.apply(event)
    return book


def flat(series: Iterable[Sample]) -> dict[str, float]:
    """Series by `name{label values}`, e.g. `revmon_funnel_entries{lead,name,7d}`."""
    return {f"{s.name}{{{','.join(v for _, v in s.labels)}}}": s.value for s in series}


def exported(book: FunnelBook, now: float = NOW) -> dict[str, float]:
    return flat(samples(_settings(), book.partials(now), now))


def added(*partials: Mapping[str, float]) -> dict[str, float]:
    total: Counter[str] = Counter()
    for one in partials:
        total.update(one)
    return dict(total)


_FLOWS = (
    "revmon_funnel_entries",
    "revmon_funnel_exits",
    "revmon_funnel_dwell_seconds_gsum",
)


def nonzero(series: Mapping[str, float], prefixes: Sequence[str], suffix: str = "") -> dict:
    return {
        key: value
        for key, value in series.items()
        if value and key.startswith(tuple(f"{p}{{" for p in prefixes)) and key.endswith(suffix)
    }


def test_empty_book_exports_every_enumerated_series_at_zero() -> None:
    """An empty book exports every non-ratio series of SPEC §3.1–§3.2 at 0, and no ratio."""
    series = samples(_settings(), FunnelBook.from_settings(_settings()).partials(NOW), NOW)

    # per open stage (3 lead + 4 opportunity): open, 10 buckets, gcount, gsum, stale = 14
    # per window (3): entries of 5 + 6 stages, exits of 7 open stages x 3, dwell of 7
    # stages (10 buckets, gcount, gsum)
    assert len(series) == 7 * 14 + 3 * (11 + 7 * 3 + 7 * 12)
    assert all(s.value == 0.0 for s in series)
    assert not [s for s in series if s.name.endswith("_ratio")]
    labels = {s.name: tuple(name for name, _ in s.labels) for s in series}
    assert labels == {
        "revmon_funnel_open": ("funnel", "stage"),
        "revmon_funnel_age_seconds_bucket": ("funnel", "stage", "le"),
        "revmon_funnel_age_seconds_gcount": ("funnel", "stage"),
        "revmon_funnel_age_seconds_gsum": ("funnel", "stage"),
        "revmon_funnel_stale": ("funnel", "stage"),
        "revmon_funnel_entries": ("funnel", "stage", "window"),
        "revmon_funnel_exits": ("funnel", "stage", "outcome", "window"),
        "revmon_funnel_dwell_seconds_bucket": ("funnel", "stage", "window", "le"),
        "revmon_funnel_dwell_seconds_gcount": ("funnel", "stage", "window"),
        "revmon_funnel_dwell_seconds_gsum": ("funnel", "stage", "window"),
    }
    assert samples(_settings(), {}, NOW) == series


@pytest.mark.parametrize(
    ("events", "effects", "flows", "open_"),
    [
        pytest.param(
            [lead("L1", T)],
            [Effect.CREATED],
            {"revmon_funnel_entries{lead,name,7d}": 1},
            {"revmon_funnel_open{lead,name}": 1},
            id="creation-enters-the-first-stage",
        ),
        pytest.param(
            [lead("L1", T, "mql")],
            [Effect.CREATED],
            {"revmon_funnel_entries{lead,mql,7d}": 1},
            {"revmon_funnel_open{lead,mql}": 1},
            id="creation-enters-the-given-stage",
        ),
        pytest.param(
            [lead_to("L1", T, "sql")],
            [Effect.ENTERED],
            {"revmon_funnel_entries{lead,sql,7d}": 1},
            {"revmon_funnel_open{lead,sql}": 1},
            id="stage-change-of-an-unknown-lead-enters-it",
        ),
        pytest.param(
            [lead("L1", T), lead_to("L1", T + DAY, "mql")],
            [Effect.CREATED, Effect.MOVED],
            {
                "revmon_funnel_entries{lead,name,7d}": 1,
                "revmon_funnel_entries{lead,mql,7d}": 1,
                "revmon_funnel_exits{lead,name,advanced,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,name,7d}": DAY,
            },
            {"revmon_funnel_open{lead,mql}": 1},
            id="advance",
        ),
        pytest.param(
            [lead("L1", T), lead_to("L1", T + 2 * DAY, "sql")],
            [Effect.CREATED, Effect.MOVED],
            {
                "revmon_funnel_entries{lead,name,7d}": 1,
                "revmon_funnel_entries{lead,sql,7d}": 1,
                "revmon_funnel_exits{lead,name,advanced,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,name,7d}": 2 * DAY,
            },
            {"revmon_funnel_open{lead,sql}": 1},
            id="skipped-stage-has-no-entry-and-no-exit",
        ),
        pytest.param(
            [lead_to("L1", T, "sql"), lead_to("L1", T + DAY, "mql")],
            [Effect.ENTERED, Effect.MOVED],
            {
                "revmon_funnel_entries{lead,sql,7d}": 1,
                "revmon_funnel_entries{lead,mql,7d}": 1,
                "revmon_funnel_exits{lead,sql,regressed,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,sql,7d}": DAY,
            },
            {"revmon_funnel_open{lead,mql}": 1},
            id="regression",
        ),
        pytest.param(
            [lead("L1", T, "mql"), lead_to("L1", T + 3 * DAY, "disqualified")],
            [Effect.CREATED, Effect.MOVED],
            {
                "revmon_funnel_entries{lead,mql,7d}": 1,
                "revmon_funnel_entries{lead,disqualified,7d}": 1,
                "revmon_funnel_exits{lead,mql,dropped,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,mql,7d}": 3 * DAY,
            },
            {},
            id="dropped-closes-and-enters-the-dropped-stage",
        ),
        pytest.param(
            [lead_to("L1", T, "sql"), lead_to("L1", T + DAY, "opportunity")],
            [Effect.ENTERED, Effect.MOVED],
            {
                "revmon_funnel_entries{lead,sql,7d}": 1,
                "revmon_funnel_entries{lead,opportunity,7d}": 1,
                "revmon_funnel_exits{lead,sql,advanced,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,sql,7d}": DAY,
            },
            {},
            id="converted-is-an-advance-and-an-entry",
        ),
        pytest.param(
            [
                lead("L1", T),
                lead_to("L1", T + DAY, "disqualified"),
                lead_to("L1", T + 2 * DAY, "mql"),
            ],
            [Effect.CREATED, Effect.MOVED, Effect.IGNORED],
            {
                "revmon_funnel_entries{lead,name,7d}": 1,
                "revmon_funnel_entries{lead,disqualified,7d}": 1,
                "revmon_funnel_exits{lead,name,dropped,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,name,7d}": DAY,
            },
            {},
            id="closed-lead-stays-closed",
        ),
        pytest.param(
            [
                opp("O1", T),
                opp_to("O1", T + DAY, "lost"),
                opp_to("O1", T + 2 * DAY, "proposal"),
            ],
            [Effect.CREATED, Effect.MOVED, Effect.REOPENED],
            {
                "revmon_funnel_entries{opportunity,qualification,7d}": 1,
                "revmon_funnel_entries{opportunity,lost,7d}": 1,
                "revmon_funnel_entries{opportunity,proposal,7d}": 1,
                "revmon_funnel_exits{opportunity,qualification,dropped,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{opportunity,qualification,7d}": DAY,
            },
            {"revmon_funnel_open{opportunity,proposal}": 1},
            id="reopened-opportunity-is-an-entry-not-a-creation",
        ),
        pytest.param(
            [opp("O1", T, "negotiation"), opp_to("O1", T + DAY, "won")],
            [Effect.CREATED, Effect.MOVED],
            {
                "revmon_funnel_entries{opportunity,negotiation,7d}": 1,
                "revmon_funnel_entries{opportunity,won,7d}": 1,
                "revmon_funnel_exits{opportunity,negotiation,advanced,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{opportunity,negotiation,7d}": DAY,
            },
            {},
            id="won-closes-the-opportunity",
        ),
        pytest.param(
            [lead("L1", T + DAY), lead_to("L1", T, "mql")],
            [Effect.CREATED, Effect.LATE],
            {"revmon_funnel_entries{lead,name,7d}": 1},
            {"revmon_funnel_open{lead,name}": 1},
            id="late-move-changes-nothing",
        ),
        pytest.param(
            [lead("L1", T), lead_to("L1", T + 2 * DAY, "disqualified"), lead_to("L1", T, "sql")],
            [Effect.CREATED, Effect.MOVED, Effect.LATE],
            {
                "revmon_funnel_entries{lead,name,7d}": 1,
                "revmon_funnel_entries{lead,disqualified,7d}": 1,
                "revmon_funnel_exits{lead,name,dropped,7d}": 1,
                "revmon_funnel_dwell_seconds_gsum{lead,name,7d}": 2 * DAY,
            },
            {},
            id="late-move-of-a-closed-lead-is-late",
        ),
        pytest.param(
            [lead("L1", T), lead_to("L1", T + DAY, "name")],
            [Effect.CREATED, Effect.IGNORED],
            {"revmon_funnel_entries{lead,name,7d}": 1},
            {"revmon_funnel_open{lead,name}": 1},
            id="move-to-the-same-stage-changes-nothing",
        ),
        pytest.param(
            [lead("L1", T), lead("L1", T + DAY, "mql")],
            [Effect.CREATED, Effect.IGNORED],
            {"revmon_funnel_entries{lead,name,7d}": 1},
            {"revmon_funnel_open{lead,name}": 1},
            id="repeat-creation-changes-nothing",
        ),
        pytest.param(
            [lead("X", T), opp("X", T)],
            [Effect.CREATED, Effect.CREATED],
            {
                "revmon_funnel_entries{lead,name,7d}": 1,
                "revmon_funnel_entries{opportunity,qualification,7d}": 1,
            },
            {
                "revmon_funnel_open{lead,name}": 1,
                "revmon_funnel_open{opportunity,qualification}": 1,
            },
            id="lead-and-opportunity-ids-are-separate",
        ),
        pytest.param([spend(T)], [None], {}, {}, id="other-event-types-are-not-funnel-moves"),
    ],
)
def test_moves_are_counted(
    events: list[Event],
    effects: list[Effect | None],
    flows: dict[str, float],
    open_: dict[str, float],
) -> None:
    """Entries, exits by outcome, time in stage and open counts follow SPEC §1–§3.2."""
    book = FunnelBook.from_settings(_settings())

    moves = [book.apply(event) for event in events]
    series = exported(book)

    assert [None if m is None else m.effect for m in moves] == effects
    assert nonzero(series, _FLOWS, ",7d}") == flows
    assert nonzero(series, ["revmon_funnel_open"]) == open_


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(NOW, {"7d": 1, "30d": 1, "90d": 1}, id="at-now-is-inside"),
        pytest.param(NOW - 7 * DAY, {"7d": 0, "30d": 1, "90d": 1}, id="on-the-7d-start-is-out"),
        pytest.param(NOW - 7 * DAY + 1, {"7d": 1, "30d": 1, "90d": 1}, id="just-inside-7d"),
        pytest.param(NOW - 30 * DAY, {"7d": 0, "30d": 0, "90d": 1}, id="on-the-30d-start-is-out"),
        pytest.param(NOW - 90 * DAY, {"7d": 0, "30d": 0, "90d": 0}, id="on-the-90d-start-is-out"),
        pytest.param(NOW + 1, {"7d": 0, "30d": 0, "90d": 0}, id="after-now-is-out"),
    ],
)
def test_flows_use_half_open_windows(at: float, expected: dict[str, float]) -> None:
    """An entry, an exit and its time in stage count in (now - W, now], dated by the move."""
    book = book_with([lead("L1", at - 3 * DAY), lead_to("L1", at, "mql")])
    series = exported(book)

    for window, count in expected.items():
        assert series[f"revmon_funnel_entries{{lead,mql,{window}}}"] == count
        assert series[f"revmon_funnel_exits{{lead,name,advanced,{window}}}"] == count
        tis = series[f"revmon_funnel_dwell_seconds_gsum{{lead,name,{window}}}"]
        assert tis == count * 3 * DAY


@pytest.mark.parametrize(
    ("funnel", "stage", "ages", "buckets", "gsum", "stale"),
    [
        pytest.param(
            "lead",
            "name",  # SLA 30d
            [0, DAY, DAY + 1, 10 * DAY, 30 * DAY, 31 * DAY, 400 * DAY],
            [2, 3, 3, 4, 5, 6, 6, 6, 6, 7],
            40_867_201,
            2,
            id="age-equal-to-le-or-sla-counts-as-younger",
        ),
        pytest.param(
            "lead",
            "mql",  # SLA 7d
            [7 * DAY, 7 * DAY + 1],
            [0, 0, 1, 2, 2, 2, 2, 2, 2, 2],
            1_209_601,
            1,
            id="one-second-past-the-sla-is-stale",
        ),
        pytest.param(
            "opportunity",
            "negotiation",  # SLA 21d
            [365 * DAY, 365 * DAY + 1],
            [0, 0, 0, 0, 0, 0, 0, 0, 1, 2],
            63_072_001,
            2,
            id="older-than-a-year-is-only-in-inf",
        ),
    ],
)
def test_age_histogram_and_stale(
    funnel: str, stage: str, ages: list[float], buckets: list[int], gsum: float, stale: int
) -> None:
    """The age gauge histogram is cumulative (age <= le) and stale means age > SLA."""
    make = lead if funnel == "lead" else opp
    book = book_with(make(f"E{i}", NOW - age, stage) for i, age in enumerate(ages))
    series = exported(book)
    key = f"{funnel},{stage}"

    les = [le_label(bound) for bound in AGE_BUCKETS]
    assert [series[f"revmon_funnel_age_seconds_bucket{{{key},{le}}}"] for le in les] == buckets
    assert series[f"revmon_funnel_age_seconds_gcount{{{key}}}"] == len(ages)
    assert series[f"revmon_funnel_open{{{key}}}"] == len(ages)
    assert series[f"revmon_funnel_age_seconds_gsum{{{key}}}"] == gsum
    assert series[f"revmon_funnel_stale{{{key}}}"] == stale
    assert series[f"revmon_funnel_stale_ratio{{{key}}}"] == stale / len(ages)
    assert [k for k in series if k.startswith("revmon_funnel_stale_ratio")] == [
        f"revmon_funnel_stale_ratio{{{key}}}"
    ]


def test_a_move_takes_the_entity_out_of_the_old_stage_inventory() -> None:
    """After a move the entity's age counts in its new stage only, from the new entry."""
    book = book_with([lead("L1", NOW - 40 * DAY), lead_to("L1", NOW - 2 * DAY, "mql")])
    series = exported(book)

    assert series["revmon_funnel_open{lead,name}"] == 0
    assert series["revmon_funnel_age_seconds_gsum{lead,name}"] == 0
    assert series["revmon_funnel_stale{lead,name}"] == 0
    assert series["revmon_funnel_age_seconds_gsum{lead,mql}"] == 2 * DAY
    assert series["revmon_funnel_age_seconds_bucket{lead,mql,259200.0}"] == 1


def test_stage_without_sla_is_never_stale() -> None:
    """A stage with no configured SLA exports stale 0 and a stale ratio of 0."""
    book = FunnelBook(
        funnel_specs(_settings()), sla={}, windows=[Window("7d", 7 * DAY)], retention=7 * DAY
    )
    book.apply(lead("L1", NOW - 300 * DAY))
    partials = book.partials(NOW)

    assert partials["revmon_funnel_stale|lead|name"] == 0
    assert partials["revmon_funnel_open|lead|name"] == 1
    assert book.windows.retention == 7 * DAY


@pytest.mark.parametrize(
    ("events", "ratios"),
    [
        pytest.param([], {}, id="nothing-no-ratio"),
        pytest.param(
            [lead_to("L1", T, "sql"), lead_to("L1", T + DAY, "mql")],
            {"revmon_funnel_stale_ratio{lead,mql}": 0.0},
            id="regressed-only-has-no-conversion-ratio",
        ),
        pytest.param(
            [lead("L1", T), lead_to("L1", T + DAY, "disqualified")],
            {"revmon_funnel_conversion_ratio{lead,name,7d}": 0.0},
            id="dropped-only-converts-at-zero",
        ),
        pytest.param(
            [
                lead("L1", T),
                lead_to("L1", T + DAY, "mql"),
                lead("L2", T),
                lead_to("L2", T + DAY, "disqualified"),
            ],
            {
                "revmon_funnel_conversion_ratio{lead,name,7d}": 0.5,
                "revmon_funnel_stale_ratio{lead,mql}": 0.0,
            },
            id="one-advanced-one-dropped",
        ),
    ],
)
def test_ratios_only_where_the_denominator_is_positive(
    events: list[Event], ratios: dict[str, float]
) -> None:
    """Conversion (advanced / (advanced + dropped)) and stale ratios exist only when defined."""
    series = exported(book_with(events))

    got = {k: v for k, v in series.items() if "_ratio{" in k and not k.endswith(("30d}", "90d}"))}
    assert got == ratios


def test_le_labels_are_written_as_prometheus_writes_them() -> None:
    """`le` labels match prometheus_client's own rendering of the bucket bounds."""
    assert [le_label(b) for b in AGE_BUCKETS] == [floatToGoString(b) for b in AGE_BUCKETS]
    assert le_label(DAY) == "86400.0"
    assert le_label(math.inf) == "+Inf"


_STAGES = {
    "lead": ("name", "mql", "sql", "opportunity", "disqualified"),
    "opportunity": ("qualification", "discovery", "proposal", "negotiation", "won", "lost"),
}
_OPS = st.tuples(
    st.sampled_from(["lead", "opportunity"]),
    st.booleans(),  # created, else stage_changed
    st.integers(0, 5),  # entity
    st.integers(0, 6),  # stage index (6: none, for a creation)
    st.integers(0, 4 * 120),  # quarter days before NOW: lands on the window edges
)


def _stream(ops: list[tuple[str, bool, int, int, int]]) -> list[tuple[int, Event]]:
    out = []
    for funnel, created, entity, stage_index, quarters in ops:
        stages = _STAGES[funnel]
        stage = stages[stage_index] if stage_index < len(stages) else None
        at = NOW - quarters * DAY / 4
        if created:
            event = (lead if funnel == "lead" else opp)(f"E{entity}", at, stage)
        else:
            mover = lead_to if funnel == "lead" else opp_to
            event = mover(f"E{entity}", at, stage or stages[0])
        out.append((entity, event))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(_OPS, max_size=40))
def test_partials_add_up_across_partitions(ops: list[tuple[str, bool, int, int, int]]) -> None:
    """Split by entity over two books, the summed partials export what one book does."""
    one, even, odd = (FunnelBook.from_settings(_settings()) for _ in range(3))
    for entity, event in _stream(ops):
        one.apply(event)
        (even if entity % 2 == 0 else odd).apply(event)

    summed = added(even.partials(NOW), odd.partials(NOW))
    assert summed.keys() == one.partials(NOW).keys()
    assert samples(_settings(), summed, NOW) == samples(_settings(), one.partials(NOW), NOW)


def _journal(changes: Changes) -> Changes:
    """A drained change set as the state journal stores and reads it (JSON)."""
    points = [list(p) for p in changes.points]  # as PartitionState.flush writes them
    raw = orjson.loads(orjson.dumps({"records": changes.records, "points": points}))
    return Changes(raw["records"], [Point(*p) for p in raw["points"]])


@settings(max_examples=30, deadline=None)
@given(st.lists(_OPS, max_size=40), st.integers(1, 8))
def test_drained_changes_rebuild_an_identical_book(
    ops: list[tuple[str, bool, int, int, int]], batch: int
) -> None:
    """Journaled changes, loaded into a fresh book either way, give identical partials."""
    book = FunnelBook.from_settings(_settings())
    journal = []
    for i, (_, event) in enumerate(_stream(ops)):
        book.apply(event)
        if i % batch == 0:
            journal.append(_journal(book.drain()))
    journal.append(_journal(book.drain()))

    loaded, direct = FunnelBook.from_settings(_settings()), FunnelBook.from_settings(_settings())
    ledgers = direct.ledgers()
    for changes in journal:
        loaded.load(changes)
        for funnel, records in changes.records.items():
            ledger = ledgers[f"funnel.{funnel}"]
            assert isinstance(ledger, Records)
            ledger.load(records.items())
        direct.windows.load(changes.points)
    direct.rebuild()
    book.rebuild()

    assert loaded.partials(NOW) == book.partials(NOW)
    assert direct.partials(NOW) == book.partials(NOW)
    assert loaded.drain() == Changes({"lead": {}, "opportunity": {}}, [])


def test_memory_per_open_entity_stays_small() -> None:
    """An open lead (record, index and its entry point) costs well under 1 KB."""
    count = 10_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Events made one at a time inside the trace: what stays is what the book keeps.
        book = book_with(lead(f"{i:08d}-0000-4000-8000-{i:012d}", NOW - i) for i in range(count))
        book.drain()
        per_entity = (tracemalloc.get_traced_memory()[0] - before) / count
    finally:
        tracemalloc.stop()

    assert book.partials(NOW)["revmon_funnel_open|lead|name"] == count
    assert per_entity < 1024

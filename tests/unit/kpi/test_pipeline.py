"""Pipeline, targets and gaps, per partition and summed (revmon/kpi/pipeline.py)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revmon.events import EVENT_ADAPTER
from revmon.kpi import forecast, pipeline
from revmon.kpi.ledger import Sample
from revmon.kpi.pipeline import OpportunityEvent, PipelineBook, opportunity_move
from revmon.settings import Settings, load_settings

NOW = 1_794_700_800.0  # 2026-11-15T00:00:00Z
DAY = 86_400.0
_ids = itertools.count()
Event = dict[str, Any]


@cache
def config(timezone: str = "UTC", targets: str = "[]") -> Settings:
    """Settings with default windows (7d, 30d, 90d) and stages; `targets` as JSON."""
    return load_settings(None, timezone=timezone, targets=json.loads(targets))


def iso(at: float) -> str:
    """RFC 3339 UTC text of unix seconds."""
    return datetime.fromtimestamp(at, UTC).isoformat()


def created(opp: str, at: float, amount: str, kind: str = "new_business", **extra: Any) -> Event:
    """An `opportunity.created` event."""
    return {
        "type": "opportunity.created",
        "event_id": f"e{next(_ids)}",
        "occurred_at": iso(at),
        "opportunity_id": opp,
        "account_id": "acme",
        "amount": amount,
        "kind": kind,
        **extra,
    }


def moved(opp: str, at: float, stage: str, amount: str | None = None) -> Event:
    """An `opportunity.stage_changed` event, with an amount when given."""
    event = {
        "type": "opportunity.stage_changed",
        "event_id": f"e{next(_ids)}",
        "occurred_at": iso(at),
        "opportunity_id": opp,
        "stage": stage,
    }
    return event if amount is None else {**event, "amount": amount}


def revalued(opp: str, at: float, amount: str) -> Event:
    """An `opportunity.amount_changed` event."""
    return {
        "type": "opportunity.amount_changed",
        "event_id": f"e{next(_ids)}",
        "occurred_at": iso(at),
        "opportunity_id": opp,
        "amount": amount,
    }


def feed(book: PipelineBook, events: Iterable[Event]) -> list[bool]:
    """Apply events as the engine does (the funnel's move first); the late flags."""
    lates = []
    for data in events:
        event = EVENT_ADAPTER.validate_python(data)
        assert isinstance(event, OpportunityEvent)
        move = opportunity_move(book.spec, book.position(event.opportunity_id), event)
        lates.append(book.apply(event, move))
    return lates


def exported(samples: Iterable[Sample]) -> dict[str, float]:
    """Samples as `name{label=value,...}` → value."""
    return {f"{s.name}{{{','.join(f'{k}={v}' for k, v in s.labels)}}}": s.value for s in samples}


def run(events: Iterable[Event], cfg: Settings | None = None, now: float = NOW) -> dict[str, float]:
    """The exported series of one book fed `events`, at `now`."""
    cfg = cfg or config()
    book = PipelineBook.from_settings(cfg)
    feed(book, events)
    return exported(pipeline.samples(cfg, book.partials(now), now))


def assert_subset(got: Mapping[str, float], expected: Mapping[str, float | None]) -> None:
    """Each expected series has its value (approximately), or is absent when None."""
    for key, value in expected.items():
        if value is None:
            assert key not in got, key
        else:
            assert got.get(key) == pytest.approx(value), key


RATIOS = (
    "revmon_pipeline_win_ratio",
    "revmon_pipeline_velocity_amount_per_day",
    "revmon_pipeline_creation_pace_ratio",
    "revmon_pipeline_coverage_ratio",
)


def test_empty_book_exports_every_series_at_zero() -> None:
    """Before any event every count and amount series is there at 0, and no ratio is."""
    cfg = config()
    book = PipelineBook.from_settings(cfg)
    samples = pipeline.samples(cfg, book.partials(NOW), NOW)

    names = [s.name for s in samples]
    # open and open amount by kind and stage; per kind and window 6 flows and the cycle
    # histogram (10 buckets, gcount, gsum)
    assert len(samples) == 3 * 4 * 2 + 3 * 3 * (6 + 12)
    assert names.count("revmon_pipeline_open") == 12
    assert names.count("revmon_pipeline_cycle_seconds_gsum") == 9
    assert names.count("revmon_pipeline_cycle_seconds_bucket") == 90
    assert all(s.value == 0.0 for s in samples)
    assert not set(names) & set(RATIOS)
    assert samples == pipeline.samples(cfg, {}, NOW)


def test_series_of_a_family_are_together() -> None:
    """Samples come grouped by metric name, as the exposition format needs."""
    names = [s.name for s in pipeline.samples(config(), {}, NOW)]

    assert names == sorted(names, key=names.index)
    assert len(list(itertools.groupby(names))) == len(set(names))


def test_current_targets_are_exported_from_the_start() -> None:
    """A current-period target shows its amount, nothing won, full gap, coverage 0."""
    cfg = config(targets='[{"period": "2026-Q4", "kind": "all", "amount": 1000}]')

    got = run([], cfg)

    assert_subset(
        got,
        {
            "revmon_target_amount{period=2026-Q4,kind=all}": 1000,
            "revmon_period_won_amount{period=2026-Q4,kind=all}": 0,
            "revmon_pipeline_coverage_ratio{period=2026-Q4,kind=all}": 0,
            "revmon_pipeline_gap_amount{period=2026-Q4,kind=all}": 3000,
        },
    )


NB_QUAL = "kind=new_business,stage=qualification"


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [created("o1", NOW - DAY, "100", kind="expansion")],
            {
                "revmon_pipeline_open{kind=expansion,stage=qualification}": 1,
                "revmon_pipeline_open_amount{kind=expansion,stage=qualification}": 100,
                "revmon_pipeline_created{kind=expansion,window=7d}": 1,
                "revmon_pipeline_created_amount{kind=expansion,window=7d}": 100,
            },
            id="created-enters-the-first-stage",
        ),
        pytest.param(
            [created("o1", NOW - DAY, "100", stage="proposal")],
            {
                "revmon_pipeline_open{kind=new_business,stage=proposal}": 1,
                f"revmon_pipeline_open{{{NB_QUAL}}}": 0,
                "revmon_pipeline_created{kind=new_business,window=7d}": 1,
            },
            id="created-at-a-given-stage",
        ),
        pytest.param(
            [moved("o1", NOW - DAY, "discovery", "250")],
            {
                "revmon_pipeline_open{kind=new_business,stage=discovery}": 1,
                "revmon_pipeline_open_amount{kind=new_business,stage=discovery}": 250,
                "revmon_pipeline_created{kind=new_business,window=90d}": 0,
                "revmon_pipeline_created_amount{kind=new_business,window=90d}": 0,
            },
            id="unknown-opportunity-entry-takes-the-amount-but-is-no-creation",
        ),
        pytest.param(
            [moved("o1", NOW - DAY, "discovery")],
            {
                "revmon_pipeline_open{kind=new_business,stage=discovery}": 1,
                "revmon_pipeline_open_amount{kind=new_business,stage=discovery}": 0,
                "revmon_pipeline_created{kind=new_business,window=90d}": 0,
            },
            id="unknown-opportunity-entry-without-amount-is-worth-0",
        ),
        pytest.param(
            [moved("o1", NOW - 2 * DAY, "discovery"), created("o1", NOW - DAY, "90", "renewal")],
            {
                "revmon_pipeline_open{kind=new_business,stage=discovery}": 1,
                "revmon_pipeline_open{kind=renewal,stage=qualification}": 0,
                "revmon_pipeline_created{kind=renewal,window=90d}": 0,
                "revmon_pipeline_created{kind=new_business,window=90d}": 0,
            },
            id="creation-of-an-existing-opportunity-changes-nothing",
        ),
        pytest.param(
            [created("o1", NOW - 5 * DAY, "100"), moved("o1", NOW - DAY, "won", "150")],
            {
                "revmon_pipeline_won{kind=new_business,window=7d}": 1,
                "revmon_pipeline_won_amount{kind=new_business,window=7d}": 150,
                "revmon_pipeline_created_amount{kind=new_business,window=7d}": 100,
                f"revmon_pipeline_open{{{NB_QUAL}}}": 0,
                f"revmon_pipeline_open_amount{{{NB_QUAL}}}": 0,
            },
            id="amount-on-the-winning-move-applies-first",
        ),
        pytest.param(
            [created("o1", NOW - 5 * DAY, "100"), moved("o1", NOW - DAY, "lost", "80")],
            {
                "revmon_pipeline_lost{kind=new_business,window=7d}": 1,
                "revmon_pipeline_lost_amount{kind=new_business,window=7d}": 80,
                "revmon_pipeline_won{kind=new_business,window=7d}": 0,
                "revmon_pipeline_win_ratio{kind=new_business,window=7d}": 0,
            },
            id="amount-on-the-losing-move-applies-first",
        ),
        pytest.param(
            [created("o1", NOW - 5 * DAY, "100"), moved("o1", NOW - DAY, "qualification", "999")],
            {f"revmon_pipeline_open_amount{{{NB_QUAL}}}": 100},
            id="move-to-the-same-stage-changes-nothing-not-even-the-amount",
        ),
        pytest.param(
            [
                created("o1", NOW - 5 * DAY, "100"),
                moved("o1", NOW - 3 * DAY, "proposal"),
                moved("o1", NOW - 4 * DAY, "won", "999"),
            ],
            {
                "revmon_pipeline_open_amount{kind=new_business,stage=proposal}": 100,
                "revmon_pipeline_won{kind=new_business,window=7d}": 0,
            },
            id="late-move-changes-nothing-not-even-the-amount",
        ),
        pytest.param(
            [moved("o1", NOW - DAY, "won", "70")],
            {
                "revmon_pipeline_won{kind=new_business,window=7d}": 1,
                "revmon_pipeline_won_amount{kind=new_business,window=7d}": 70,
                "revmon_pipeline_cycle_seconds_gsum{kind=new_business,window=7d}": 0,
                "revmon_pipeline_win_ratio{kind=new_business,window=7d}": 1,
                "revmon_pipeline_velocity_amount_per_day{kind=new_business,window=7d}": None,
            },
            id="unknown-opportunity-entering-won-is-a-win-of-cycle-0-without-velocity",
        ),
    ],
)
def test_creation_entry_and_close(events: list[Event], expected: dict[str, float | None]) -> None:
    """Creations, entries of unknown opportunities and closes (SPEC §1 rules)."""
    assert_subset(run(events), expected)


@pytest.mark.parametrize(
    ("events", "late", "won_amount", "open_amount"),
    [
        pytest.param(
            [created("o1", NOW - 5 * DAY, "100"), revalued("o1", NOW - DAY, "300")],
            False,
            0,
            300,
            id="open-opportunity-is-revalued",
        ),
        pytest.param(
            [
                created("o1", NOW - 5 * DAY, "100"),
                moved("o1", NOW - 3 * DAY, "won"),
                revalued("o1", NOW - DAY, "300"),
            ],
            False,
            100,
            0,
            id="closed-opportunity-keeps-its-close-amount",
        ),
        pytest.param(
            [created("o1", NOW - 5 * DAY, "100"), revalued("o1", NOW - 6 * DAY, "300")],
            True,
            0,
            100,
            id="late-revaluation-changes-nothing",
        ),
        pytest.param(
            [
                created("o1", NOW - 5 * DAY, "100"),
                moved("o1", NOW - 3 * DAY, "lost"),
                revalued("o1", NOW - 4 * DAY, "300"),
            ],
            True,
            0,
            0,
            id="late-revaluation-of-a-closed-opportunity-is-late",
        ),
        pytest.param(
            [revalued("o1", NOW - DAY, "300")],
            False,
            0,
            0,
            id="unknown-opportunity-is-not-created-by-a-revaluation",
        ),
    ],
)
def test_amount_changed(
    events: list[Event], late: bool, won_amount: float, open_amount: float
) -> None:
    """`amount_changed` re-values open opportunities only, and is late before the stage entry."""
    cfg = config()
    book = PipelineBook.from_settings(cfg)

    lates = feed(book, events)
    got = exported(pipeline.samples(cfg, book.partials(NOW), NOW))

    assert lates[-1] is late
    assert got["revmon_pipeline_won_amount{kind=new_business,window=7d}"] == won_amount
    assert got[f"revmon_pipeline_open_amount{{{NB_QUAL}}}"] == open_amount
    assert len(book.records) == (0 if events[0]["type"].endswith("amount_changed") else 1)


def flow_history() -> list[Event]:
    """Two wins, two losses and two open deals of new business, at known times."""
    return [
        created("a", NOW - 20 * DAY, "100"),
        moved("a", NOW - 10 * DAY, "won"),  # cycle 10d, in 30d and 90d
        created("b", NOW - 40 * DAY, "300"),
        moved("b", NOW - 5 * DAY, "won"),  # cycle 35d, in every window
        created("c", NOW - 25 * DAY, "40"),
        moved("c", NOW - 15 * DAY, "lost"),  # in 30d and 90d
        created("d", NOW - 70 * DAY, "60"),
        moved("d", NOW - 60 * DAY, "lost"),  # in 90d
        created("e", NOW - DAY, "50"),
        created("f", NOW - DAY, "70", stage="discovery"),
    ]


def test_win_ratio_cycle_and_velocity_by_hand() -> None:
    """Win ratio, cycle sum and velocity per window, as computed by hand."""
    got = run(flow_history())

    def nb(name: str, window: str) -> str:
        return f"revmon_pipeline_{name}{{kind=new_business,window={window}}}"

    assert_subset(
        got,
        {
            nb("won", "7d"): 1,
            nb("won_amount", "7d"): 300,
            nb("lost", "7d"): 0,
            nb("win_ratio", "7d"): 1,
            nb("cycle_seconds_gsum", "7d"): 35 * DAY,
            # 2 open × 1 × 300 per deal ÷ 35 days
            nb("velocity_amount_per_day", "7d"): 2 * 1 * 300 / 35,
            nb("won", "30d"): 2,
            nb("won_amount", "30d"): 400,
            nb("lost", "30d"): 1,
            nb("lost_amount", "30d"): 40,
            nb("win_ratio", "30d"): 2 / 3,
            nb("cycle_seconds_gsum", "30d"): 45 * DAY,
            # 2 open × 2/3 × 200 per deal ÷ 22.5 days
            nb("velocity_amount_per_day", "30d"): 2 * (2 / 3) * 200 / 22.5,
            nb("lost", "90d"): 2,
            nb("win_ratio", "90d"): 0.5,
            nb("velocity_amount_per_day", "90d"): 2 * 0.5 * 200 / 22.5,
            nb("created", "7d"): 2,
            nb("created_amount", "7d"): 120,
            nb("created", "30d"): 4,
            nb("created_amount", "30d"): 260,
            nb("created", "90d"): 6,
            nb("created_amount", "90d"): 620,
            "revmon_pipeline_creation_pace_ratio{kind=new_business}": 260 / (620 / 3),
            "revmon_pipeline_win_ratio{kind=expansion,window=90d}": None,
            "revmon_pipeline_creation_pace_ratio{kind=expansion}": None,
            f"revmon_pipeline_open{{{NB_QUAL}}}": 1,
            "revmon_pipeline_open{kind=new_business,stage=discovery}": 1,
        },
    )


@pytest.mark.parametrize(
    ("ages_in_days", "pace"),
    [
        pytest.param([], None, id="no-creations-no-ratio"),
        pytest.param([45], 0.0, id="only-90d-history-is-0"),
        pytest.param([90], None, id="exactly-90d-ago-is-outside"),
        pytest.param([30], 0.0, id="exactly-30d-ago-is-only-in-90d"),
        pytest.param([29, 60, 80], 1.0, id="steady-creation-is-1"),
        pytest.param([1], 3.0, id="all-in-the-last-30d-is-3"),
    ],
)
def test_creation_pace_ratio(ages_in_days: list[int], pace: float | None) -> None:
    """Pace = created amount 30d ÷ (90d ÷ 3), whatever windows are configured."""
    cfg = load_settings(None, windows=["7d"])
    events = [created(f"o{i}", NOW - age * DAY, "100") for i, age in enumerate(ages_in_days)]

    got = run(events, cfg)

    assert_subset(got, {"revmon_pipeline_creation_pace_ratio{kind=new_business}": pace})
    assert "revmon_pipeline_created{kind=new_business,window=30d}" not in got


NY_TARGETS = json.dumps(
    [
        {"period": "2026-Q4", "kind": "all", "amount": 1000},
        {"period": "2026-Q4", "kind": "new_business", "amount": 600},
        {"period": "2026-11", "kind": "expansion", "amount": 300},
        {"period": "2026-Q3", "kind": "renewal", "amount": 999},
    ]
)
Q4_NY = 1_790_827_200.0  # 2026-10-01T04:00:00Z, local midnight in New York
NOV_NY = 1_793_505_600.0  # 2026-11-01T04:00:00Z, local midnight in New York


def target_history() -> list[Event]:
    """Wins on both sides of New York's period edges and open deals with close dates."""
    return [
        created("w1", Q4_NY - 10 * DAY, "0"),
        moved("w1", Q4_NY, "won", "200"),  # first instant of Q4 in New York
        created("w2", Q4_NY - 10 * DAY, "50"),
        moved("w2", Q4_NY - 1, "won"),  # still 30 September in New York
        created("w3", NOV_NY - 10 * DAY, "100", "expansion"),
        moved("w3", NOV_NY, "won"),  # first instant of November in New York
        created("o1", NOW - DAY, "400", expected_close_date="2026-12-31"),
        created("o2", NOW - DAY, "1000", expected_close_date="2027-01-01"),
        created("o3", NOW - DAY, "100", "renewal"),
        created("o4", NOW - DAY, "70", "expansion", expected_close_date="2026-11-30"),
        created("o5", NOW - DAY, "30", "expansion", expected_close_date="2026-12-01"),
    ]


def test_targets_coverage_and_gaps_in_new_york() -> None:
    """Period won, coverage and gap per current target, with local period edges and close dates."""
    got = run(target_history(), config("America/New_York", NY_TARGETS), NOW + 12 * 3600)

    def series(name: str, period: str, kind: str) -> str:
        return f"revmon_{name}{{period={period},kind={kind}}}"

    assert_subset(
        got,
        {
            series("target_amount", "2026-Q4", "all"): 1000,
            series("target_amount", "2026-Q4", "new_business"): 600,
            series("target_amount", "2026-11", "expansion"): 300,
            series("target_amount", "2026-Q3", "renewal"): None,
            series("period_won_amount", "2026-Q3", "renewal"): None,
            series("period_won_amount", "2026-Q4", "all"): 300,
            series("period_won_amount", "2026-Q4", "new_business"): 200,
            series("period_won_amount", "2026-11", "expansion"): 100,
            # open: o1 400 + o3 100 (no date) + o4 70 + o5 30; o2 closes after Q4
            series("pipeline_coverage_ratio", "2026-Q4", "all"): 600 / 700,
            series("pipeline_coverage_ratio", "2026-Q4", "new_business"): 400 / 400,
            series("pipeline_coverage_ratio", "2026-11", "expansion"): 70 / 200,
            series("pipeline_gap_amount", "2026-Q4", "all"): 3 * 700 - 600,
            series("pipeline_gap_amount", "2026-Q4", "new_business"): 3 * 400 - 400,
            series("pipeline_gap_amount", "2026-11", "expansion"): 3 * 200 - 70,
        },
    )


@pytest.mark.parametrize(
    ("target", "coverage", "gap"),
    [
        pytest.param(300, 400 / 100, 0, id="gap-floors-at-0-while-coverage-is-ample"),
        pytest.param(200, None, 0, id="target-met-no-coverage"),
        pytest.param(150, None, 0, id="target-exceeded-no-coverage-gap-0"),
        pytest.param(1000, 400 / 800, 3 * 800 - 400, id="gap"),
    ],
)
def test_coverage_and_gap_edges(target: int, coverage: float | None, gap: float) -> None:
    """Coverage only while something remains to win; the gap never goes below 0."""
    targets = json.dumps([{"period": "2026-11", "kind": "new_business", "amount": target}])
    events = [
        created("w", NOW - 20 * DAY, "200"),
        moved("w", NOW - 10 * DAY, "won"),
        created("o", NOW - DAY, "400"),
    ]

    got = run(events, config("UTC", targets))

    assert_subset(
        got,
        {
            "revmon_period_won_amount{period=2026-11,kind=new_business}": 200,
            "revmon_pipeline_coverage_ratio{period=2026-11,kind=new_business}": coverage,
            "revmon_pipeline_gap_amount{period=2026-11,kind=new_business}": gap,
        },
    )


def reopened(last: str | None) -> list[Event]:
    """Lost, re-opened with a new amount, then (optionally) closed again at `last`."""
    events = [
        created("o", NOW - 20 * DAY, "100"),
        moved("o", NOW - 10 * DAY, "lost"),
        moved("o", NOW - 5 * DAY, "proposal", "150"),
    ]
    return events if last is None else [*events, moved("o", NOW - 2 * DAY, last)]


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            reopened(None),
            {"lost": 0, "lost_amount": 0, "won": 0, "open": 1, "open_amount": 150},
            id="reopened-is-open-and-no-longer-lost",
        ),
        pytest.param(
            reopened("won"),
            {"lost": 0, "won": 1, "won_amount": 150, "cycle": 18 * DAY, "ratio": 1, "open": 0},
            id="reopened-then-won-is-one-win",
        ),
        pytest.param(
            reopened("lost"),
            {"lost": 1, "lost_amount": 150, "won": 0, "ratio": 0, "open": 0},
            id="reopened-then-lost-is-one-loss-at-the-latest-close",
        ),
    ],
)
def test_reopened_opportunity_counts_its_latest_close(
    events: list[Event], expected: dict[str, float]
) -> None:
    """Re-opening retracts the earlier close, so only the latest close is counted."""
    names = {
        "lost": "revmon_pipeline_lost",
        "lost_amount": "revmon_pipeline_lost_amount",
        "won": "revmon_pipeline_won",
        "won_amount": "revmon_pipeline_won_amount",
        "cycle": "revmon_pipeline_cycle_seconds_gsum",
        "ratio": "revmon_pipeline_win_ratio",
    }
    got = run(events)

    for key, value in expected.items():
        if key in ("open", "open_amount"):
            total = sum(v for k, v in got.items() if k.startswith(f"revmon_pipeline_{key}{{"))
            assert total == value, key
        else:
            assert got[f"{names[key]}{{kind=new_business,window=30d}}"] == value, key
    assert got["revmon_pipeline_created{kind=new_business,window=30d}"] == 1


def test_reopened_win_leaves_the_period_won_amount() -> None:
    """A won deal re-opened is no longer won in its period."""
    targets = json.dumps([{"period": "2026-11", "kind": "all", "amount": 500}])
    events = [
        created("o", NOW - 20 * DAY, "100"),
        moved("o", NOW - 10 * DAY, "won"),
        moved("o", NOW - 5 * DAY, "negotiation"),
    ]

    got = run(events, config("UTC", targets))

    assert got["revmon_period_won_amount{period=2026-11,kind=all}"] == 0
    assert got["revmon_pipeline_coverage_ratio{period=2026-11,kind=all}"] == 100 / 500


def test_journal_round_trip_restores_the_book() -> None:
    """drain() in batches, load() into a new book and rebuild(): same partials, same future."""
    cfg = config("America/New_York", NY_TARGETS)
    history = [*flow_history(), *target_history(), *reopened("won")]
    book = PipelineBook.from_settings(cfg)
    journal: list[tuple[dict[str, Any], list[Any]]] = []
    for start in range(0, len(history), 4):
        feed(book, history[start : start + 4])
        batch = (book.records.drain(), book.windows.drain())
        journal.append(json.loads(json.dumps(batch)))  # what a JSON journal keeps
    restored = PipelineBook.from_settings(cfg)
    for records, points in journal:
        restored.records.load(records.items())
        restored.windows.load(points)
    restored.rebuild()

    assert restored.partials(NOW) == book.partials(NOW)
    more = [moved("e", NOW, "won", "55"), revalued("o1", NOW, "10"), moved("o3", NOW, "lost")]
    feed(book, more)
    feed(restored, more)
    assert restored.partials(NOW) == book.partials(NOW)


STAGES = ("qualification", "discovery", "proposal", "negotiation", "won", "lost")
_action = st.tuples(
    st.integers(0, 5),  # opportunity
    st.sampled_from(["created", "stage_changed", "stage_changed", "amount_changed"]),
    st.sampled_from(STAGES),
    st.sampled_from(["new_business", "expansion", "renewal"]),
    st.none() | st.integers(0, 100_000),  # amount in cents, None = no amount
    st.integers(0, 100 * 24) | st.integers(0, 400 * 24),  # hours before NOW
    st.sampled_from([None, "2026-11-20", "2026-12-31", "2027-02-01"]),
)


def to_event(action: tuple[Any, ...]) -> Event:
    """One generated opportunity event."""
    opp, kind_of_event, stage, kind, cents, hour, close_date = action
    at = NOW - hour * 3600.0
    amount = None if cents is None else f"{cents // 100}.{cents % 100:02d}"
    if kind_of_event == "created":
        extra = {} if close_date is None else {"expected_close_date": close_date}
        if stage in STAGES[:4]:
            extra["stage"] = stage
        return created(f"{opp}", at, amount or "0", kind, **extra)
    if kind_of_event == "stage_changed":
        return moved(f"{opp}", at, stage, amount)
    return revalued(f"{opp}", at, amount or "0")


def both_samples(cfg: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The §3.4 and §3.8 series of summed partials."""
    return [*pipeline.samples(cfg, partials, now), *forecast.samples(cfg, partials, now)]


@settings(max_examples=150, deadline=None)
@given(actions=st.lists(_action, max_size=30), in_order=st.booleans())
def test_partitions_sum_to_one_book(actions: list[tuple[Any, ...]], in_order: bool) -> None:
    """Events split by opportunity over two books: summed partials give one book's series."""
    cfg = config("America/New_York", NY_TARGETS)
    events = [to_event(a) for a in actions]
    if in_order:
        events.sort(key=lambda e: e["occurred_at"])
    whole = PipelineBook.from_settings(cfg)
    parts = [PipelineBook.from_settings(cfg), PipelineBook.from_settings(cfg)]
    feed(whole, events)
    for event in events:
        feed(parts[int(event["opportunity_id"]) % 2], [event])

    for now in (NOW, NOW + 40 * DAY):
        summed: dict[str, float] = {}
        for part in parts:
            for key, value in part.partials(now).items():
                summed[key] = summed.get(key, 0.0) + value
        one = [*both_samples(cfg, whole.partials(now), now)]
        two = [*both_samples(cfg, summed, now)]
        assert [(s.name, s.labels) for s in two] == [(s.name, s.labels) for s in one]
        for a, b in zip(one, two, strict=True):
            assert b.value == pytest.approx(a.value, rel=1e-9, abs=1e-6), a

"""Expiry in event time and snapshot loads across the books of a partition (SPEC §1, §2, v2)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revmon.engine import PartitionBooks
from revmon.events import EVENT_ADAPTER, Event
from revmon.kpi import forecast, funnel, marketing, pipeline
from revmon.kpi.expiry import Deadlines
from revmon.kpi.inventory import OpenStage
from revmon.kpi.ledger import Records, Windows, add_up
from revmon.settings import Settings, load_settings

DAY = 86_400.0
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
LEAD_EXPIRE = 10 * DAY  # lead `mql`
OPP_EXPIRE = 30 * DAY  # opportunity `proposal`
_ids = itertools.count()
Row = dict[str, Any]


@cache
def _settings() -> Settings:
    return load_settings(
        None,
        funnels={
            "lead": {"expire": {"mql": "10d"}},
            "opportunity": {"expire": {"proposal": "30d"}},
        },
    )


def _event(type_: str, at: float, /, **fields: Any) -> Event:
    data = {
        "type": type_,
        "event_id": f"x{next(_ids)}",
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
        **fields,
    }
    return EVENT_ADAPTER.validate_python({k: v for k, v in data.items() if v is not None})


def lead(at: float, stage: str | None = "mql", **fields: Any) -> Event:
    return _event("lead.created", at, lead_id="L", stage=stage, **fields)


def lead_to(at: float, stage: str) -> Event:
    return _event("lead.stage_changed", at, lead_id="L", stage=stage)


def snapshot_lead(at: float, since: float, stage: str = "mql") -> Event:
    entered = datetime.fromtimestamp(since, UTC).isoformat()
    return lead(at, stage, snapshot=True, entered_at=entered, channel="email")


def opp(at: float, stage: str = "proposal", amount: str = "100", **fields: Any) -> Event:
    fields = {"amount": amount, "kind": "new_business", "stage": stage, **fields}
    return _event("opportunity.created", at, opportunity_id="O", **fields)


def opp_to(at: float, stage: str, amount: str | None = None) -> Event:
    return _event("opportunity.stage_changed", at, opportunity_id="O", stage=stage, amount=amount)


def revalue(at: float, amount: str) -> Event:
    return _event("opportunity.amount_changed", at, opportunity_id="O", amount=amount)


def spend(at: float, channel: str, amount: str) -> Event:
    return _event("campaign.spend", at, campaign_id="C", channel=channel, amount=amount)


def books_with(events: Iterable[Event]) -> tuple[PartitionBooks, list[bool]]:
    books = PartitionBooks.from_settings(_settings())
    lates = [books.apply(event) for event in events]
    return books, lates


def exported(partials: dict[str, float], now: float = NOW) -> dict[str, float]:
    """Series of the funnel, marketing, pipeline and forecast books by `name{values}`."""
    out = {}
    for module in (funnel, marketing, pipeline, forecast):
        for s in module.samples(_settings(), partials, now):
            out[f"{s.name}{{{','.join(v for _, v in s.labels)}}}"] = s.value
    return out


def run(events: Iterable[Event], now: float = NOW) -> dict[str, float]:
    books, _ = books_with(events)
    return exported(books.partials(now), now)


def _check(got: dict[str, float], expected: Row) -> None:
    for key, value in expected.items():
        if value is None:
            assert key not in got, key
        else:
            assert got[key] == pytest.approx(value), key


T = NOW - 20 * DAY  # a lead enters `mql` here: it expires at NOW - 10d


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [
        pytest.param(
            [lead(T)],
            NOW,
            {
                "revmon_funnel_open{lead,mql}": 0,
                "revmon_funnel_exits{lead,mql,dropped,30d}": 1,
                "revmon_funnel_exits{lead,mql,dropped,7d}": 0,
                "revmon_funnel_entries{lead,disqualified,30d}": 1,
                "revmon_funnel_entries{lead,mql,30d}": 1,
                "revmon_funnel_conversion_ratio{lead,mql,30d}": 0.0,
                "revmon_funnel_dwell_seconds_gsum{lead,mql,30d}": LEAD_EXPIRE,
                "revmon_funnel_dwell_seconds_gcount{lead,mql,30d}": 1,
                "revmon_funnel_dwell_seconds_bucket{lead,mql,30d,604800.0}": 0,
                "revmon_funnel_dwell_seconds_bucket{lead,mql,30d,1.2096e+06}": 1,
            },
            id="untouched-lead-expires-at-its-deadline",
        ),
        pytest.param(
            [lead(T)],
            T + LEAD_EXPIRE - 1,
            {
                "revmon_funnel_open{lead,mql}": 1,
                "revmon_funnel_exits{lead,mql,dropped,30d}": 0,
                "revmon_funnel_entries{lead,disqualified,30d}": 0,
            },
            id="a-second-before-the-deadline-it-is-open",
        ),
        pytest.param(
            [lead(T)],
            T + LEAD_EXPIRE,
            {
                "revmon_funnel_open{lead,mql}": 0,
                "revmon_funnel_exits{lead,mql,dropped,7d}": 1,
                "revmon_funnel_age_seconds_gsum{lead,mql}": 0,
            },
            id="evaluated-exactly-at-the-deadline-it-has-expired",
        ),
        pytest.param(
            [lead(T), lead_to(T + LEAD_EXPIRE, "sql")],
            NOW,
            {
                "revmon_funnel_open{lead,sql}": 1,
                "revmon_funnel_exits{lead,mql,advanced,30d}": 1,
                "revmon_funnel_exits{lead,mql,dropped,30d}": 0,
                "revmon_funnel_entries{lead,disqualified,30d}": 0,
                "revmon_funnel_dwell_seconds_gsum{lead,mql,30d}": LEAD_EXPIRE,
            },
            id="a-move-exactly-at-the-deadline-is-a-normal-move",
        ),
        pytest.param(
            [lead(T), lead_to(T + LEAD_EXPIRE + 1, "sql")],
            NOW,
            {
                "revmon_funnel_open{lead,sql}": 0,
                "revmon_funnel_open{lead,mql}": 0,
                "revmon_funnel_exits{lead,mql,dropped,30d}": 1,
                "revmon_funnel_exits{lead,mql,advanced,30d}": 0,
                "revmon_funnel_entries{lead,disqualified,30d}": 1,
                "revmon_funnel_entries{lead,sql,30d}": 0,
            },
            id="a-move-after-the-deadline-finds-the-lead-dropped",
        ),
        pytest.param(
            [lead(T), lead_to(T + 5 * DAY, "mql")],
            NOW,
            {
                "revmon_funnel_open{lead,mql}": 1,
                "revmon_funnel_age_seconds_gsum{lead,mql}": 20 * DAY,
                "revmon_funnel_exits{lead,mql,dropped,30d}": 0,
            },
            id="an-event-inside-the-period-holds-the-lead-in-its-stage",
        ),
        pytest.param(
            [lead(T - DAY, "name"), lead_to(T, "mql"), lead_to(T - DAY / 2, "sql")],
            NOW,
            {
                "revmon_funnel_exits{lead,mql,dropped,30d}": 1,
                "revmon_funnel_exits{lead,name,advanced,30d}": 1,
                "revmon_funnel_open{lead,sql}": 0,
            },
            id="a-late-event-before-the-entry-neither-moves-nor-holds",
        ),
        pytest.param(
            [snapshot_lead(NOW - DAY, NOW - 15 * DAY)],
            NOW,
            {
                "revmon_funnel_open{lead,mql}": 0,
                "revmon_funnel_entries{lead,mql,7d}": 0,
                "revmon_funnel_exits{lead,mql,dropped,7d}": 1,
                "revmon_funnel_entries{lead,disqualified,7d}": 1,
                "revmon_marketing_new_names{email,7d}": 0,
            },
            id="a-snapshot-expires-from-its-entered-at",
        ),
    ],
)
def test_lead_expiry(events: list[Event], now: float, expected: Row) -> None:
    """Lead `mql` expires 10 d after entry, in event time, as SPEC §2 dates it."""
    _check(run(events, now), expected)


def test_a_late_event_dated_before_a_passed_deadline_is_late_and_changes_nothing() -> None:
    """Once a later event wrote the expiry, an event dated before the deadline is late."""
    _, lates = books_with([lead(T), lead_to(T + 12 * DAY, "sql"), lead_to(T + 9 * DAY, "sql")])

    assert lates == [False, False, True]


OPENED = NOW - 80 * DAY  # an opportunity enters `proposal` here: it expires at NOW - 50d


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [opp(OPENED)],
            {
                "revmon_pipeline_open{new_business,proposal}": 0,
                "revmon_pipeline_open_amount{new_business,proposal}": 0,
                "revmon_pipeline_lost{new_business,90d}": 1,
                "revmon_pipeline_lost_amount{new_business,90d}": 100,
                "revmon_pipeline_lost{new_business,30d}": 0,
                "revmon_pipeline_win_ratio{new_business,90d}": 0.0,
                "revmon_funnel_entries{opportunity,lost,90d}": 1,
                "revmon_stage_win_ratio{new_business,proposal}": 0.0,
                "revmon_pipeline_expected_amount{new_business}": 0,
            },
            id="untouched-deal-is-lost-at-its-deadline-at-its-amount",
        ),
        pytest.param(
            [opp(OPENED), opp_to(NOW - 40 * DAY, "proposal")],
            {
                "revmon_pipeline_open{new_business,proposal}": 0,
                "revmon_pipeline_lost{new_business,90d}": 1,
                "revmon_pipeline_lost{new_business,30d}": 1,
                "revmon_pipeline_lost{new_business,7d}": 0,
                "revmon_funnel_exits{opportunity,proposal,dropped,90d}": 2,
                "revmon_funnel_entries{opportunity,lost,90d}": 2,
                "revmon_funnel_entries{opportunity,proposal,90d}": 2,
            },
            id="re-opened-after-expiring-it-expires-again-and-counts-one-loss",
        ),
        pytest.param(
            [opp(OPENED), revalue(OPENED + 5 * DAY, "500")],
            {
                "revmon_pipeline_open{new_business,proposal}": 1,
                "revmon_pipeline_open_amount{new_business,proposal}": 500,
                "revmon_pipeline_lost{new_business,90d}": 0,
            },
            id="an-amount-change-inside-the-period-holds-the-deal",
        ),
        pytest.param(
            [opp(OPENED), revalue(NOW - 5 * DAY, "500")],
            {
                "revmon_pipeline_open{new_business,proposal}": 0,
                "revmon_pipeline_lost_amount{new_business,90d}": 100,
                "revmon_pipeline_lost{new_business,30d}": 0,
            },
            id="an-amount-change-after-the-deadline-finds-it-lost-at-the-old-amount",
        ),
        pytest.param(
            [opp(OPENED), opp_to(OPENED + OPP_EXPIRE + 1, "won", "900")],
            {
                "revmon_pipeline_won{new_business,90d}": 0,
                "revmon_pipeline_lost_amount{new_business,90d}": 100,
            },
            id="a-win-after-the-deadline-finds-the-deal-closed",
        ),
        pytest.param(
            [opp(OPENED), opp_to(OPENED + OPP_EXPIRE, "won", "900")],
            {
                "revmon_pipeline_won_amount{new_business,90d}": 900,
                "revmon_pipeline_lost{new_business,90d}": 0,
                "revmon_pipeline_cycle_seconds_gsum{new_business,90d}": OPP_EXPIRE,
                "revmon_pipeline_cycle_seconds_bucket{new_business,90d,2.592e+06}": 1,
                "revmon_pipeline_cycle_seconds_bucket{new_business,90d,1.2096e+06}": 0,
            },
            id="a-win-exactly-at-the-deadline-is-a-win",
        ),
    ],
)
def test_opportunity_expiry(events: list[Event], expected: Row) -> None:
    """Opportunity `proposal` expires 30 d after entry: lost at its deadline and amount."""
    _check(run(events), expected)


SCRAPES = (
    OPENED,
    OPENED + OPP_EXPIRE - 1,
    OPENED + OPP_EXPIRE,
    NOW - 45 * DAY,
    NOW - 10 * DAY,
    NOW,
)


@pytest.mark.parametrize(
    "events",
    [
        pytest.param([opp(OPENED), lead(T)], id="pending-expiries"),
        pytest.param([opp(OPENED), opp_to(NOW - 40 * DAY, "proposal"), lead(T)], id="re-opened"),
    ],
)
def test_numbers_do_not_depend_on_when_or_how_often_they_were_read(
    events: list[Event],
) -> None:
    """Reading partials at earlier instants first, or from a reloaded book, changes nothing."""
    books, _ = books_with(events)
    fresh = books.partials(NOW)
    read, _ = books_with(events)
    for at in (*SCRAPES, NOW - 60 * DAY, *reversed(SCRAPES)):
        read.partials(at)
    reloaded = PartitionBooks.from_settings(_settings())
    for name, ledger in reloaded.ledgers().items():
        source = books.ledgers()[name]
        if isinstance(ledger, Records) and isinstance(source, Records):
            ledger.load(source.items())
        elif isinstance(ledger, Windows) and isinstance(source, Windows):
            ledger.load(source.snapshot())
    reloaded.rebuild()

    assert read.partials(NOW) == fresh
    assert reloaded.partials(NOW) == fresh


def test_partitions_add_up_to_one_book() -> None:
    """Entities split over two partitions give the one-partition numbers once summed."""
    first = [opp(OPENED), lead(T)]
    second = [
        _event("opportunity.created", OPENED, opportunity_id="P", amount="7", kind="renewal"),
        _event("lead.created", T, lead_id="M", stage="mql"),
    ]
    one, _ = books_with([*first, *second])
    a, _ = books_with(first)
    b, _ = books_with(second)

    assert exported(add_up([a.partials(NOW), b.partials(NOW)])) == exported(one.partials(NOW))


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [snapshot_lead(NOW - DAY, NOW - 3 * DAY, "sql")],
            {
                "revmon_marketing_new_names{email,7d}": 0,
                "revmon_funnel_entries{lead,sql,7d}": 0,
                "revmon_funnel_open{lead,sql}": 1,
                "revmon_funnel_age_seconds_gsum{lead,sql}": 3 * DAY,
            },
            id="a-lead-snapshot-is-no-new-name-and-ages-from-entered-at",
        ),
        pytest.param(
            [
                opp(NOW - DAY, "discovery", snapshot=True, entered_at="2025-12-22T00:00:00Z"),
                opp_to(NOW - DAY / 2, "won", "250"),
            ],
            {
                "revmon_pipeline_created{new_business,7d}": 0,
                "revmon_pipeline_created_amount{new_business,7d}": 0,
                "revmon_pipeline_won_amount{new_business,7d}": 250,
                "revmon_pipeline_cycle_seconds_gsum{new_business,30d}": 9.5 * DAY,
                "revmon_funnel_entries{opportunity,discovery,30d}": 0,
                "revmon_funnel_exits{opportunity,discovery,advanced,30d}": 1,
            },
            id="an-opportunity-snapshot-is-not-pipeline-created-its-cycle-starts-at-entered-at",
        ),
        pytest.param(
            [lead(NOW - 2 * DAY, "name"), snapshot_lead(NOW - DAY, NOW - 20 * DAY, "sql")],
            {
                "revmon_funnel_open{lead,name}": 1,
                "revmon_funnel_open{lead,sql}": 0,
                "revmon_funnel_entries{lead,name,7d}": 1,
            },
            id="a-snapshot-of-an-existing-entity-changes-nothing",
        ),
        pytest.param(
            [
                opp(NOW - DAY, "discovery", snapshot=True, entered_at="2025-12-22T00:00:00Z"),
                opp_to(NOW - 20 * DAY, "won", "250"),
            ],
            {
                "revmon_pipeline_won{new_business,30d}": 0,
                "revmon_pipeline_open{new_business,discovery}": 1,
            },
            id="an-event-before-entered-at-is-late",
        ),
    ],
)
def test_snapshots(events: list[Event], expected: Row) -> None:
    """A snapshot loads an entity as it stands: no entry, creation, new name or pipeline."""
    _check(run(events), expected)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [
                spend(NOW - 2 * DAY, "paid_search", "500"),
                opp(NOW - DAY, "qualification", "1000", channel="paid_search"),
                opp_to(NOW - DAY / 2, "won", "900"),
            ],
            {
                "revmon_channel_pipeline_created_amount{paid_search,7d}": 1000,
                "revmon_channel_won_amount{paid_search,7d}": 900,
                "revmon_channel_pipeline_to_spend_ratio{paid_search,7d}": 2.0,
                "revmon_channel_pipeline_to_spend_ratio{email,7d}": None,
            },
            id="created-and-won-by-lead-source-against-its-spend",
        ),
        pytest.param(
            [opp(NOW - DAY, "qualification", "40", channel="tv")],
            {
                "revmon_channel_pipeline_created_amount{other,7d}": 40,
                "revmon_channel_pipeline_to_spend_ratio{other,7d}": None,
            },
            id="a-channel-outside-the-list-is-other",
        ),
        pytest.param(
            [opp(NOW - DAY, "qualification", "40"), opp_to(NOW - DAY / 2, "won")],
            {
                "revmon_channel_pipeline_created_amount{other,7d}": 0,
                "revmon_channel_won_amount{other,7d}": 0,
                "revmon_pipeline_won_amount{new_business,7d}": 40,
            },
            id="a-deal-without-a-channel-is-attributed-nowhere",
        ),
        pytest.param(
            [
                opp(NOW - 3 * DAY, "qualification", "40", channel="email"),
                opp_to(NOW - 2 * DAY, "won"),
                opp_to(NOW - DAY, "negotiation"),
            ],
            {"revmon_channel_won_amount{email,7d}": 0},
            id="a-re-opened-win-is-taken-back",
        ),
        pytest.param(
            [
                opp(NOW - 3 * DAY, "qualification", "40", channel="email", snapshot=True),
                opp_to(NOW - 2 * DAY, "won"),
            ],
            {
                "revmon_channel_pipeline_created_amount{email,7d}": 0,
                "revmon_channel_won_amount{email,7d}": 40,
            },
            id="a-snapshot-is-not-created-but-its-win-is-attributed",
        ),
        pytest.param(
            [opp(NOW - DAY, "qualification", "40", account_id=None, channel="email")],
            {"revmon_pipeline_open_amount{new_business,qualification}": 40},
            id="a-deal-without-an-account-counts-in-the-pipeline",
        ),
    ],
)
def test_channel_attribution(events: list[Event], expected: Row) -> None:
    """Pipeline created and won of deals that carry a channel, and created per spend."""
    _check(run(events), expected)


def test_deadlines_tally_any_cut_exactly() -> None:
    """Totals at a cut are the contributions at or before it, whatever the order of asking."""
    tally = Deadlines()
    tally.add("a", 10.0, {"x": Decimal("1.1")})
    tally.add("b", 20.0, {"x": Decimal("2.2"), "y": Decimal(1)})
    assert dict(tally.through(20.0)) == {"x": Decimal("3.3"), "y": Decimal(1)}
    assert dict(tally.through(15.0)) == {"x": Decimal("1.1")}
    tally.add("c", 12.0, {"x": Decimal(5)})
    tally.remove("a")
    assert dict(tally.through(15.0)) == {"x": Decimal(5)}
    assert tally.between(25.0, 15.0) == {"x": Decimal("7.2"), "y": Decimal(1)}
    assert dict(tally.through(9.0)) == {}


_times = st.integers(min_value=0, max_value=100).map(lambda n: 1_767_225_600.0 + n * 3600.0)
_ops = st.lists(st.tuples(st.sampled_from(["add", "remove", "read"]), _times, _times), max_size=60)


@settings(max_examples=200, deadline=None)
@given(ops=_ops, expire=st.sampled_from([3600.0, 36_000.0, 360_000.0]))
def test_open_stage_with_expiry_agrees_with_brute_force(
    ops: list[tuple[str, float, float]], expire: float
) -> None:
    """Counts, ages and expiries at any `now`, after any adds and removes, are the brute force's."""
    stage = OpenStage(expire=expire)
    present: list[float] = []
    for op, at, now in ops:
        if op == "add":
            stage.add(at)
            present.append(at)
        elif op == "remove" and at in present:
            stage.remove(at)
            present.remove(at)
        live = [e for e in present if e + expire > now]
        assert stage.count(now) == len(live)
        assert stage.age_sum(now) == pytest.approx(sum(now - e for e in live), abs=1e-6)
        assert stage.aged_at_most(now, 7200.0) == sum(1 for e in live if now - e <= 7200.0)
        assert stage.aged_over(now, 7200.0) == sum(1 for e in live if now - e > 7200.0)
        gone = sum(1 for e in present if now - 36_000.0 < e + expire <= now)
        assert stage.expired_between(now - 36_000.0, now) == gone


@settings(max_examples=200, deadline=None)
@given(ops=_ops)
def test_deadlines_agree_with_brute_force(ops: list[tuple[str, float, float]]) -> None:
    """Totals at `now` and over a window, after any adds and removes, are the brute force's."""
    tally = Deadlines()
    pending: dict[str, float] = {}
    for n, (op, at, now) in enumerate(ops):
        if op == "add":
            tally.add(f"e{n}", at, {"n": Decimal(1), "t": Decimal(int(at))})
            pending[f"e{n}"] = at
        elif op == "remove" and pending:
            entity = sorted(pending)[int(at) % len(pending)]
            tally.remove(entity)
            del pending[entity]
        due = [d for d in pending.values() if d <= now]
        assert tally.through(now).get("n", 0) == len(due)
        inside = [d for d in pending.values() if now - 7200.0 < d <= now]
        assert tally.between(now, 7200.0).get("t", 0) == sum(int(d) for d in inside)

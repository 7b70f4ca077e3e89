"""New names, spend and cost per name by channel (revmon/kpi/marketing.py)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revmon.events import EVENT_ADAPTER, Event
from revmon.kpi.funnel import Changes, Effect, FunnelBook, Move
from revmon.kpi.ledger import Point, Sample
from revmon.kpi.marketing import MarketingBook, channel_label, samples
from revmon.settings import Settings, load_settings

DAY = 86_400.0
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
T = NOW - 2 * DAY
_ids = itertools.count()


@cache
def _settings() -> Settings:
    # Built inside a test (after conftest cleared REVMON_*), once: the packaged defaults.
    return load_settings(None)


def _event(type_: str, at: float, /, **fields: Any) -> Event:
    occurred = datetime.fromtimestamp(at, UTC).isoformat()
    data = {"type": type_, "event_id": f"m{next(_ids)}", "occurred_at": occurred, **fields}
    return EVENT_ADAPTER.validate_python({k: v for k, v in data.items() if v is not None})


def lead(lead_id: str, at: float = T, channel: str | None = None) -> Event:
    return _event("lead.created", at, lead_id=lead_id, channel=channel)


def spend(amount: str, at: float = T, channel: str | None = None) -> Event:
    return _event("campaign.spend", at, campaign_id="C1", amount=amount, channel=channel)


def books_with(events: Iterable[Event]) -> tuple[FunnelBook, MarketingBook]:
    funnel = FunnelBook.from_settings(_settings())
    marketing = MarketingBook.from_settings(_settings())
    for event in events:
        marketing.apply(event, funnel.apply(event))
    return funnel, marketing


def flat(series: Iterable[Sample]) -> dict[str, float]:
    """Series by `name{label values}`, e.g. `revmon_marketing_new_names{email,7d}`."""
    return {f"{s.name}{{{','.join(v for _, v in s.labels)}}}": s.value for s in series}


def exported(book: MarketingBook, now: float = NOW) -> dict[str, float]:
    return flat(samples(_settings(), book.partials(now), now))


def nonzero_7d(series: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in series.items() if v and k.endswith(",7d}")}


def test_empty_book_exports_every_channel_at_zero() -> None:
    """Every channel (`other` included) and window has new names and spend at 0, no ratio."""
    series = samples(_settings(), MarketingBook.from_settings(_settings()).partials(NOW), NOW)

    assert len(series) == 9 * 3 * 4  # 8 channels + other, 3 windows, 4 metrics
    assert all(s.value == 0.0 for s in series)
    assert {s.name for s in series} == {
        "revmon_marketing_new_names",
        "revmon_marketing_spend_amount",
        "revmon_channel_pipeline_created_amount",
        "revmon_channel_won_amount",
    }
    assert {tuple(name for name, _ in s.labels) for s in series} == {("channel", "window")}
    assert samples(_settings(), {}, NOW) == series


@pytest.mark.parametrize(
    ("channel", "label"),
    [
        pytest.param("paid_search", "paid_search", id="configured"),
        pytest.param(None, "other", id="missing"),
        pytest.param("tiktok", "other", id="unknown"),
        pytest.param("Paid_Search", "other", id="case-sensitive"),
        pytest.param("other", "other", id="other-itself"),
    ],
)
def test_channel_labels(channel: str | None, label: str) -> None:
    """A channel outside the configured list counts as `other`, for names and spend."""
    _, book = books_with([lead("L1", channel=channel), spend("5", channel=channel)])

    assert channel_label(channel, _settings().marketing.channels) == label
    assert nonzero_7d(exported(book)) == {
        f"revmon_marketing_new_names{{{label},7d}}": 1,
        f"revmon_marketing_spend_amount{{{label},7d}}": 5,
        f"revmon_marketing_cost_per_name_amount{{{label},7d}}": 5,
    }


@pytest.mark.parametrize(
    ("events", "names"),
    [
        pytest.param([lead("L1")], 1, id="new-lead"),
        pytest.param([lead("L1"), lead("L1", T + DAY)], 1, id="repeat-is-not-a-new-name"),
        pytest.param(
            [_event("lead.stage_changed", T, lead_id="L1", stage="mql")],
            0,
            id="lead-first-seen-by-a-stage-change-is-not-a-new-name",
        ),
        pytest.param(
            [
                _event("lead.stage_changed", T, lead_id="L1", stage="mql"),
                lead("L1", T + DAY),
            ],
            0,
            id="creation-of-a-known-lead-is-not-a-new-name",
        ),
        pytest.param(
            [
                _event(
                    "opportunity.created",
                    T,
                    opportunity_id="L1",
                    account_id="A1",
                    amount="1",
                    kind="new_business",
                )
            ],
            0,
            id="opportunity-is-not-a-name",
        ),
        pytest.param([lead("L1"), lead("L2"), lead("L3", T - 8 * DAY)], 2, id="only-in-window"),
    ],
)
def test_new_names_are_leads_the_funnel_created(events: list[Event], names: float) -> None:
    """A new name is an applied `lead.created` that created its lead (SPEC §3.3)."""
    _, book = books_with(events)

    assert exported(book)["revmon_marketing_new_names{other,7d}"] == names


def test_lead_created_without_the_funnel_move_is_not_counted() -> None:
    """`apply` counts a name only when given the funnel's CREATED move."""
    book = MarketingBook.from_settings(_settings())
    event = lead("L1", channel="email")
    book.apply(event)
    book.apply(event, Move(Effect.IGNORED))

    assert exported(book)["revmon_marketing_new_names{email,7d}"] == 0


def test_spend_and_cost_per_name() -> None:
    """Spend sums Decimal amounts by channel; cost per name exists only where names > 0."""
    _, book = books_with(
        [
            lead("L1", channel="paid_search"),
            lead("L2", channel="paid_search"),
            lead("L3", channel="paid_search"),
            lead("L4", channel="email", at=NOW - 20 * DAY),
            spend("1234.50", channel="paid_search"),
            spend("0.75", channel="paid_search"),
            spend("100"),
            spend("60", channel="email", at=NOW - 10 * DAY),
        ]
    )
    series = exported(book)

    assert {k: v for k, v in series.items() if v and "paid_search" in k} == {
        f"revmon_marketing_{metric}{{paid_search,{window}}}": value
        for window in ("7d", "30d", "90d")
        for metric, value in (
            ("new_names", 3),
            ("spend_amount", 1235.25),
            ("cost_per_name_amount", 411.75),
        )
    }
    assert series["revmon_marketing_spend_amount{other,7d}"] == 100
    assert "revmon_marketing_cost_per_name_amount{other,7d}" not in series
    assert series["revmon_marketing_spend_amount{email,7d}"] == 0
    assert series["revmon_marketing_cost_per_name_amount{email,30d}"] == 60
    assert "revmon_marketing_cost_per_name_amount{email,7d}" not in series


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        pytest.param(NOW, {"7d": 2, "30d": 2, "90d": 2}, id="at-now-is-inside"),
        pytest.param(NOW - 7 * DAY, {"7d": 0, "30d": 2, "90d": 2}, id="on-the-7d-start-is-out"),
        pytest.param(NOW - 90 * DAY, {"7d": 0, "30d": 0, "90d": 0}, id="on-the-90d-start-is-out"),
        pytest.param(NOW + 1, {"7d": 0, "30d": 0, "90d": 0}, id="after-now-is-out"),
    ],
)
def test_windows_are_half_open(at: float, expected: dict[str, float]) -> None:
    """Names and spend count in (now - W, now] by `occurred_at`."""
    _, book = books_with([lead("L1", at, "webinar"), spend("2", at, "webinar")])
    series = exported(book)

    for window, value in expected.items():
        assert series[f"revmon_marketing_new_names{{webinar,{window}}}"] == value / 2
        assert series[f"revmon_marketing_spend_amount{{webinar,{window}}}"] == value


_CHANNELS = [None, "paid_search", "email", "tiktok"]
Op = tuple[bool, int, str | None, int, int]
_OPS = st.tuples(
    st.booleans(),  # lead.created, else campaign.spend
    st.integers(0, 5),  # lead id or campaign id
    st.sampled_from(_CHANNELS),
    st.integers(0, 4 * 40),  # quarter days before NOW
    st.integers(0, 1000),  # spend amount
)


def _stream(ops: list[Op]) -> list[tuple[int, Event]]:
    out = []
    for is_lead, key, channel, quarters, amount in ops:
        at = NOW - quarters * DAY / 4
        if is_lead:
            event = lead(f"L{key}", at, channel)
        else:
            event = _event("campaign.spend", at, campaign_id=f"C{key}", amount=str(amount))
        out.append((key, event))
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(_OPS, max_size=30))
def test_partials_add_up_across_partitions(
    ops: list[tuple[bool, int, str | None, int, int]],
) -> None:
    """Split by lead and campaign id over two books, summed partials export what one does."""
    single, even, odd = (books_with([]) for _ in range(3))
    for key, event in _stream(ops):
        for funnel, book in (single, even if key % 2 == 0 else odd):
            book.apply(event, funnel.apply(event))

    summed: Counter[str] = Counter(even[1].partials(NOW))
    summed.update(odd[1].partials(NOW))
    one = single[1].partials(NOW)
    assert summed.keys() == one.keys()
    assert samples(_settings(), summed, NOW) == samples(_settings(), one, NOW)


def test_drained_changes_rebuild_an_identical_book() -> None:
    """Journaled points, loaded into a fresh book, give identical partials."""
    _, book = books_with([lead("L1", channel="email"), spend("12.5"), lead("L2", NOW)])
    drained = book.drain()
    stored = orjson.loads(orjson.dumps([list(p) for p in drained.points]))

    fresh = MarketingBook.from_settings(_settings())
    fresh.load(Changes({}, [Point(*p) for p in stored]))
    fresh.rebuild()

    assert drained.records == {}
    assert list(book.ledgers()) == ["marketing.windows"]
    assert fresh.partials(NOW) == book.partials(NOW)
    assert fresh.drain() == Changes({}, [])

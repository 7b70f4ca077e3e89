"""Account segments, sales attention and the account book's state (revmon/kpi/accounts.py)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from revmon.events import EVENT_ADAPTER, Event
from revmon.kpi.accounts import REVENUE, AccountBook, samples
from revmon.kpi.customers import AccountFact, SubscriptionRouter
from revmon.settings import Settings, load_settings

DAY = 86_400.0
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SETTINGS = load_settings(None)
SEGMENTS = SETTINGS.segments.names
_ids = itertools.count()

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def event(type_: str, at: float, **fields: Any) -> Event:
    """A valid event of type `type_` at unix time `at`."""
    occurred_at = datetime.fromtimestamp(at, UTC).isoformat()
    data = {"type": type_, "event_id": f"e{next(_ids)}", "occurred_at": occurred_at, **fields}
    return EVENT_ADAPTER.validate_python(data)


def invoice(days_ago: float, amount: str, account: str = "a1") -> Event:
    """An `invoice.paid` `days_ago` days before NOW."""
    return event("invoice.paid", NOW - days_ago * DAY, account_id=account, amount=amount)


def refund(days_ago: float, amount: str, account: str = "a1") -> Event:
    """A `refund.issued` `days_ago` days before NOW."""
    return event("refund.issued", NOW - days_ago * DAY, account_id=account, amount=amount)


def activity(days_ago: float, kind: str, account: str = "a1", **extra: Any) -> Event:
    """An `activity.logged` `days_ago` days before NOW."""
    return event("activity.logged", NOW - days_ago * DAY, account_id=account, kind=kind, **extra)


def book_of(events: Iterable[Event], settings: Settings = SETTINGS) -> AccountBook:
    """An account book with `events` routed and applied in order."""
    router, book = SubscriptionRouter(), AccountBook.from_settings(settings)
    for item in events:
        for fact in router.route(item):
            book.apply(fact)
    return book


def series(book: AccountBook, now: float = NOW, settings: Settings = SETTINGS) -> Series:
    """Every series of one book at `now`, by (name, labels)."""
    return {(s.name, s.labels): s.value for s in samples(settings, book.partials(now), now)}


def by_segment(exported: Series, name: str, **labels: str) -> dict[str, float]:
    """The non-zero values of metric `name` by segment, for the other `labels` given."""
    out: dict[str, float] = {}
    for (metric, tags), value in exported.items():
        tag = dict(tags)
        if metric == name and value and all(tag.get(k) == v for k, v in labels.items()):
            out[tag["segment"]] = value
    return out


def test_empty_book_exports_every_segment_series_at_zero() -> None:
    """Accounts, revenue, activities, minutes and undercovered exist at 0 for every segment."""
    exported = series(AccountBook.from_settings(SETTINGS))
    per_segment = 1 + 1 + 4 * 3 + 3 + 1

    assert len(exported) == 2 + 3 * 6 + len(SEGMENTS) * per_segment
    assert set(exported.values()) == {0.0}


@pytest.mark.parametrize(
    ("events", "segment", "revenue"),
    [
        pytest.param([invoice(1, "10000")], "10k_100k", 10000.0, id="exactly-10k-is-10k_100k"),
        pytest.param([invoice(1, "9999.99")], "lt_10k", 9999.99, id="just-below-10k"),
        pytest.param(
            [invoice(3, "3333.33"), invoice(2, "3333.33"), invoice(1, "3333.34")],
            "10k_100k",
            10000.0,
            id="cents-adding-up-to-exactly-10k",
        ),
        pytest.param([invoice(1, "0.01")], "lt_10k", 0.01, id="one-cent-is-lt_10k"),
        pytest.param([invoice(1, "0")], "zero", 0.0, id="zero-revenue-is-zero"),
        pytest.param(
            [invoice(5, "100"), refund(1, "150")], "zero", -50.0, id="negative-revenue-is-zero"
        ),
        pytest.param(
            [invoice(5, "10100"), refund(1, "100")], "10k_100k", 10000.0, id="refunds-subtract"
        ),
        pytest.param([invoice(1, "5000000")], "5m_plus", 5e6, id="exactly-5m-is-5m_plus"),
        pytest.param([invoice(1, "999999.99")], "100k_1m", 999999.99, id="just-below-1m"),
        pytest.param(
            [event("lead.created", NOW, lead_id="l1", account_id="a1")],
            "zero",
            0.0,
            id="an-account-seen-in-a-lead-is-known",
        ),
        pytest.param(
            [activity(1, "email")], "zero", 0.0, id="an-account-seen-in-an-activity-is-known"
        ),
    ],
)
def test_segment_boundaries(events: list[Event], segment: str, revenue: float) -> None:
    """`zero` is ≤ 0 and every other segment includes its lower bound."""
    exported = series(book_of(events))

    assert by_segment(exported, "revmon_accounts") == {segment: 1.0}
    assert exported["revmon_segment_revenue_amount", (("segment", segment),)] == revenue


@pytest.mark.parametrize(
    ("days_ago", "now", "segment"),
    [
        pytest.param(364, NOW, "10k_100k", id="inside-365d"),
        pytest.param(365, NOW, "zero", id="exactly-365d-ago-is-outside"),
        pytest.param(364, NOW + DAY, "zero", id="expires-as-now-moves-on"),
        pytest.param(-1, NOW, "zero", id="dated-after-now-not-yet"),
        pytest.param(-1, NOW + DAY, "10k_100k", id="counts-once-now-reaches-it"),
    ],
)
def test_segment_revenue_covers_the_365_days_up_to_now(
    days_ago: float, now: float, segment: str
) -> None:
    """Revenue counts in (now − 365d, now]: the segment moves as time passes."""
    exported = series(book_of([invoice(days_ago, "20000")]), now)

    assert by_segment(exported, "revmon_accounts") == {segment: 1.0}


def test_revenue_no_window_can_see_is_dropped_from_the_record() -> None:
    """An account keeps only the revenue of the 365 days before its newest invoice."""
    book = book_of([invoice(400, "50000"), invoice(30, "5000"), invoice(500, "70000")])

    assert book.records.get("a1")[REVENUE] == [NOW - 30 * DAY, 5000.0 * 1_000_000]
    assert by_segment(series(book), "revmon_accounts") == {"lt_10k": 1.0}


def test_activities_count_under_the_segment_of_now() -> None:
    """Activities logged while the account had no revenue count under its segment now."""
    events = [
        activity(20, "call"),
        activity(10, "meeting", minutes=30),
        activity(3, "visit"),
        activity(2, "email"),
        invoice(1, "20000"),
        activity(1, "call", account="a2"),
    ]
    exported = series(book_of(events))

    assert by_segment(exported, "revmon_sales_activities", kind="call", window="30d") == {
        "10k_100k": 1.0,
        "zero": 1.0,
    }
    assert by_segment(exported, "revmon_sales_activities", kind="meeting", window="7d") == {}
    assert by_segment(exported, "revmon_sales_activity_seconds", window="7d") == {
        "10k_100k": (120 + 5) * 60,
        "zero": 15 * 60,
    }
    assert by_segment(exported, "revmon_sales_activity_seconds", window="30d") == {
        "10k_100k": (15 + 30 + 120 + 5) * 60,
        "zero": 15 * 60,
    }


def test_activity_window_edges() -> None:
    """An activity exactly on now − 7d is outside 7d and inside 30d; one after now is not yet."""
    exported = series(book_of([activity(7, "call"), activity(-1, "call")]))

    assert by_segment(exported, "revmon_sales_activities", kind="call", window="7d") == {}
    assert by_segment(exported, "revmon_sales_activities", kind="call", window="30d") == {
        "zero": 1.0
    }


PAYING = [invoice(1, "20000")]  # segment 10k_100k, cadence 90d


@pytest.mark.parametrize(
    ("events", "undercovered"),
    [
        pytest.param(PAYING, 1.0, id="never-touched"),
        pytest.param([*PAYING, activity(1, "email")], 1.0, id="email-is-not-a-touch"),
        pytest.param([*PAYING, activity(10, "visit")], 0.0, id="recent-visit"),
        pytest.param([*PAYING, activity(90, "call")], 0.0, id="exactly-at-cadence-is-covered"),
        pytest.param([*PAYING, activity(90 + 1 / DAY, "call")], 1.0, id="one-second-past-cadence"),
        pytest.param(
            [*PAYING, activity(200, "meeting"), activity(50, "email")],
            1.0,
            id="last-touch-long-ago",
        ),
        pytest.param([*PAYING, activity(-1, "meeting")], 1.0, id="touch-after-now-not-yet"),
        pytest.param([activity(200, "email")], 0.0, id="segment-without-cadence-never"),
    ],
)
def test_undercovered_accounts(events: list[Event], undercovered: float) -> None:
    """Undercovered: the last call/meeting/visit is older than the segment's cadence, or none."""
    exported = series(book_of(events))
    values = by_segment(exported, "revmon_accounts_undercovered")

    assert sum(values.values()) == undercovered
    assert set(values) <= {"10k_100k"}


def test_a_touch_dropped_from_the_activities_is_still_the_last_touch() -> None:
    """The newest call older than every window is remembered for coverage; an email is not."""
    events = [*PAYING, activity(95, "call"), activity(0, "email")]
    longer = load_settings(None, segments={"cadence": {"10k_100k": "100d"}})

    assert len(book_of(events).records.get("a1")[2]) == 3  # only the email is kept
    assert by_segment(series(book_of(events)), "revmon_accounts_undercovered") == {"10k_100k": 1.0}
    exported = series(book_of(events, longer), settings=longer)
    assert by_segment(exported, "revmon_accounts_undercovered") == {}
    emails = [*PAYING, activity(95, "email"), activity(0, "email")]
    exported = series(book_of(emails, longer), settings=longer)
    assert by_segment(exported, "revmon_accounts_undercovered") == {"10k_100k": 1.0}


def population(seed: int = 7, accounts: int = 40) -> list[Event]:
    """A mixed history of many accounts: subscriptions, revenue, activities, leads."""
    rng = random.Random(seed)
    out: list[Event] = []
    for n in range(accounts):
        account = f"acct-{n}"
        for s in range(rng.randrange(3)):
            sub = f"{account}-s{s}"
            out.append(
                event(
                    "subscription.started",
                    NOW - rng.randrange(200) * DAY,
                    subscription_id=sub,
                    account_id=account,
                    mrr=rng.randrange(1, 900),
                )
            )
            if rng.random() < 0.5:
                at = NOW - rng.randrange(100) * DAY
                out.append(event("subscription.changed", at, subscription_id=sub, mrr=99))
            if rng.random() < 0.3:
                out.append(
                    event(
                        "subscription.canceled", NOW - rng.randrange(60) * DAY, subscription_id=sub
                    )
                )
        for _ in range(rng.randrange(6)):
            out.append(invoice(rng.uniform(0, 400), f"{rng.randrange(100, 90000)}.5", account))
        if rng.random() < 0.2:
            out.append(refund(rng.uniform(0, 100), "250.25", account))
        for _ in range(rng.randrange(5)):
            kind = rng.choice(["call", "email", "meeting", "visit"])
            out.append(activity(rng.uniform(0, 120), kind, account))
        if rng.random() < 0.2:
            out.append(event("lead.created", NOW, lead_id=f"l{n}", account_id=account))
    rng.shuffle(out)
    return out


def test_partials_of_split_accounts_add_up() -> None:
    """Accounts split over two books, partials summed, give the series of one book."""
    history = population()
    whole = book_of(history)
    parts = [
        book_of([e for e in history if int(_account(e).removeprefix("acct-")) % 2 == i])
        for i in (0, 1)
    ]
    summed: dict[str, float] = {}
    for part in parts:
        for key, value in part.partials(NOW).items():
            summed[key] = summed.get(key, 0.0) + value
    split = {(s.name, s.labels): s.value for s in samples(SETTINGS, summed, NOW)}

    assert split == pytest.approx(series(whole))
    assert all(part.records for part in parts)


def _account(item: Event) -> str:
    """The account of a population event (subscription ids start with theirs)."""
    account = getattr(item, "account_id", None)
    return account or item.subscription_id.rsplit("-", 1)[0]  # type: ignore[union-attr]


def test_drain_load_rebuild_round_trip() -> None:
    """Records and points drained as JSON, loaded and rebuilt give the same book."""
    history = population(seed=11)
    book = book_of(history[:150])
    restored = AccountBook.from_settings(SETTINGS)
    restored.records.load(orjson.loads(orjson.dumps(book.records.drain())).items())
    restored.windows.load(orjson.loads(orjson.dumps([list(p) for p in book.windows.drain()])))
    restored.rebuild()

    assert series(restored) == series(book)
    router = SubscriptionRouter()
    for item in history[:150]:
        router.route(item)
    for item in history[150:]:
        for fact in router.route(item):
            book.apply(fact)
            restored.apply(AccountFact(fact.account_id, fact.event))
    for when in (NOW, NOW - 20 * DAY):
        assert series(restored, when) == series(book, when)

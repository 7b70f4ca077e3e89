"""Subscription routing and MRR timelines in event-time order (revmon/kpi/customers.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revmon.events import EVENT_ADAPTER, Event
from revmon.kpi.accounts import AccountBook, samples
from revmon.kpi.customers import AccountFact, SubscriptionRouter
from revmon.kpi.ledger import Records
from revmon.settings import load_settings

DAY = 86_400.0
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SETTINGS = load_settings(None)
_ids = itertools.count()

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def event(type_: str, at: float, **fields: Any) -> Event:
    """A valid event of type `type_` at unix time `at`."""
    occurred_at = datetime.fromtimestamp(at, UTC).isoformat()
    data = {"type": type_, "event_id": f"e{next(_ids)}", "occurred_at": occurred_at, **fields}
    return EVENT_ADAPTER.validate_python(data)


def started(sub: str, days_ago: float, mrr: int | str, account: str = "a1") -> Event:
    """A `subscription.started` `days_ago` days before NOW."""
    return event(
        "subscription.started",
        NOW - days_ago * DAY,
        subscription_id=sub,
        account_id=account,
        mrr=mrr,
    )


def changed(sub: str, days_ago: float, mrr: int | str) -> Event:
    """A `subscription.changed` `days_ago` days before NOW."""
    return event("subscription.changed", NOW - days_ago * DAY, subscription_id=sub, mrr=mrr)


def canceled(sub: str, days_ago: float) -> Event:
    """A `subscription.canceled` `days_ago` days before NOW."""
    return event("subscription.canceled", NOW - days_ago * DAY, subscription_id=sub)


def feed(events: Iterable[Event]) -> AccountBook:
    """A fresh router and account book with `events` routed and applied in arrival order."""
    router, book = SubscriptionRouter(), AccountBook.from_settings(SETTINGS)
    for item in events:
        for fact in router.route(item):
            book.apply(fact)
    return book


def series(book: AccountBook, now: float = NOW) -> Series:
    """The §3.6 series of one book at `now`, by (name, labels)."""
    return {
        (s.name, s.labels): s.value
        for s in samples(SETTINGS, book.partials(now), now)
        if not s.name.startswith(("revmon_accounts", "revmon_s"))
    }


def view(book: AccountBook, window: str = "30d", now: float = NOW) -> dict[str, float]:
    """Customers, MRR and the flows of one window, by short names."""
    out: dict[str, float] = {}
    for (name, labels), value in series(book, now).items():
        tags = dict(labels)
        if tags.get("window", window) != window:
            continue
        short = name.removeprefix("revmon_").removesuffix("_amount").removesuffix("_ratio")
        out[tags.get("movement", short)] = value
    return out


# -- routing ------------------------------------------------------------------------


def test_router_forwards_events_that_name_their_account() -> None:
    """Revenue, activity, lead and opportunity events carrying an account id are facts."""
    router = SubscriptionRouter()
    carrying = [
        event("invoice.paid", NOW, account_id="a1", amount="1"),
        event("refund.issued", NOW, account_id="a2", amount="1"),
        event("activity.logged", NOW, account_id="a3", kind="email"),
        event("lead.created", NOW, lead_id="l1", account_id="a4"),
        event("lead.stage_changed", NOW, lead_id="l1", stage="mql", account_id="a5"),
        event(
            "opportunity.created",
            NOW,
            opportunity_id="o1",
            account_id="a6",
            amount=1,
            kind="renewal",
        ),
    ]
    silent = [
        event("lead.created", NOW, lead_id="l2"),
        event("opportunity.stage_changed", NOW, opportunity_id="o1", stage="won"),
        event("campaign.spend", NOW, campaign_id="c1", amount="5"),
        event("expense.recorded", NOW, category="tools", amount="5"),
    ]

    assert [router.route(e) for e in carrying] == [
        [AccountFact(f"a{i}", e)] for i, e in enumerate(carrying, start=1)
    ]
    assert [router.route(e) for e in silent] == [[], [], [], []]
    assert len(router.records) == 0


def test_router_announces_an_account_once_but_forwards_all_money_and_activity() -> None:
    """Leads and opportunities only make an account known: the first one goes out, the rest
    stay home; invoices, refunds and activities always go. A re-route after a restart sends
    the announcing event again, and no other lead or opportunity."""
    router = SubscriptionRouter()
    first = event("lead.created", NOW, lead_id="l1", account_id="a1")
    again = event("lead.stage_changed", NOW, lead_id="l1", stage="mql", account_id="a1")
    opportunity = event(
        "opportunity.created", NOW, opportunity_id="o1", account_id="a1", amount=1, kind="renewal"
    )
    paid = event("invoice.paid", NOW, account_id="a1", amount="1")
    call = event("activity.logged", NOW, account_id="a1", kind="call")
    other = event("lead.created", NOW, lead_id="l2", account_id="a2")

    routed = [router.route(e) for e in (first, again, opportunity, paid, call, other)]

    assert routed == [
        [AccountFact("a1", first)],
        [],
        [],
        [AccountFact("a1", paid)],
        [AccountFact("a1", call)],
        [AccountFact("a2", other)],
    ]
    assert [router.reroute(e) for e in (first, again, opportunity, paid, call, other)] == [
        [AccountFact("a1", first)],
        [],
        [],
        [AccountFact("a1", paid)],
        [AccountFact("a1", call)],
        [AccountFact("a2", other)],
    ]
    assert dict(router.announced.items()) == {"a1": first.event_id, "a2": other.event_id}


def test_router_holds_changes_until_the_start_then_releases_them_in_order() -> None:
    """A change or cancel of an unknown subscription waits for its start, then goes out first.

    They arrived first, and the account book breaks ties of event time by arrival.
    """
    router = SubscriptionRouter()
    change, cancel, start = changed("s1", 3, 120), canceled("s1", 1), started("s1", 9, 100)
    later = changed("s1", 0, 90)

    assert router.route(change) == []
    assert router.route(cancel) == []
    assert router.route(start) == [
        AccountFact("a1", change),
        AccountFact("a1", cancel),
        AccountFact("a1", start),
    ]
    assert router.route(later) == [AccountFact("a1", later)]
    assert router.records.get("s1") == "a1"


def test_router_pending_events_survive_a_journal_round_trip() -> None:
    """Held events are JSON in the records: drained, loaded elsewhere, then released intact."""
    router = SubscriptionRouter()
    change = changed("s1", 3, "120.50")
    router.route(change)
    restored = SubscriptionRouter(Records())
    restored.records.load(orjson.loads(orjson.dumps(router.records.drain())).items())
    restored.rebuild()
    start = started("s1", 9, 100)

    assert restored.route(start) == [AccountFact("a1", change), AccountFact("a1", start)]


@pytest.mark.parametrize(
    "fact",
    [
        pytest.param(AccountFact("a1", changed("s1", 3, "120.50")), id="change-without-account"),
        pytest.param(AccountFact('a"2', started("s1", 1, 7)), id="start-quoted-account"),
        pytest.param(
            AccountFact(
                "a3", event("activity.logged", NOW, account_id="a3", kind="call", minutes=7.5)
            ),
            id="activity-with-minutes",
        ),
    ],
)
def test_fact_json_round_trip(fact: AccountFact) -> None:
    """A fact survives the internal topic's JSON unchanged."""
    assert AccountFact.from_json(fact.to_json()) == fact


def test_a_repeated_start_does_not_re_route() -> None:
    """The first start routes a subscription; a repeat is forwarded by its own account id."""
    router = SubscriptionRouter()
    router.route(started("s1", 9, 100, account="a1"))
    again = started("s1", 8, 100, account="a2")

    assert router.route(again) == [AccountFact("a2", again)]
    assert router.records.get("s1") == "a1"


@st.composite
def routed_histories(draw: st.DrawFn) -> list[Event]:
    """Subscription events in any arrival order (held changes, repeated starts, starts by
    another account), with leads and invoices naming a few accounts."""
    events: list[Event] = []
    for _ in range(draw(st.integers(1, 14))):
        sub = draw(st.sampled_from(["s1", "s2"]))
        account = draw(st.sampled_from(["a1", "a2"]))
        days_ago = draw(st.integers(0, 60))
        kind = draw(st.sampled_from(["start", "change", "cancel", "lead", "invoice"]))
        if kind == "start":
            events.append(started(sub, days_ago, draw(st.integers(0, 500)), account=account))
        elif kind == "change":
            events.append(changed(sub, days_ago, draw(st.integers(0, 500))))
        elif kind == "cancel":
            events.append(canceled(sub, days_ago))
        elif kind == "lead":
            events.append(event("lead.created", NOW, lead_id="l1", account_id=account))
        else:
            events.append(event("invoice.paid", NOW, account_id=account, amount="3"))
    return events


@settings(max_examples=100, deadline=None)
@given(history=routed_histories())
def test_reroute_gives_exactly_what_route_gave(history: list[Event]) -> None:
    """After a restart the worker re-routes applied input; the account stage drops those
    facts by position, so every event must give the same facts, in the same order."""
    router = SubscriptionRouter()
    routed = [router.route(e) for e in history]

    assert [router.reroute(e) for e in history] == routed


# -- timelines ----------------------------------------------------------------------

ZERO = {"new": 0.0, "expansion": 0.0, "contraction": 0.0, "churn": 0.0}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [started("s1", 10, 100)],
            {"customers": 1, "mrr": 100, "customers_new": 1, "new": 100},
            id="first-start-is-new",
        ),
        pytest.param(
            [started("s1", 10, 100), started("s2", 5, 50)],
            {"customers": 1, "mrr": 150, "customers_new": 1, "new": 100, "expansion": 50},
            id="second-subscription-is-expansion",
        ),
        pytest.param(
            [started("s1", 10, 100), changed("s1", 5, "130.5")],
            {"customers": 1, "customers_new": 1, "mrr": 130.5, "new": 100, "expansion": 30.5},
            id="change-up-is-expansion-by-the-difference",
        ),
        pytest.param(
            [started("s1", 10, 100), changed("s1", 5, 80)],
            {"customers": 1, "customers_new": 1, "mrr": 80, "new": 100, "contraction": 20},
            id="change-down-is-contraction-by-the-difference",
        ),
        pytest.param(
            [started("s1", 10, 100), changed("s1", 5, 100)],
            {"customers": 1, "customers_new": 1, "mrr": 100, "new": 100},
            id="change-to-the-same-mrr-moves-nothing",
        ),
        pytest.param(
            [started("s1", 10, 100), started("s2", 8, 50), canceled("s2", 5)],
            {
                "customers": 1,
                "customers_new": 1,
                "mrr": 100,
                "new": 100,
                "expansion": 50,
                "contraction": 50,
            },
            id="cancel-one-of-two-is-contraction",
        ),
        pytest.param(
            [started("s1", 10, 100), canceled("s1", 5)],
            {"customers": 0, "customers_new": 1, "customers_churned": 1, "new": 100, "churn": 100},
            id="cancel-of-the-last-is-churn",
        ),
        pytest.param(
            [started("s1", 10, 100), canceled("s1", 5), started("s2", 2, 70)],
            {
                "customers": 1,
                "mrr": 70,
                "customers_new": 2,
                "customers_churned": 1,
                "new": 170,
                "churn": 100,
            },
            id="a-churned-account-can-come-back-as-new",
        ),
        pytest.param(
            [started("s1", 10, 100), canceled("s1", 5), changed("s1", 3, 500), canceled("s1", 2)],
            {"customers": 0, "customers_new": 1, "customers_churned": 1, "new": 100, "churn": 100},
            id="events-of-a-canceled-subscription-change-nothing",
        ),
        pytest.param(
            [started("s1", 10, 100), canceled("s1", 5), started("s1", 3, 100)],
            {"customers": 0, "customers_new": 1, "customers_churned": 1, "new": 100, "churn": 100},
            id="a-canceled-subscription-does-not-restart",
        ),
        pytest.param(
            [started("s1", 10, 100), started("s1", 8, 300)],
            {"customers": 1, "mrr": 100, "customers_new": 1, "new": 100},
            id="a-repeated-start-changes-nothing",
        ),
        pytest.param(
            [started("s1", 5, 100), canceled("s1", 10), changed("s1", 7, 300)],
            {"customers": 1, "mrr": 100, "customers_new": 1, "new": 100},
            id="events-before-the-start-in-event-time-change-nothing",
        ),
        pytest.param(
            [started("s1", 50, 100), changed("s1", 20, 60)],
            {"customers": 1, "mrr": 60, "contraction": 40},
            id="only-movements-inside-the-window-count",
        ),
        pytest.param(
            [started("s1", 10, 100), canceled("s1", 10)],
            {"customers": 0, "customers_new": 1, "customers_churned": 1, "new": 100, "churn": 100},
            id="same-instant-start-then-cancel-in-arrival-order",
        ),
        pytest.param(
            [canceled("s1", 10), started("s1", 10, 100)],
            {"customers": 1, "mrr": 100, "customers_new": 1, "new": 100},
            id="a-cancel-that-arrived-first-at-the-same-instant-changes-nothing",
        ),
    ],
)
def test_subscription_flows(events: list[Event], expected: dict[str, float]) -> None:
    """Starts, changes and cancels give SPEC §3.6 movements and customer counts (30d)."""
    out = view(feed(events))
    full = {"customers": 0, "mrr": 0, "customers_new": 0, "customers_churned": 0, **ZERO}

    assert {k: out[k] for k in full} == {**full, **expected}


def test_unknown_subscription_events_reach_no_account() -> None:
    """A change or cancel whose start never came changes nothing (the router holds it)."""
    out = view(feed([changed("s9", 5, 100), canceled("s9", 2)]))

    assert out["customers"] == 0
    assert out["mrr"] == 0
    assert not any(out[m] for m in ZERO)


def test_unknown_subscription_facts_are_ignored_by_the_book() -> None:
    """A fact for a subscription the account never started changes nothing but makes it known."""
    book = AccountBook.from_settings(SETTINGS)
    book.apply(AccountFact("a1", changed("s9", 5, 100)))
    book.apply(AccountFact("a1", canceled("s9", 2)))

    assert view(book)["customers"] == 0
    assert list(book.windows.keys()) == []
    assert "a1" in book.records


IN_ORDER = [
    started("s1", 60, 100),
    started("s2", 40, 50),
    changed("s1", 25, 150),
    canceled("s2", 20),
    changed("s1", 6, 90),
    canceled("s1", 3),
    started("s3", 1, 40),
]


@pytest.mark.parametrize(
    "order",
    [
        pytest.param([5, 0, 1, 2, 3, 4, 6], id="cancel-arrives-before-start"),
        pytest.param([2, 4, 0, 1, 3, 5, 6], id="changes-arrive-before-start"),
        pytest.param([6, 5, 4, 3, 2, 1, 0], id="everything-reversed"),
        pytest.param([0, 1, 2, 4, 5, 6, 3], id="a-late-cancel-makes-a-later-one-churn"),
    ],
)
def test_out_of_order_arrival_gives_the_in_order_metrics(order: list[int]) -> None:
    """Late events correct history: the series equal those of in-order arrival."""
    expected = {
        "customers": 1,
        "mrr": 40,
        "customers_new": 1,
        "customers_churned": 1,
        "new": 40,
        "expansion": 50,
        "contraction": 110,
        "churn": 90,
    }
    book = feed([IN_ORDER[i] for i in order])

    assert {k: view(book)[k] for k in expected} == expected
    for when in (NOW, NOW - 5 * DAY, NOW - 22 * DAY, NOW - 50 * DAY):
        assert series(book, when) == series(feed(IN_ORDER), when)


@st.composite
def account_histories(draw: st.DrawFn) -> list[Event]:
    """One account's subscription events over 100 days, at distinct whole hours."""
    count = draw(st.integers(1, 10))
    hours = draw(st.lists(st.integers(0, 100 * 24), min_size=count, max_size=count, unique=True))
    events: list[Event] = []
    for hour in hours:
        sub = draw(st.sampled_from(["s1", "s2", "s3"]))
        days_ago = hour / 24
        kind = draw(st.sampled_from(["start", "start", "change", "cancel"]))
        mrr = draw(st.integers(0, 500))
        if kind == "start":
            events.append(started(sub, days_ago, mrr))
        elif kind == "change":
            events.append(changed(sub, days_ago, mrr))
        else:
            events.append(canceled(sub, days_ago))
    return events


@settings(max_examples=60, deadline=None)
@given(history=account_histories(), data=st.data())
def test_any_arrival_order_gives_the_same_series(history: list[Event], data: st.DataObject) -> None:
    """Every permutation of an account's events gives the series of event-time order."""
    in_time_order = sorted(history, key=lambda e: e.at)
    arrival = data.draw(st.permutations(history))
    routed, reference = feed(arrival), feed(in_time_order)
    direct = AccountBook.from_settings(SETTINGS)  # facts reaching the book in any order
    for item in arrival:
        direct.apply(AccountFact("a1", item))

    for when in (NOW, NOW - 7 * DAY, NOW - 45 * DAY):
        assert series(routed, when) == series(reference, when)
        assert series(direct, when) == series(reference, when)


# -- ratios and now -----------------------------------------------------------------


def _two_accounts() -> AccountBook:
    """a1 expands by 20 and a2 churns 50 inside 30d; both started before 90d."""
    return feed(
        [
            started("s1", 100, 100, account="a1"),
            started("s2", 200, 50, account="a2"),
            changed("s1", 20, 120),
            canceled("s2", 10),
        ]
    )


@pytest.mark.parametrize(
    ("window", "churn", "nrr"),
    [
        pytest.param("7d", 0.0, 1.0, id="quiet-window"),
        pytest.param("30d", 0.5, 0.8, id="churn-and-expansion"),
        pytest.param("90d", 0.5, 0.8, id="same-in-the-longest-window"),
    ],
)
def test_churn_and_net_revenue_retention(window: str, churn: float, nrr: float) -> None:
    """churned ÷ customers at the window start; NRR = (start + exp − contr − churn) ÷ start."""
    out = view(_two_accounts(), window)

    assert out["customer_churn"] == pytest.approx(churn)
    assert out["net_revenue_retention"] == pytest.approx(nrr)


def test_empty_book_exports_zero_series_and_no_ratios() -> None:
    """Customers, MRR, flows and movements exist at 0 from the start; ratios do not."""
    exported = series(AccountBook.from_settings(SETTINGS))

    assert len(exported) == 2 + 3 * (2 + 4)
    assert set(exported.values()) == {0.0}


def test_ratios_absent_when_every_customer_is_new() -> None:
    """No customers at the window start: no churn ratio and no NRR."""
    out = view(feed([started("s1", 3, 100)]), "7d")

    assert "customer_churn" not in out
    assert "net_revenue_retention" not in out


def test_events_after_now_have_not_happened_yet() -> None:
    """A start dated after now counts nowhere until now reaches it."""
    book = feed([started("s1", 10, 100), started("s2", -2, 50, account="a2")])

    assert view(book)["customers"] == 1
    assert view(book)["mrr"] == 100
    assert view(book, now=NOW + 2 * DAY)["customers"] == 2
    assert view(book, now=NOW + 2 * DAY)["mrr"] == 150
    assert view(book, now=NOW + 2 * DAY)["customers_new"] == 2

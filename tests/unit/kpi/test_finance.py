"""Revenue by kind, expense by category and E:R per window (revmon/kpi/finance.py)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from revmon.events import EVENT_ADAPTER, Event
from revmon.kpi.finance import FinanceBook, samples
from revmon.settings import Settings, load_settings

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


def invoice(at: float, amount: str, kind: str | None = None) -> Event:
    """An `invoice.paid` (kind omitted: the default)."""
    extra = {} if kind is None else {"kind": kind}
    return event("invoice.paid", at, account_id="a1", amount=amount, **extra)


def refund(at: float, amount: str) -> Event:
    """A `refund.issued`."""
    return event("refund.issued", at, account_id="a1", amount=amount)


def expense(at: float, amount: str, category: str) -> Event:
    """An `expense.recorded`."""
    return event("expense.recorded", at, category=category, amount=amount)


def spend(at: float, amount: str) -> Event:
    """A `campaign.spend`."""
    return event("campaign.spend", at, campaign_id="c1", amount=amount, channel="webinar")


def book_of(events: Iterable[Event], settings: Settings = SETTINGS) -> FinanceBook:
    """A book with `events` applied in order."""
    book = FinanceBook.from_settings(settings)
    for item in events:
        book.apply(item)
    return book


def series(book: FinanceBook, now: float = NOW) -> Series:
    """The exported series of one book at `now`, by (name, labels)."""
    return {(s.name, s.labels): s.value for s in samples(SETTINGS, book.partials(now), now)}


def revenue(kind: str, window: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The series key of `revmon_revenue_amount{kind, window}`."""
    return ("revmon_revenue_amount", (("kind", kind), ("window", window)))


def cost(category: str, window: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The series key of `revmon_expense_amount{category, window}`."""
    return ("revmon_expense_amount", (("category", category), ("window", window)))


def er(window: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The series key of `revmon_er_ratio{window}`."""
    return ("revmon_er_ratio", (("window", window),))


def test_empty_book_exports_every_series_at_zero_and_no_ratio() -> None:
    """Every kind and category exists at 0 in every window; E:R is absent without revenue."""
    exported = series(FinanceBook.from_settings(SETTINGS))

    assert len(exported) == (6 + 6) * 3
    assert set(exported.values()) == {0.0}
    assert not any(name == "revmon_er_ratio" for name, _ in exported)


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        pytest.param(
            [invoice(NOW - DAY, "100")],
            {revenue("recurring", "7d"): 100.0, revenue("new_business", "7d"): 0.0},
            id="invoice-kind-defaults-to-recurring",
        ),
        pytest.param(
            [invoice(NOW - DAY, "250.5", "one_time"), invoice(NOW - 2 * DAY, "49.5", "one_time")],
            {revenue("one_time", "7d"): 300.0},
            id="invoices-of-a-kind-add-up",
        ),
        pytest.param(
            [invoice(NOW - DAY, "100", "renewal"), refund(NOW - DAY, "30")],
            {revenue("renewal", "7d"): 100.0, revenue("refund", "7d"): -30.0, er("7d"): 0.0},
            id="refund-is-negative-revenue-of-kind-refund",
        ),
        pytest.param(
            [expense(NOW - DAY, "40", "tools"), spend(NOW - DAY, "25")],
            {cost("tools", "7d"): 40.0, cost("marketing", "7d"): 25.0, cost("sales", "7d"): 0.0},
            id="campaign-spend-is-marketing-expense",
        ),
        pytest.param(
            [invoice(NOW - 7 * DAY, "10"), invoice(NOW, "1"), invoice(NOW + 1, "1000")],
            {revenue("recurring", "7d"): 1.0, revenue("recurring", "30d"): 11.0},
            id="window-start-excluded-now-included-future-not-yet",
        ),
        pytest.param(
            [invoice(NOW - 89 * DAY, "5"), invoice(NOW - 90 * DAY, "7")],
            {revenue("recurring", "30d"): 0.0, revenue("recurring", "90d"): 5.0},
            id="midnight-on-the-90d-edge-is-outside",
        ),
    ],
)
def test_revenue_and_expense_sums(events: list[Event], expected: dict[Any, float | None]) -> None:
    """Revenue and expense sum per kind/category over exact half-open windows."""
    exported = series(book_of(events))

    for key, value in expected.items():
        assert exported.get(key) == value, key


@pytest.mark.parametrize(
    ("events", "ratios"),
    [
        pytest.param(
            [invoice(NOW - DAY, "1000"), expense(NOW - DAY, "300", "sales"), spend(NOW, "100")],
            {"7d": 0.4, "30d": 0.4, "90d": 0.4},
            id="all-categories-over-all-kinds",
        ),
        pytest.param(
            [
                invoice(NOW - 20 * DAY, "1000", "new_business"),
                refund(NOW - DAY, "1200"),
                expense(NOW - DAY, "50", "tools"),
            ],
            {"7d": None, "30d": None, "90d": None},
            id="refunds-exceeding-invoices-give-no-ratio",
        ),
        pytest.param(
            [
                invoice(NOW - 20 * DAY, "1000", "new_business"),
                invoice(NOW - 40 * DAY, "1000", "renewal"),
                refund(NOW - DAY, "1200"),
                expense(NOW - DAY, "400", "other"),
            ],
            {"7d": None, "30d": None, "90d": 0.5},
            id="refunds-subtract-from-revenue",
        ),
        pytest.param(
            [invoice(NOW - DAY, "0.1"), invoice(NOW - DAY, "0.2"), refund(NOW - DAY, "0.3")],
            {"7d": None, "30d": None, "90d": None},
            id="refunds-cancelling-invoices-to-the-cent-are-no-revenue",
        ),
        pytest.param(
            [expense(NOW - DAY, "10", "analytics")],
            {"7d": None, "30d": None, "90d": None},
            id="expense-without-revenue-gives-no-ratio",
        ),
    ],
)
def test_er_ratio_only_where_revenue_is_positive(
    events: list[Event], ratios: dict[str, float | None]
) -> None:
    """E:R is Σ expense ÷ Σ revenue (refunds subtracting), exported only when revenue > 0."""
    exported = series(book_of(events))

    for window, value in ratios.items():
        assert exported.get(er(window)) == (None if value is None else pytest.approx(value))


def test_other_events_change_nothing() -> None:
    """Events that are not revenue or expense leave the book empty."""
    book = book_of(
        [
            event("lead.created", NOW, lead_id="l1", account_id="a1"),
            event("activity.logged", NOW, account_id="a1", kind="call"),
            event("subscription.started", NOW, subscription_id="s1", account_id="a1", mrr="9"),
        ]
    )

    assert list(book.windows.keys()) == []


def _history() -> list[Event]:
    """A mixed history over four months."""
    out: list[Event] = []
    for day in range(0, 120, 3):
        out.append(invoice(NOW - day * DAY, f"{100 + day}.25", ("recurring", "renewal")[day % 2]))
        out.append(expense(NOW - day * DAY - 3600, f"{day}.5", "sales"))
        if day % 9 == 0:
            out.append(refund(NOW - day * DAY, "12.5"))
            out.append(spend(NOW - day * DAY, "30"))
    return out


def test_partials_of_split_partitions_add_up() -> None:
    """Books of two partitions, partials summed, give the series of one book with everything."""
    history = _history()
    whole = book_of(history)
    halves = [book_of(history[0::2]), book_of(history[1::2])]
    summed: dict[str, float] = {}
    for half in halves:
        for key, value in half.partials(NOW).items():
            summed[key] = summed.get(key, 0.0) + value

    split = {(s.name, s.labels): s.value for s in samples(SETTINGS, summed, NOW)}
    assert split == pytest.approx(series(whole))


def test_drain_load_round_trip() -> None:
    """Points drained as JSON and loaded into a fresh book give the same series."""
    book = book_of(_history())
    points = orjson.loads(orjson.dumps([list(p) for p in book.windows.drain()]))
    restored = FinanceBook.from_settings(SETTINGS)
    restored.windows.load(points)
    restored.rebuild()

    assert series(restored) == series(book)
    assert series(restored, NOW - 10 * DAY) == series(book, NOW - 10 * DAY)

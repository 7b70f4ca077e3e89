"""Calendar periods of targets: labels, local edges, current targets (revmon/kpi/periods.py)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from revmon.kpi.periods import Period, current_targets, periods_at
from revmon.settings import Target

NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")


def ts(text: str) -> float:
    """Unix seconds of an RFC 3339 timestamp."""
    return datetime.fromisoformat(text).timestamp()


@pytest.mark.parametrize(
    ("label", "first", "last"),
    [
        pytest.param("2026-Q1", date(2026, 1, 1), date(2026, 3, 31), id="q1"),
        pytest.param("2026-Q4", date(2026, 10, 1), date(2026, 12, 31), id="q4-ends-the-year"),
        pytest.param("2026-02", date(2026, 2, 1), date(2026, 2, 28), id="february"),
        pytest.param("2028-02", date(2028, 2, 1), date(2028, 2, 29), id="leap-february"),
        pytest.param("2026-12", date(2026, 12, 1), date(2026, 12, 31), id="december"),
    ],
)
def test_period_days(label: str, first: date, last: date) -> None:
    """A label names its first and last calendar day."""
    assert Period.parse(label) == Period(label, first, last)


@pytest.mark.parametrize("label", ["2026-Q5", "2026-13", "2026-1", "26-Q1", "2026Q1"])
def test_bad_label_is_refused(label: str) -> None:
    """Anything but a quarter or a month label is an error."""
    with pytest.raises(ValueError, match="not a quarter or month"):
        Period.parse(label)


@pytest.mark.parametrize(
    ("label", "zone", "start", "end"),
    [
        pytest.param(
            "2026-Q4",
            UTC_ZONE,
            "2026-10-01T00:00:00+00:00",
            "2027-01-01T00:00:00+00:00",
            id="utc-quarter",
        ),
        pytest.param(
            "2026-Q4",
            NEW_YORK,
            "2026-10-01T04:00:00+00:00",
            "2027-01-01T05:00:00+00:00",
            id="new-york-quarter-starts-in-edt-ends-in-est",
        ),
        pytest.param(
            "2026-11",
            NEW_YORK,
            "2026-11-01T04:00:00+00:00",
            "2026-12-01T05:00:00+00:00",
            id="new-york-month-across-the-dst-change",
        ),
    ],
)
def test_period_bounds_are_local_midnights(
    label: str, zone: ZoneInfo, start: str, end: str
) -> None:
    """A period runs from local midnight of its first day to local midnight after its last."""
    period = Period.parse(label)

    assert (period.start(zone), period.end(zone)) == (ts(start), ts(end))


@pytest.mark.parametrize(
    ("now", "zone", "quarter", "month"),
    [
        pytest.param("2026-10-01T03:59:59+00:00", NEW_YORK, "2026-Q3", "2026-09", id="ny-before"),
        pytest.param("2026-10-01T04:00:00+00:00", NEW_YORK, "2026-Q4", "2026-10", id="ny-on-edge"),
        pytest.param("2026-10-01T00:00:00+00:00", UTC_ZONE, "2026-Q4", "2026-10", id="utc-edge"),
        pytest.param(
            "2026-12-31T15:00:00+00:00", ZoneInfo("Asia/Tokyo"), "2027-Q1", "2027-01", id="tokyo"
        ),
    ],
)
def test_periods_at(now: str, zone: ZoneInfo, quarter: str, month: str) -> None:
    """The current quarter and month follow the local calendar date of now."""
    assert tuple(p.label for p in periods_at(ts(now), zone)) == (quarter, month)


@pytest.mark.parametrize(
    ("day", "inside"),
    [
        pytest.param("2026-10-01", True, id="first-day"),
        pytest.param("2026-12-31", True, id="last-day"),
        pytest.param("2026-09-30", False, id="day-before"),
        pytest.param("2027-01-01", False, id="day-after"),
    ],
)
def test_has_day(day: str, inside: bool) -> None:
    """Expected close dates are compared with the period's days, ends included."""
    assert Period.parse("2026-Q4").has_day(day) is inside


def test_current_targets_pick_the_periods_containing_now() -> None:
    """Only targets of the current quarter or month count; a repeated one replaces the earlier."""
    targets = [
        Target(period="2026-Q4", kind="all", amount=Decimal(1000)),
        Target(period="2026-Q3", kind="all", amount=Decimal(900)),
        Target(period="2026-11", kind="expansion", amount=Decimal(300)),
        Target(period="2026-12", kind="expansion", amount=Decimal(400)),
        Target(period="2026-Q4", kind="all", amount=Decimal(1200)),
    ]

    chosen = current_targets(targets, ts("2026-11-15T12:00:00+00:00"), NEW_YORK)

    assert [(p.label, t.kind, t.amount) for p, t in chosen] == [
        ("2026-11", "expansion", Decimal(300)),
        ("2026-Q4", "all", Decimal(1200)),
    ]

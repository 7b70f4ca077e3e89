"""Exact event-time window sums (revmon/kpi/windows.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from revmon.kpi.windows import WindowedSum

DAY = 86_400.0
NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a midnight like CRM date-only exports


@pytest.mark.parametrize(
    ("at", "window", "counted"),
    [
        pytest.param(NOW, 7 * DAY, True, id="at-now-is-inside"),
        pytest.param(NOW - 7 * DAY, 7 * DAY, False, id="exactly-on-the-start-is-outside"),
        pytest.param(NOW - 7 * DAY + 1, 7 * DAY, True, id="one-second-after-the-start"),
        pytest.param(NOW + 1, 7 * DAY, False, id="after-now-is-outside"),
        pytest.param(NOW - 30 * DAY, 30 * DAY, False, id="midnight-on-the-30d-edge"),
        pytest.param(NOW - 29 * DAY, 30 * DAY, True, id="midnight-inside-30d"),
    ],
)
def test_window_is_half_open(at: float, window: float, counted: bool) -> None:
    """A window covers (now - W, now]: the start is excluded and the end included."""
    series = WindowedSum(retention=90 * DAY)
    series.add(at, 5.0)

    assert series.sum(NOW, window) == (5.0 if counted else 0.0)


def test_empty_series_sums_to_zero() -> None:
    """An empty window sums to 0 (the exported series exists at 0)."""
    assert WindowedSum(retention=DAY).sum(NOW, DAY) == 0.0


def test_late_events_are_counted_where_they_belong() -> None:
    """Events added out of time order land in the right windows."""
    series = WindowedSum(retention=90 * DAY)
    for at in (NOW - 1 * DAY, NOW - 40 * DAY, NOW - 8 * DAY, NOW - 1 * DAY, NOW - 3 * DAY):
        series.add(at, 1.0)

    assert [series.sum(NOW, w * DAY) for w in (7, 30, 90)] == [3.0, 4.0, 5.0]
    assert len(series) == 4  # two events at the same instant share one entry


def test_expire_keeps_everything_the_longest_window_sees() -> None:
    """Expiry drops only entries at or before now - retention."""
    series = WindowedSum(retention=30 * DAY)
    series.add(NOW - 30 * DAY, 1.0)
    series.add(NOW - 30 * DAY + 1, 2.0)
    series.expire(NOW)

    assert list(series.entries()) == [(NOW - 30 * DAY + 1, 2.0)]
    assert series.sum(NOW, 30 * DAY) == 2.0


def test_entries_round_trip() -> None:
    """A series rebuilt from its entries answers the same sums."""
    series = WindowedSum(retention=90 * DAY)
    for i in range(50):
        series.add(NOW - i * 3_600.0 * 7, float(i))
    copy = WindowedSum.from_entries(90 * DAY, series.entries())

    assert [copy.sum(NOW, w) for w in (DAY, 7 * DAY, 90 * DAY)] == [
        series.sum(NOW, w) for w in (DAY, 7 * DAY, 90 * DAY)
    ]


@given(
    points=st.lists(
        st.tuples(
            st.integers(min_value=-100 * 86_400, max_value=86_400),
            st.integers(min_value=0, max_value=10_000),
        ),
        max_size=60,
    ),
    window_days=st.integers(min_value=1, max_value=120),
)
def test_matches_a_plain_filter(points: list[tuple[int, int]], window_days: int) -> None:
    """For any events in any order, the sum equals a plain filter over (now - W, now]."""
    series = WindowedSum(retention=365 * DAY)
    for offset, value in points:
        series.add(NOW + offset, float(value))
    window = window_days * DAY
    expected = sum(v for o, v in points if NOW - window < NOW + o <= NOW)

    assert series.sum(NOW, window) == expected

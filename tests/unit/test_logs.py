"""Log throttling: a flood of bad input or bad requests cannot flood the log."""

from __future__ import annotations

import logging

import pytest

from revmon.logs import Throttle, ThrottleFilter


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        pytest.param([0.0] * 2, [(True, 0)] * 2, id="up-to-the-burst"),
        pytest.param([0.0] * 4, [(True, 0)] * 2 + [(False, 0)] * 2, id="over-the-burst"),
        pytest.param(
            [0.0, 1.0, 2.0, 3.0, 60.0, 61.0],
            [(True, 0), (True, 0), (False, 0), (False, 0), (True, 2), (True, 0)],
            id="next-period-reports-the-suppressed",
        ),
        pytest.param([0.0, 100.0, 200.0], [(True, 0)] * 3, id="sparse-never-suppressed"),
    ],
)
def test_throttle_passes_a_burst_per_period(
    times: list[float], expected: list[tuple[bool, int]]
) -> None:
    """`burst` lines per key and period pass; the next period reports how many were left out."""
    throttle = Throttle(burst=2, period=60.0)

    assert [throttle.allow("k", t) for t in times] == expected


def test_keys_are_throttled_separately() -> None:
    """A flood of one kind does not hide the first lines of another."""
    throttle = Throttle(burst=1, period=60.0)

    assert throttle.allow("a", 0.0) == (True, 0)
    assert throttle.allow("a", 0.0) == (False, 0)
    assert throttle.allow("b", 0.0) == (True, 0)


def test_the_filter_keeps_a_burst_of_identical_records() -> None:
    """1,000 identical aiohttp errors within a minute: 10 records pass."""
    records = [
        logging.LogRecord(
            "aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", None, None
        )
        for _ in range(1000)
    ]
    throttle = ThrottleFilter(burst=10, period=60.0)
    passed = [r for r in records if throttle.filter(r)]

    assert len(passed) == 10

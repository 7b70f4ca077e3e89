"""Log throttling: library chatter, a flood of bad input or of bad requests cannot flood the log."""

from __future__ import annotations

import logging

import pytest

from revmon.logs import RateLimit, Throttle, ThrottleFilter


def _record(name: str, msg: str = "Unable connect to node with id %s: %s") -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (111, "refused"), None)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("name", "passed"),
    [
        pytest.param("aiokafka.conn", [True, False, False, True], id="library-throttled"),
        pytest.param("faust.transport", [True, False, False, True], id="faust-throttled"),
        pytest.param("revmon.worker", [True, True, True, True], id="revmon-never"),
    ],
)
def test_a_library_message_passes_once_every_five_seconds(name: str, passed: list[bool]) -> None:
    """The same library message template passes once per 5 s; revmon's records always pass."""
    clock = _Clock()
    throttle = Throttle(every=5.0, clock=clock)
    seen = []
    for at in (0.0, 1.0, 4.9, 5.0):
        clock.now = 1000.0 + at
        seen.append(throttle.filter(_record(name)))

    assert seen == passed


def test_the_record_after_a_quiet_spell_counts_what_was_left_out() -> None:
    """The record let through after repeats carries `suppressed`, the number dropped."""
    clock = _Clock()
    throttle = Throttle(every=5.0, clock=clock)
    for _ in range(4):
        throttle.filter(_record("aiokafka.conn"))
    clock.now += 5.0
    record = _record("aiokafka.conn")

    assert throttle.filter(record)
    assert record.suppressed == 3  # type: ignore[attr-defined]


def test_different_messages_are_throttled_apart() -> None:
    """Two message templates of one logger do not silence each other."""
    throttle = Throttle(every=5.0, clock=_Clock())

    assert throttle.filter(_record("aiokafka.conn", "a %s %s"))
    assert throttle.filter(_record("aiokafka.conn", "b %s %s"))


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
def test_rate_limit_passes_a_burst_per_period(
    times: list[float], expected: list[tuple[bool, int]]
) -> None:
    """`burst` lines per key and period pass; the next period reports how many were left out."""
    throttle = RateLimit(burst=2, period=60.0)

    assert [throttle.allow("k", t) for t in times] == expected


def test_keys_are_throttled_separately() -> None:
    """A flood of one kind does not hide the first lines of another."""
    throttle = RateLimit(burst=1, period=60.0)

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

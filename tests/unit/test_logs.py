"""Library log records are throttled; revmon's own are never."""

from __future__ import annotations

import logging

import pytest

from revmon.logs import Throttle


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

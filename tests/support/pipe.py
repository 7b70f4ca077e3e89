"""A hand-made event history in which the new-business pipeline thins and recovers.

Opportunities of kind `new_business` are created at a steady pace (one of 10,000 a day),
then not at all (the pipe thins: the 30-day created amount falls below 0.6 of the 90-day
pace), then three a day (it recovers). A tools expense every day moves the event clock
through the quiet days. Pace ratio on day d of the gap (d >= 1): (30 - d) / ((90 - d) / 3),
below 0.6 from the 17th day on.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

START = datetime(2026, 1, 1, 12, tzinfo=UTC)


def _day(n: int) -> str:
    return (START + timedelta(days=n)).isoformat()


def steady(first: int, last: int, per_day: int = 1, tag: str = "s") -> Iterator[dict[str, Any]]:
    """Days `first`..`last` (inclusive) with `per_day` new-business opportunities each."""
    for day in range(first, last + 1):
        for i in range(per_day):
            yield {
                "event_id": f"{tag}-opp-{day}-{i}",
                "type": "opportunity.created",
                "occurred_at": _day(day),
                "opportunity_id": f"{tag}-{day}-{i}",
                "amount": 10000,
                "kind": "new_business",
                "account_id": f"acct-{day % 7}",
            }
        yield from quiet(day, day, tag)


def quiet(first: int, last: int, tag: str = "q") -> Iterator[dict[str, Any]]:
    """Days `first`..`last` with only a small expense each (the clock moves, nothing is created)."""
    for day in range(first, last + 1):
        yield {
            "event_id": f"{tag}-exp-{day}",
            "type": "expense.recorded",
            "occurred_at": _day(day),
            "category": "tools",
            "amount": 1,
        }


def write(path: Path, events: Iterator[dict[str, Any]]) -> Path:
    """Write events as JSON lines."""
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return path


def day(n: int) -> datetime:
    """The instant of day `n` of the history."""
    return START + timedelta(days=n)

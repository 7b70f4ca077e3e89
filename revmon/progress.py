"""Progress of long commands on a terminal: events done, rate, time left (tqdm).

Quiet when standard error is not a terminal (a pipe, a file, CI): tqdm's `disable=None`
checks that, so logs and captured output never fill with redrawn bars.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

#: Adds that many events to the bar.
Advance = Callable[[int], None]


@contextmanager
def progress(total: int | None, desc: str, unit: str = "events") -> Iterator[Advance]:
    """A bar on standard error while the block runs; yields the function that advances it."""
    with tqdm(
        total=total,
        desc=desc,
        unit=f" {unit}",
        unit_scale=True,
        disable=None,  # off when stderr is not a TTY
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    ) as bar:

        def advance(n: int) -> None:
            bar.update(n)

        yield advance


def lines_in(path: Path) -> int:
    """How many lines a file has (the total of a bar over it); 0 when it cannot be read."""
    try:
        with path.open("rb") as handle:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    except OSError:
        return 0


def over_days(
    events: Iterable[dict[str, Any]], start: datetime, days: int, desc: str
) -> Iterator[dict[str, Any]]:
    """`events` unchanged, with a bar over the simulated days they reach (time left by day)."""
    began = start.timestamp()
    done = 0
    with tqdm(
        total=days,
        desc=desc,
        unit=" days",
        disable=None,
        file=sys.stderr,
        dynamic_ncols=True,
        leave=False,
    ) as bar:
        for count, event in enumerate(events, start=1):
            at = event.get("occurred_at")
            if isinstance(at, str):
                day = int((datetime.fromisoformat(at).timestamp() - began) // 86400)
                if day > done:
                    bar.update(min(day, days) - done)
                    bar.set_postfix(events=count, refresh=False)
                    done = min(day, days)
            yield event

"""Event-time windows: exact sums over `(now - W, now]` for every configured window `W`.

SPEC's window rule is half-open: an event exactly on `now - W` is outside, one exactly on
`now` is inside. CRM exports stamp many events at midnight, so the edge matters and a
bucketed approximation would be wrong exactly where the data is densest. Entries are
therefore kept per distinct event time (events with the same `occurred_at` share one
entry) for as long as the longest window, and a sum is taken when it is read. Reading
is O(entries in the window), a few milliseconds per scrape for a year of data.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class WindowedSum:
    """Values at event times; `sum(now, W)` is the total of those in `(now - W, now]`.

    `retention` is the longest window that will be asked for; older entries are dropped
    by `expire(now)`, never by `add`, so late events inside the retention still count.
    """

    retention: float
    _times: list[float] = field(default_factory=list)
    _values: list[float] = field(default_factory=list)

    def add(self, at: float, value: float = 1.0) -> None:
        """Record `value` at event time `at` (any order; in order is the fast path)."""
        times = self._times
        if not times or at > times[-1]:
            times.append(at)
            self._values.append(value)
            return
        i = bisect_left(times, at)
        if i < len(times) and times[i] == at:
            self._values[i] += value
        else:
            times.insert(i, at)
            self._values.insert(i, value)

    def sum(self, now: float, window: float) -> float:
        """The exact total of values with `now - window < at <= now`."""
        lo = bisect_right(self._times, now - window)
        hi = bisect_right(self._times, now)
        return math.fsum(self._values[lo:hi])

    def expire(self, now: float) -> None:
        """Forget entries that no window can see any more (`at <= now - retention`)."""
        cut = bisect_right(self._times, now - self.retention)
        if cut:
            del self._times[:cut]
            del self._values[:cut]

    def entries(self) -> Iterator[tuple[float, float]]:
        """(time, value) pairs in time order: what a snapshot of this series stores."""
        return zip(self._times, self._values, strict=True)

    @classmethod
    def from_entries(cls, retention: float, entries: Iterable[tuple[float, float]]) -> WindowedSum:
        """Rebuild a series from `entries()`."""
        series = cls(retention)
        for at, value in entries:
            series.add(at, value)
        return series

    def __len__(self) -> int:
        return len(self._times)

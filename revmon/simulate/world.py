"""The simulation clock: pending actions on a heap, one seeded RNG, ids and event stamps.

Actions run in (time, scheduling order), and an action only emits events at its own time
and schedules others at or after it, so the events come out sorted by `occurred_at` with
ties in a deterministic order. Times are whole unix seconds.
"""

from __future__ import annotations

import calendar
import heapq
import math
import random
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from revmon.simulate.config import SimulationConfig
from revmon.simulate.model import Account

DAY = 86_400
HOUR = 3_600
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Action = Callable[..., None]


class World:
    """The simulation's state shared by every domain: clock, randomness, ids, totals."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)  # noqa: S311 - a simulation, not cryptography
        self.start = math.floor(config.start.timestamp())
        self.end = self.start + config.days * DAY
        self.now = self.start
        self.mrr = 0.0  # of active subscriptions, for costs that grow with the customer base
        self.prospects: list[Account] = []
        self.market: list[Account] = []  # every account seen, up to `config.market`
        self.accounts_seen = 0
        self._heap: list[tuple[int, int, Action, tuple[Any, ...]]] = []
        self._seq = 0
        self._emitted = 0
        self._ids: dict[str, int] = {}
        self._out: list[dict[str, Any]] = []
        self._day = -1
        self._day_text = ""

    def at(self, t: int, action: Action, *args: Any) -> None:
        """Run `action(world, *args)` at `t` (never earlier than now)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.now), self._seq, action, args))

    def run(self) -> Iterator[dict[str, Any]]:
        """Run every action due before the end, yielding the events each one emits."""
        heap, out = self._heap, self._out
        while heap and heap[0][0] < self.end:
            t, _, action, args = heapq.heappop(heap)
            self.now = t
            action(self, *args)
            if out:
                yield from out
                out.clear()

    def emit(self, event_type: str, source: str, /, **fields: Any) -> None:
        """Stamp an event at now; fields that are None are left out."""
        self._emitted += 1
        event: dict[str, Any] = {
            "event_id": f"sim-{self.config.seed}-{self._emitted}",
            "type": event_type,
            "occurred_at": self.stamp(self.now),
            "source": source,
        }
        for name, value in fields.items():
            if value is not None:
                event[name] = value
        self._out.append(event)

    def new_id(self, prefix: str) -> str:
        """The next id of an entity kind, e.g. `lead-000042`."""
        n = self._ids.get(prefix, 0) + 1
        self._ids[prefix] = n
        return f"{prefix}-{n:06d}"

    def stamp(self, t: int) -> str:
        """RFC 3339 in UTC with `Z`; the date part is cached because times only move forward."""
        day, second = divmod(t, DAY)
        if day != self._day:
            self._day, self._day_text = day, date_text(t)
        hours, rest = divmod(second, HOUR)
        return f"{self._day_text}T{hours:02d}:{rest // 60:02d}:{rest % 60:02d}Z"

    def chance(self, p: float) -> bool:
        """True with probability `p`."""
        return self.rng.random() < p

    def pick(self, items: Sequence[Any]) -> Any:
        """One of `items`, uniformly."""
        return items[self.rng.randrange(len(items))]

    def later(self, median_days: float, sigma: float = 0.6) -> int:
        """A working moment a lognormal number of days from now (CRM delays are skewed)."""
        days = self.rng.lognormvariate(math.log(median_days), sigma)
        return self.working(self.now + int(days * DAY))

    def soon(self, mean_days: float) -> int:
        """A working moment an exponential number of days from now (touches arrive at random)."""
        return self.working(self.now + int(self.rng.expovariate(1.0 / mean_days) * DAY))

    def working(self, t: int) -> int:
        """A moment in business hours (08-18 UTC, Monday to Friday) on or after `t`'s day."""
        day = t // DAY
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
        if weekday >= 5:
            day += 7 - weekday
        moment = day * DAY + int(self.rng.triangular(8.0, 18.0, 13.0) * HOUR)
        return max(moment, self.now + self.rng.randrange(60, HOUR))

    def poisson(self, lam: float) -> int:
        """A Poisson count (normal approximation for large means)."""
        if lam <= 0:
            return 0
        if lam > 30:
            return max(0, round(self.rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, self.rng.random()
        while p > limit:
            k += 1
            p *= self.rng.random()
        return k


def nth(values: Sequence[float], i: int) -> float:
    """The value for stage position `i`; the last one repeats for longer funnels."""
    return values[min(i, len(values) - 1)]


def money(amount: float) -> str:
    """A decimal string with cents, as billing systems export amounts."""
    return f"{max(amount, 0.0):.2f}"


def moment(t: int) -> datetime:
    """Unix seconds as an aware UTC datetime."""
    return _EPOCH + timedelta(seconds=t)


def date_text(t: int) -> str:
    """The UTC date of `t` as YYYY-MM-DD."""
    return moment(t).date().isoformat()


def add_months(t: int, months: int) -> int:
    """`t` moved by whole calendar months, the day clamped to the month's length."""
    when = moment(t)
    years, month0 = divmod(when.month - 1 + months, 12)
    year = when.year + years
    day = min(when.day, calendar.monthrange(year, month0 + 1)[1])
    return int((when.replace(year=year, month=month0 + 1, day=day) - _EPOCH).total_seconds())

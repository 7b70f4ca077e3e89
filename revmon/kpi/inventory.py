"""Funnel inventory (SPEC §3.1): open entities per stage, their ages and staleness at any `now`.

Derived state: the funnel book rebuilds it from its `Records` on load and never journals
it. A scrape must not walk a million open leads, so each stage keeps its entry times in
a sorted multiset (count by bisection, O(log n)) plus the exact sum of entry times
(Σ ages = n·now − Σ entered_at, O(1)). The sum is an integer of microseconds, so adding
and removing entities in any order never drifts from a fresh rebuild.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from sortedcontainers import SortedList  # untyped: see the mypy overrides in pyproject.toml

from revmon.kpi.ledger import Sample, component

DAY = 86_400.0
#: Upper bounds (seconds) of `revmon_funnel_age_seconds_bucket`, SPEC §3.1.
AGE_BUCKETS: tuple[float, ...] = (
    *(days * DAY for days in (1, 3, 7, 14, 30, 60, 90, 180, 365)),
    math.inf,
)
_MICROS = 1_000_000

# Components of the funnel book's `partials()`: `component(name, *labels)`.
OPEN = "revmon_funnel_open"  # funnel, stage
AGE_BUCKET = "revmon_funnel_age_seconds_bucket"  # funnel, stage, le (as `le_label` writes it)
AGE_SUM = "revmon_funnel_age_seconds_gsum"  # funnel, stage
STALE = "revmon_funnel_stale"  # funnel, stage


def le_label(bound: float) -> str:
    """`bound` as Prometheus writes `le`: Go's float format (`86400.0`, `1.2096e+06`, `+Inf`).

    Mirrors `prometheus_client.utils.floatToGoString`, which kpi code may not import.
    """
    if bound == math.inf:
        return "+Inf"
    text = repr(float(bound))
    dot = text.find(".")
    if bound > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+0{dot - 1}"
    return text


def _micros(at: float) -> int:
    # Event times come from datetimes: whole microseconds, recovered exactly by rounding.
    return round(at * _MICROS)


class OpenStage:
    """The entry times of the entities now in one open stage (a multiset).

    With `expire` (SPEC §2, v2), an entity that entered at `e` has left the stage at
    `e + expire` unless something held it (those are kept in a stage without `expire`):
    every count and sum at `now` leaves out the entry times `e` with `e + expire <= now`,
    without changing the set, so the answer is a function of `now` alone. The sum of the
    expired entry times comes from a cursor that walks only the entries crossed since the
    previous `now` (amortised O(1) per entity, not O(expired) per scrape).
    """

    __slots__ = ("_cursor", "_cursor_micros", "_micros", "_times", "expire")

    def __init__(self, times: Iterable[float] = (), expire: float | None = None) -> None:
        self._times = SortedList(times)
        self._micros: int = sum(_micros(at) for at in self._times)
        self.expire = expire
        # Σ micros of `_times[:_cursor]`, the entries up to the last cut asked for.
        self._cursor = 0
        self._cursor_micros = 0

    def add(self, at: float) -> None:
        """An entity entered the stage at `at`."""
        if int(self._times.bisect_right(at)) < self._cursor:
            self._cursor += 1
            self._cursor_micros += _micros(at)
        self._times.add(at)
        self._micros += _micros(at)

    def remove(self, at: float) -> None:
        """An entity that entered at `at` left the stage.

        Raises:
            ValueError: no entity entered at `at` (the index disagrees with the records).
        """
        self._times.remove(at)
        self._micros -= _micros(at)
        if int(self._times.bisect_left(at)) < self._cursor:
            self._cursor -= 1
            self._cursor_micros -= _micros(at)

    def _cut(self, now: float) -> int:
        """How many entries have expired at `now` (`e + expire <= now`)."""
        return 0 if self.expire is None else self._through(now, self.expire)

    def _through(self, end: float, expire: float) -> int:
        """How many entries have `e + expire <= end`: SPEC's test, exactly as written.

        `e <= end - expire` is the same test in exact arithmetic; bisecting on it and then
        stepping over the few entries where float rounding disagrees keeps the answer equal
        to the deadline comparison the funnel makes when an event arrives.
        """
        times = self._times
        i = int(times.bisect_right(end - expire))
        while i > 0 and times[i - 1] + expire > end:
            i -= 1
        while i < len(times) and times[i] + expire <= end:
            i += 1
        return i

    def _micros_before(self, index: int) -> int:
        """Σ micros of the first `index` entries, moving the cursor there."""
        times = self._times
        while self._cursor < index:
            self._cursor_micros += _micros(times[self._cursor])
            self._cursor += 1
        while self._cursor > index:
            self._cursor -= 1
            self._cursor_micros -= _micros(times[self._cursor])
        return self._cursor_micros

    def count(self, now: float) -> int:
        """How many are in the stage at `now`."""
        return len(self._times) - self._cut(now)

    def aged_at_most(self, now: float, age: float) -> int:
        """How many have `now - entered_at <= age` (every one for `age` = inf)."""
        young = int(self._times.bisect_left(now - age))
        return len(self._times) - max(young, self._cut(now))

    def aged_over(self, now: float, age: float) -> int:
        """How many have `now - entered_at > age` (stale past an SLA of `age`)."""
        return max(0, int(self._times.bisect_left(now - age)) - self._cut(now))

    def age_micros(self, now: float) -> int:
        """Σ (now - entered_at) over the stage's entities at `now`, in whole microseconds."""
        cut = self._cut(now)
        live = len(self._times) - cut
        return live * _micros(now) - (self._micros - self._micros_before(cut))

    def age_sum(self, now: float) -> float:
        """Σ (now - entered_at) over the stage's entities at `now`."""
        return self.age_micros(now) / _MICROS

    def expired_between(self, start: float, end: float) -> int:
        """How many expired (left the stage) at a time in `(start, end]`."""
        if self.expire is None:
            return 0
        return self._through(end, self.expire) - self._through(start, self.expire)

    def __len__(self) -> int:
        return len(self._times)


def inventory_partials(
    funnel: str, stage: str, entities: Iterable[OpenStage], sla: float | None, now: float
) -> dict[str, float]:
    """The summable inventory components of one open stage at `now` (no SLA: never stale).

    `entities` are the stage's sets (expiring and not), counted together.
    """
    sets = tuple(entities)
    out = {component(OPEN, funnel, stage): float(sum(s.count(now) for s in sets))}
    for bound in AGE_BUCKETS:
        count = sum(s.aged_at_most(now, bound) for s in sets)
        out[component(AGE_BUCKET, funnel, stage, le_label(bound))] = float(count)
    out[component(AGE_SUM, funnel, stage)] = sum(s.age_micros(now) for s in sets) / _MICROS
    stale = 0 if sla is None else sum(s.aged_over(now, sla) for s in sets)
    out[component(STALE, funnel, stage)] = float(stale)
    return out


def inventory_samples(
    funnel: str, stages: Iterable[str], partials: Mapping[str, float]
) -> list[Sample]:
    """The §3.1 series of `funnel`'s open stages from summed partials (0 when absent).

    `_gcount` is the open count; the stale ratio only where something is open.
    """
    out: list[Sample] = []
    for stage in stages:
        labels = (("funnel", funnel), ("stage", stage))
        count = partials.get(component(OPEN, funnel, stage), 0.0)
        stale = partials.get(component(STALE, funnel, stage), 0.0)
        out.append(Sample("revmon_funnel_open", labels, count))
        for bound in AGE_BUCKETS:
            le = le_label(bound)
            value = partials.get(component(AGE_BUCKET, funnel, stage, le), 0.0)
            out.append(Sample("revmon_funnel_age_seconds_bucket", (*labels, ("le", le)), value))
        out.append(Sample("revmon_funnel_age_seconds_gcount", labels, count))
        age_sum = partials.get(component(AGE_SUM, funnel, stage), 0.0)
        out.append(Sample("revmon_funnel_age_seconds_gsum", labels, age_sum))
        out.append(Sample("revmon_funnel_stale", labels, stale))
        if count > 0:
            out.append(Sample("revmon_funnel_stale_ratio", labels, stale / count))
    return out

"""The two containers every metric book keeps its state in, with change tracking for the journal.

A book (funnel, pipeline, finance, ...) owns no storage logic: it keeps entity records in
`Records` and event-time series in `Windows`. Both remember what changed since the last
`drain()`, which is what the worker writes to its state journal once per batch; `load()`
rebuilds them from a snapshot or from journal records. Values must be JSON-able
(str, int, float, bool, None, lists of those).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from revmon.kpi.windows import WindowedSum

Value = Any  # a JSON-able record: a list or tuple of primitives


@dataclass(slots=True)
class Records:
    """Records by id (e.g. leads by `lead_id`), remembering the ids changed since `drain()`."""

    _data: dict[str, Value] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)

    def get(self, key: str) -> Value | None:
        """The record of `key`, or None."""
        return self._data.get(key)

    def put(self, key: str, value: Value) -> None:
        """Create or replace the record of `key`."""
        self._data[key] = value
        self._dirty.add(key)

    def delete(self, key: str) -> None:
        """Forget `key` (a tombstone in the journal)."""
        if self._data.pop(key, None) is not None:
            self._dirty.add(key)

    def items(self) -> Iterator[tuple[str, Value]]:
        """Every (id, record)."""
        return iter(self._data.items())

    def drain(self) -> dict[str, Value | None]:
        """The changes since the last drain: id → new record, or None when deleted."""
        changes = {key: self._data.get(key) for key in self._dirty}
        self._dirty.clear()
        return changes

    def load(self, changes: Iterable[tuple[str, Value | None]]) -> None:
        """Apply drained changes (in order), without marking them dirty."""
        for key, value in changes:
            if value is None:
                self._data.pop(key, None)
            else:
                self._data[key] = value

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data


class Point(NamedTuple):
    """One added value of one series at one event time."""

    key: str
    at: float
    value: float


@dataclass(slots=True)
class Windows:
    """Event-time series by key (e.g. `entries|lead|mql`), summed over windows when read."""

    retention: float
    _series: dict[str, WindowedSum] = field(default_factory=dict)
    _added: list[Point] = field(default_factory=list)

    def add(self, key: str, at: float, value: float = 1.0) -> None:
        """Add `value` to series `key` at event time `at`."""
        self._series_for(key).add(at, value)
        self._added.append(Point(key, at, value))

    def sum(self, key: str, now: float, window: float) -> float:
        """Total of series `key` over `(now - window, now]` (0 for an unknown series)."""
        series = self._series.get(key)
        return 0.0 if series is None else series.sum(now, window)

    def keys(self) -> Iterator[str]:
        """Every series key."""
        return iter(self._series)

    def expire(self, now: float) -> None:
        """Forget what no window can see any more."""
        for series in self._series.values():
            series.expire(now)

    def drain(self) -> list[Point]:
        """The points added since the last drain, in order."""
        added, self._added = self._added, []
        return added

    def load(self, points: Iterable[tuple[str, float, float]]) -> None:
        """Apply drained points without marking them as added."""
        for key, at, value in points:
            self._series_for(key).add(at, value)

    def point_count(self) -> int:
        """How many (series, time) entries are stored."""
        return sum(len(series) for series in self._series.values())

    def snapshot(self) -> Iterator[Point]:
        """Every stored point: what a snapshot of these series writes."""
        for key, series in self._series.items():
            for at, value in series.entries():
                yield Point(key, at, value)

    def _series_for(self, key: str) -> WindowedSum:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = WindowedSum(self.retention)
        return series


class Sample(NamedTuple):
    """One exported series value: metric name, labels in order, value."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The exported series at one evaluation instant `now` (unix seconds)."""

    now: float
    samples: list[Sample]


def component(name: str, *labels: str) -> str:
    """The key of a summable component in `partials()`: `name|label1|label2...`."""
    return "|".join((name, *labels))


def add_up(parts: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Components added key by key, exactly rounded (`math.fsum`), whatever the order."""
    values: dict[str, list[float]] = {}
    for part in parts:
        for key, value in part.items():
            values.setdefault(key, []).append(value)
    return {key: math.fsum(items) for key, items in values.items()}

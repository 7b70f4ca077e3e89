"""Expiries not yet written into the state (SPEC §2, v2), tallied at any `now` in O(change).

An entity that expires is only moved in the state when the next event about it arrives
(`revmon.kpi.funnel`): most expired entities never hear of again, so a book keeps them
where they were and answers "as of `now`" by leaving out, or adding in, every pending
expiry whose deadline is at or before a cut (`now`, or a window's start `now - W`).

`Deadlines` keeps each pending entity's deadline and its contributions (a small mapping
of summable numbers, such as its open amount under its kind and stage), and one cursor
per cut offset that holds the exact totals of the contributions with a deadline at or
before its last cut. Moving a cut walks only the deadlines crossed since the previous
`now`, so a scrape costs what changed, not how many entities ever expired. Totals are
`Decimal`s with 80 digits: adding and taking away in any order never drifts, so a
restarted worker agrees with one that ran through.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Context, Decimal

from sortedcontainers import SortedList  # untyped: see the mypy overrides in pyproject.toml

_EXACT = Context(prec=80)
Contribution = Mapping[str, Decimal]


class _Cursor:
    """The totals of the contributions whose deadline is at or before `cut`."""

    __slots__ = ("count", "cut", "totals")

    def __init__(self) -> None:
        self.cut = -math.inf
        self.count = 0  # how many deadlines are at or before `cut`
        self.totals: dict[str, Decimal] = {}

    def add(self, contribution: Contribution, sign: int) -> None:
        totals = self.totals
        for key, value in contribution.items():
            total = totals.get(key, Decimal(0))
            totals[key] = _EXACT.add(total, value) if sign > 0 else _EXACT.subtract(total, value)
            if not totals[key]:
                del totals[key]
        self.count += sign


class Deadlines:
    """Pending expiries of one book: entity → (deadline, contribution), tallied per cut offset."""

    def __init__(self) -> None:
        self._keys = SortedList()  # (deadline, entity)
        self._pending: dict[str, tuple[float, Contribution]] = {}
        self._cursors: dict[float, _Cursor] = {}

    def add(self, entity: str, deadline: float, contribution: Contribution) -> None:
        """`entity` expires at `deadline` unless removed first; it then contributes this."""
        self.remove(entity)
        self._pending[entity] = (deadline, contribution)
        self._keys.add((deadline, entity))
        for cursor in self._cursors.values():
            if deadline <= cursor.cut:
                cursor.add(contribution, +1)

    def remove(self, entity: str) -> None:
        """`entity` no longer expires as it was added (it moved, was held, or closed)."""
        found = self._pending.pop(entity, None)
        if found is None:
            return
        deadline, contribution = found
        self._keys.remove((deadline, entity))
        for cursor in self._cursors.values():
            if deadline <= cursor.cut:
                cursor.add(contribution, -1)

    def through(self, now: float, offset: float = 0.0) -> Mapping[str, Decimal]:
        """The totals of the pending expiries with a deadline at or before `now - offset`.

        Each offset has its own cursor, so asking for the same offsets at a later `now`
        walks only the deadlines passed in between.
        """
        cursor = self._cursors.get(offset)
        if cursor is None:
            cursor = self._cursors[offset] = _Cursor()
        cut = now - offset
        keys = self._keys
        end = int(keys.bisect_left((math.nextafter(cut, math.inf),)))
        while cursor.count < end:
            cursor.add(self._pending[keys[cursor.count][1]][1], +1)
        while cursor.count > end:
            cursor.add(self._pending[keys[cursor.count - 1][1]][1], -1)
        cursor.cut = cut
        return cursor.totals

    def between(self, now: float, offset: float) -> dict[str, Decimal]:
        """The totals of the pending expiries dated inside the window `(now - offset, now]`."""
        end = self.through(now)
        start = self.through(now, offset)
        keys = end.keys() | start.keys()
        out = {k: _EXACT.subtract(end.get(k, Decimal(0)), start.get(k, Decimal(0))) for k in keys}
        return {k: v for k, v in out.items() if v}

    def __len__(self) -> int:
        return len(self._pending)

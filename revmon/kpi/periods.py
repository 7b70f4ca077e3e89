"""Calendar periods of revenue targets (SPEC §3.4, §8): quarters and months in the configured zone.

A target names a calendar quarter (`2026-Q4`) or month (`2026-11`). Its period starts at
local midnight of its first day in `settings.timezone` and ends at local midnight after
its last day, so a company in New York closes Q3 at 04:00 UTC on 1 October. Expected
close dates are plain dates and are compared with the period's days, not with instants.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from revmon.settings import Target

_LABEL = re.compile(r"^(\d{4})-(?:Q([1-4])|(0[1-9]|1[0-2]))$")


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar quarter or month: its label and its first and last day (inclusive)."""

    label: str
    first: date
    last: date

    @classmethod
    def parse(cls, label: str) -> Period:
        """The period of a label such as `2026-Q4` or `2026-11`.

        Raises:
            ValueError: the label is neither a quarter nor a month.
        """
        match = _LABEL.match(label)
        if match is None:
            raise ValueError(f"not a quarter or month label: {label!r}")
        year = int(match.group(1))
        if match.group(2) is not None:
            first_month, months = 3 * int(match.group(2)) - 2, 3
        else:
            first_month, months = int(match.group(3)), 1
        return cls(label, date(year, first_month, 1), _month_after(year, first_month + months - 1))

    def start(self, zone: ZoneInfo) -> float:
        """Unix seconds of local midnight starting the first day (the first instant inside)."""
        return _midnight(self.first, zone)

    def end(self, zone: ZoneInfo) -> float:
        """Unix seconds of local midnight after the last day (the first instant outside)."""
        return _midnight(self.last + timedelta(days=1), zone)

    def has_day(self, day: str) -> bool:
        """True when the ISO date `day` (`2026-11-30`) is one of the period's days."""
        return self.first.isoformat() <= day <= self.last.isoformat()


def _month_after(year: int, month: int) -> date:
    """The last day of `month` of `year`."""
    following = date(year + month // 12, month % 12 + 1, 1)
    return following - timedelta(days=1)


def _midnight(day: date, zone: ZoneInfo) -> float:
    # fold=0: where a DST jump skips midnight, this is the first instant of the day.
    return datetime.combine(day, time(), tzinfo=zone).timestamp()


def periods_at(now: float, zone: ZoneInfo) -> tuple[Period, Period]:
    """The quarter and the month containing the instant `now` in `zone`."""
    day = datetime.fromtimestamp(now, tz=zone).date()
    quarter = (day.month - 1) // 3 + 1
    return Period.parse(f"{day.year}-Q{quarter}"), Period.parse(f"{day.year}-{day.month:02d}")


def current_targets(
    targets: Iterable[Target], now: float, zone: ZoneInfo
) -> list[tuple[Period, Target]]:
    """The configured targets whose period contains `now`, in configuration order.

    Two targets for the same period and kind would be one series twice; the later one wins.
    """
    current = {period.label: period for period in periods_at(now, zone)}
    chosen: dict[tuple[str, str], tuple[Period, Target]] = {}
    for target in targets:
        period = current.get(target.period)
        if period is not None:
            chosen.pop((target.period, target.kind), None)
            chosen[(target.period, target.kind)] = (period, target)
    return list(chosen.values())

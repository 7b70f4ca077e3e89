"""The report's samples from a JSON-lines history, replayed through the real pipeline.

The file is replayed as `revmon replay` does (embedded broker unless configured, event
clock, throw-away state), cut into slices at every midnight of the report's time zone:
the alert rules are evaluated after each day, as a replay does by default, and at each
week's end the worker's exposition is read, as Prometheus would have scraped it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from revmon.app import Revmon
from revmon.broker import broker_for
from revmon.errors import InputFileError, RevmonError
from revmon.exposition import render
from revmon.produce import ProduceReport, check_readable, read_lines
from revmon.progress import progress
from revmon.replay import Cutoff, replay_on, replay_settings
from revmon.report.samples import (
    AlertChange,
    Samples,
    Week,
    changes_between,
    last_week_end,
    midnight,
    parse_exposition,
    week_ends,
    week_start,
)
from revmon.settings import Settings


@dataclass(frozen=True, slots=True)
class Span:
    """The event times of a file's lines that a replay keeps: first and last."""

    first: float
    last: float
    lines: int  # lines kept


def span(path: Path, settings: Settings, until: Cutoff | None) -> Span:
    """First and last occurred_at of the lines kept by `until`.

    Raises:
        InputFileError: the file cannot be read or has no line with an occurred_at.
    """
    first = last = None
    kept = 0
    for line in read_lines(path, settings.topics):
        if line.at is None or (until is not None and not until.admits(line.at)):
            continue
        kept += 1
        first = line.at if first is None else min(first, line.at)
        last = line.at if last is None else max(last, line.at)
    if first is None or last is None:
        raise InputFileError(f"{path} has no event with a readable occurred_at")
    return Span(first, last, kept)


def plan(span: Span, zone: ZoneInfo, count: int, until: Cutoff | None) -> list[datetime]:
    """The week ends to report: `count` Mondays, the last one the latest complete week's end.

    A week is complete when the history (up to `until`) reaches its end; weeks that end
    before the first event are left out.
    """
    newest = span.last if until is None else min(span.last, until.at)
    last = last_week_end(datetime.fromtimestamp(newest, zone), zone)
    ends = [end for end in week_ends(last, count) if end.timestamp() > span.first]
    if not ends:
        raise InputFileError(
            "the history does not cover a whole week (Monday to Monday in "
            f"{zone.key}) before {last:%Y-%m-%d}"
        )
    return ends


def midnights(first: float, last: datetime) -> list[float]:
    """Every midnight after `first` up to `last`, in `last`'s zone, as unix seconds."""
    zone = last.tzinfo
    assert isinstance(zone, ZoneInfo)
    day: date = datetime.fromtimestamp(first, zone).date() + timedelta(days=1)
    out = []
    while (moment := midnight(day, zone)) <= last:
        out.append(moment.timestamp())
        day += timedelta(days=1)
    return out


class _Recorder:
    """Reads the exposition at each wanted week end, as the replay passes it."""

    def __init__(self, ends: list[datetime]) -> None:
        self.ends = ends
        self.samples: dict[datetime, Samples] = {}

    def __call__(self, report: ProduceReport, revmon: Revmon, final: bool) -> None:
        due = [
            end
            for end in self.ends
            if end not in self.samples
            and (final or (report.passed is not None and end.timestamp() <= report.passed))
        ]
        if due:
            taken = parse_exposition(render(revmon.registry))
            for end in due:
                self.samples[end] = taken


def from_log(
    path: Path,
    settings: Settings,
    *,
    weeks: int,
    until: Cutoff | None = None,
    batch: int = 500,
    timeout: float = 3600.0,
) -> list[Week]:
    """The weeks of the report from a replay of `path`, oldest first (with a progress bar
    on a terminal).

    Raises:
        InputFileError: the file cannot be read, or covers no whole week.
        RevmonError: the replay did not catch up within `timeout`.
    """
    check_readable(path)
    zone = ZoneInfo(settings.timezone)
    kept = span(path, settings, until)
    ends = plan(kept, zone, weeks, until)
    last = ends[-1]
    edges = midnights(kept.first, last)
    recorder = _Recorder(ends)
    settings = replay_settings(settings)
    cut = last.timestamp()
    with (
        broker_for(settings) as servers,
        progress(kept.lines, "report: replaying") as advance,
    ):
        result = asyncio.run(
            replay_on(
                servers,
                path,
                settings,
                batch=batch,
                limit=timeout,
                edges=edges,
                admit=lambda at: at < cut,
                observe=recorder,
                progress=advance,
            )
        )
    if not result.caught_up:
        raise RevmonError(f"the replay did not catch up within {timeout:.0f}s")
    changes = [AlertChange.from_message(m) for m in result.alerts]
    return [
        Week(
            end,
            recorder.samples.get(end, Samples()),
            changes_between(changes, week_start(end), end),
        )
        for end in ends
    ]

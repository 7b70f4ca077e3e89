"""What the report renders from: one snapshot of revmon's series at the end of each week.

A snapshot is a plain mapping from a series (name and sorted labels) to its value, the same
whether it was parsed from a replay's exposition or read from Prometheus, so the rendering
never sees where the numbers came from (STYLE: the report renders from samples).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Labels]


def key(name: str, labels: Mapping[str, str]) -> SeriesKey:
    """The key of a series: its name and its labels, sorted."""
    return name, tuple(sorted(labels.items()))


@dataclass(frozen=True, slots=True)
class Samples:
    """The value of every series at one instant."""

    values: Mapping[SeriesKey, float] = field(default_factory=dict)

    def get(self, name: str, **labels: str) -> float | None:
        """The value of the series with exactly these labels, or None when it is absent."""
        return self.values.get(key(name, labels))

    def select(self, name: str, **labels: str) -> dict[Labels, float]:
        """Every series of `name` whose labels include `labels`, by its full labels."""
        wanted = set(labels.items())
        return {
            series_labels: value
            for (series_name, series_labels), value in self.values.items()
            if series_name == name and wanted <= set(series_labels)
        }

    def total(self, name: str, **labels: str) -> float | None:
        """The sum of every series of `name` matching `labels`; None when there is none."""
        found = self.select(name, **labels)
        return sum(found.values()) if found else None

    def by(self, label: str, name: str, **labels: str) -> dict[str, float]:
        """The sum of the matching series of `name` per value of `label`."""
        out: dict[str, float] = {}
        for series_labels, value in self.select(name, **labels).items():
            group = dict(series_labels).get(label)
            if group is not None:
                out[group] = out.get(group, 0.0) + value
        return out


def parse_exposition(text: bytes | str) -> Samples:
    """The samples of a Prometheus text exposition (what `/metrics` or a replay writes)."""
    if isinstance(text, bytes):
        text = text.decode()
    values: dict[SeriesKey, float] = {}
    for metric in text_string_to_metric_families(text):
        for sample in metric.samples:
            values[key(sample.name, sample.labels)] = float(sample.value)
    return Samples(values)


@dataclass(frozen=True, slots=True)
class AlertChange:
    """An alert that started firing or resolved (a message of the alerts topic, SPEC §6)."""

    alertname: str
    status: str  # firing | resolved
    labels: Mapping[str, str]
    summary: str
    at: float  # when it started firing (starts_at) or resolved (ends_at), unix seconds

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> AlertChange:
        """The change an alerts-topic message announces."""
        status = str(message["status"])
        stamp = message["ends_at"] if status == "resolved" else message["starts_at"]
        labels = {str(k): str(v) for k, v in dict(message.get("labels", {})).items()}
        annotations = dict(message.get("annotations", {}))
        return cls(
            alertname=str(message["alertname"]),
            status=status,
            labels=labels,
            summary=str(annotations.get("summary", "")),
            at=datetime.fromisoformat(str(stamp)).timestamp(),
        )


@dataclass(frozen=True, slots=True)
class Week:
    """One reviewed week: its end, the series as of then, and the alert changes inside it.

    `changes` is None when the source cannot know them (it then says so on the page).
    """

    end: datetime  # Monday 00:00 in the report's time zone; the week is [end - 7d, end)
    samples: Samples
    changes: tuple[AlertChange, ...] | None = None

    @property
    def start(self) -> datetime:
        """Monday 00:00 of the week (the same wall time a week earlier, across DST)."""
        return week_start(self.end)


def week_start(end: datetime) -> datetime:
    """The Monday 00:00, seven calendar days before `end`, in `end`'s zone."""
    zone = end.tzinfo
    return datetime.combine(end.date() - timedelta(days=7), time(), tzinfo=zone)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """00:00 of `day` in `zone`."""
    return datetime.combine(day, time(), tzinfo=zone)


def week_ends(last: datetime, count: int) -> list[datetime]:
    """The `count` week ends (Mondays 00:00) up to and including `last`, oldest first."""
    zone = last.tzinfo
    return [
        datetime.combine(last.date() - timedelta(days=7 * i), time(), tzinfo=zone)
        for i in reversed(range(count))
    ]


def last_week_end(moment: datetime, zone: ZoneInfo) -> datetime:
    """The latest Monday 00:00 in `zone` at or before `moment`: the end of the last full week."""
    local = moment.astimezone(zone)
    monday = local.date() - timedelta(days=local.weekday())
    end = midnight(monday, zone)
    return end if end <= local else midnight(monday - timedelta(days=7), zone)


def changes_between(
    changes: Iterable[AlertChange], start: datetime, end: datetime
) -> tuple[AlertChange, ...]:
    """The changes dated inside [start, end), in time order."""
    low, high = start.timestamp(), end.timestamp()
    return tuple(sorted((c for c in changes if low <= c.at < high), key=lambda c: c.at))

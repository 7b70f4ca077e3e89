"""The alert evaluator (SPEC §5): a pure state machine from series values to alert instances.

Prometheus' `rules/alerting.go` is the model, and its vocabulary is kept: an instance is
*pending* while its condition holds for less than `for`, *firing* once it has held that
long, and *resolved* when it stops (after the `clear` deadband and `keep_firing_for`);
an instance with no record is *inactive*. Nothing here does I/O or reads a clock: the
caller passes `now` (the configured clock, SPEC §4) and `wall` (the wall clock, which
only times Alertmanager re-sends), and gets back the new instances and the transitions
to deliver.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import orjson

from revmon.settings import AlertRule

#: How long a resolved instance is kept and re-sent to Alertmanager (wall clock), as
#: Prometheus does (`resolvedRetention`).
RESOLVED_RETENTION = 15 * 60.0

Labels = tuple[tuple[str, str], ...]


class Status(StrEnum):
    """Where an instance is in its life cycle (inactive instances have no record)."""

    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Series:
    """One exported series: its labels (sorted) and value."""

    name: str
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class Instance:
    """One alert instance: a rule applied to one series.

    Times are in the configured clock (`now`), except `resolved_wall` (wall clock).
    """

    rule: str
    fingerprint: str
    labels: Labels
    status: Status
    active_at: float  # when the condition began to hold (pending since)
    value: float | None
    fired_at: float | None = None
    resolved_at: float | None = None
    resolved_wall: float | None = None
    keep_since: float | None = None  # firing, but the condition stopped holding at this time
    annotations: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> bytes:
        """The instance as stored on the alert state topic."""
        return orjson.dumps(
            {
                "rule": self.rule,
                "fingerprint": self.fingerprint,
                "labels": dict(self.labels),
                "status": self.status.value,
                "active_at": self.active_at,
                "value": self.value,
                "fired_at": self.fired_at,
                "resolved_at": self.resolved_at,
                "resolved_wall": self.resolved_wall,
                "keep_since": self.keep_since,
                "annotations": dict(self.annotations),
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> Instance:
        """An instance stored by `to_json`."""
        data: dict[str, Any] = orjson.loads(raw)
        return cls(
            rule=data["rule"],
            fingerprint=data["fingerprint"],
            labels=tuple(sorted(data["labels"].items())),
            status=Status(data["status"]),
            active_at=float(data["active_at"]),
            value=data["value"],
            fired_at=data["fired_at"],
            resolved_at=data["resolved_at"],
            resolved_wall=data["resolved_wall"],
            keep_since=data["keep_since"],
            annotations=tuple(sorted(data["annotations"].items())),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """An instance changed to firing or to resolved: what the alerts topic carries."""

    instance: Instance
    threshold: float
    as_of: float


def fingerprint(labels: Iterable[tuple[str, str]]) -> str:
    """The first 16 hex digits of the SHA-256 of the labels, sorted by name, as a JSON list
    of `[name, value]` pairs."""
    return hashlib.sha256(orjson.dumps(sorted(labels))).hexdigest()[:16]


def alert_labels(rule: AlertRule, series: Series) -> Labels:
    """An instance's labels: `alertname`, `severity` and the series' labels."""
    labels = dict(series.labels)
    labels["alertname"] = rule.name
    labels["severity"] = rule.severity
    return tuple(sorted(labels.items()))


def holds(op: str, value: float, threshold: float) -> bool:
    """The rule's condition."""
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


def past_clear(op: str, value: float | None, clear: float | None) -> bool:
    """True when a firing instance may resolve: no deadband, no value, or the value is
    past `clear` (below it for `>`/`>=`, above it for `<`/`<=`)."""
    if clear is None or value is None:
        return True
    return value < clear if op in (">", ">=") else value > clear


def format_value(value: float | None) -> str:
    """A value as annotations show it (4 significant digits, as `printf "%.4g"`)."""
    return "" if value is None else f"{value:.4g}"


_PLACEHOLDER = re.compile(r"\{\{\s*(value|threshold|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}")


def render(template: str, *, value: float | None, threshold: float, labels: Labels) -> str:
    """Substitute `{{ value }}`, `{{ threshold }}` and `{{ labels.NAME }}` as plain text.

    One pass: substituted text is never scanned again, so nothing taken from a series
    (or, through it, from an event) is ever evaluated as a template.
    """
    names = dict(labels)

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "value":
            return format_value(value)
        if match.group(1) == "threshold":
            return format_value(threshold)
        return names.get(match.group(2), "")

    return _PLACEHOLDER.sub(one, template)


def render_annotations(rule: AlertRule, value: float | None, labels: Labels) -> Labels:
    """The rule's annotations for one instance, rendered."""
    out = {}
    for key, template in (("summary", rule.summary), ("description", rule.description)):
        if template:
            out[key] = render(template, value=value, threshold=rule.threshold, labels=labels)
    if rule.runbook_url:
        out["runbook_url"] = rule.runbook_url
    return tuple(sorted(out.items()))


def evaluate(
    rule: AlertRule,
    series: Iterable[Series],
    previous: Mapping[str, Instance],
    *,
    now: float,
    wall: float,
) -> tuple[dict[str, Instance], list[Transition]]:
    """One evaluation of `rule` at `now`.

    Args:
        rule: the rule.
        series: every exported series; those of the rule's metric and labels are its instances.
        previous: the rule's instances after the last evaluation, by fingerprint.
        now: the evaluation instant in the configured clock.
        wall: the wall clock (resolved instances are kept for 15 minutes of it).

    Returns:
        The rule's instances after this evaluation, and the transitions to deliver.
    """
    out: dict[str, Instance] = {}
    transitions: list[Transition] = []
    seen: set[str] = set()
    for one in series:
        if one.name != rule.metric or not rule.matches(dict(one.labels)):
            continue
        labels = alert_labels(rule, one)
        fp = fingerprint(labels)
        seen.add(fp)
        after = _step(rule, previous.get(fp), labels, fp, one.value, now, wall)
        _record(rule, previous.get(fp), after, out, transitions, now)
    for fp, before in previous.items():
        if fp in seen:
            continue
        after = _vanished(rule, before, now, wall)
        _record(rule, before, after, out, transitions, now)
    return out, transitions


def _record(
    rule: AlertRule,
    before: Instance | None,
    after: Instance | None,
    out: dict[str, Instance],
    transitions: list[Transition],
    now: float,
) -> None:
    if after is None:
        return
    out[after.fingerprint] = after
    changed = before is None or before.status is not after.status
    if changed and after.status in (Status.FIRING, Status.RESOLVED):
        transitions.append(Transition(after, rule.threshold, now))


def _step(
    rule: AlertRule,
    before: Instance | None,
    labels: Labels,
    fp: str,
    value: float,
    now: float,
    wall: float,
) -> Instance | None:
    """The instance of a series present at this evaluation."""
    condition = holds(rule.op, value, rule.threshold)
    if before is None or before.status is Status.RESOLVED:
        if not condition:
            return _retained(before, wall)
        pending = Instance(rule.name, fp, labels, Status.PENDING, now, value)
        return _fire_if_due(rule, pending, now)
    if before.status is Status.PENDING:
        if not condition:
            return None  # pending → inactive
        return _fire_if_due(rule, replace(before, value=value), now)
    # firing
    if condition or not past_clear(rule.op, value, rule.clear):
        return replace(before, value=value, keep_since=None)
    return _stop_firing(rule, replace(before, value=value), now, wall)


def _vanished(rule: AlertRule, before: Instance, now: float, wall: float) -> Instance | None:
    """The instance of a series that is no longer exported (a ratio whose denominator is 0)."""
    if before.status is Status.PENDING:
        return None
    if before.status is Status.RESOLVED:
        return _retained(before, wall)
    return _stop_firing(rule, before, now, wall)


def _fire_if_due(rule: AlertRule, pending: Instance, now: float) -> Instance:
    if now - pending.active_at < rule.for_:
        return pending
    labels = pending.labels
    return replace(
        pending,
        status=Status.FIRING,
        fired_at=now,
        annotations=render_annotations(rule, pending.value, labels),
    )


def _stop_firing(rule: AlertRule, firing: Instance, now: float, wall: float) -> Instance:
    """The condition no longer holds: resolve, unless `keep_firing_for` keeps it firing."""
    since = firing.keep_since if firing.keep_since is not None else now
    if now - since < rule.keep_firing_for:
        return replace(firing, keep_since=since)
    return replace(
        firing,
        status=Status.RESOLVED,
        resolved_at=now,
        resolved_wall=wall,
        keep_since=None,
        annotations=render_annotations(rule, firing.value, firing.labels),
    )


def _retained(before: Instance | None, wall: float) -> Instance | None:
    """A resolved instance is kept (and re-sent) for `RESOLVED_RETENTION` of wall clock."""
    if before is None or before.resolved_wall is None:
        return None
    return before if wall - before.resolved_wall < RESOLVED_RETENTION else None


def firing_counts(instances: Iterable[Instance]) -> dict[tuple[str, str], int]:
    """`revmon_alerts_firing`: firing instances by (alertname, severity)."""
    counts: dict[tuple[str, str], int] = {}
    for instance in instances:
        if instance.status is Status.FIRING:
            labels = dict(instance.labels)
            key = (labels["alertname"], labels["severity"])
            counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one evaluation of every rule changed."""

    transitions: list[Transition]
    #: Instances whose stored state changed (the value alone does not count).
    changed: list[Instance]
    #: Fingerprints of instances that became inactive (deleted from the stored state).
    removed: list[str]


def _stored(instance: Instance) -> Instance:
    return replace(instance, value=None)


class Evaluator:
    """Every rule's instances, evaluated together; the state the owner keeps and stores."""

    def __init__(self, rules: Iterable[AlertRule]) -> None:
        self.rules = tuple(rules)
        self._instances: dict[str, dict[str, Instance]] = {rule.name: {} for rule in self.rules}

    def load(self, instances: Iterable[Instance]) -> None:
        """Take over stored instances (of rules that still exist)."""
        for rules in self._instances.values():
            rules.clear()
        for instance in instances:
            if instance.rule in self._instances:
                self._instances[instance.rule][instance.fingerprint] = instance

    def instances(self) -> list[Instance]:
        """Every pending, firing and retained resolved instance."""
        return [i for rules in self._instances.values() for i in rules.values()]

    def evaluate(self, series: Iterable[Series], *, now: float, wall: float) -> Outcome:
        """Evaluate every rule at `now`."""
        by_name: dict[str, list[Series]] = {}
        for one in series:
            by_name.setdefault(one.name, []).append(one)
        transitions: list[Transition] = []
        changed: list[Instance] = []
        removed: list[str] = []
        for rule in self.rules:
            before = self._instances[rule.name]
            after, moved = evaluate(rule, by_name.get(rule.metric, ()), before, now=now, wall=wall)
            transitions.extend(moved)
            for fp, instance in after.items():
                old = before.get(fp)
                if old is None or _stored(old) != _stored(instance):
                    changed.append(instance)
            removed.extend(fp for fp in before if fp not in after)
            self._instances[rule.name] = after
        return Outcome(transitions, changed, removed)

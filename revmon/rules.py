"""Prometheus alerting rules and their `promtool test rules` tests, generated from the config.

The config's `alerts:` list is the single source (SPEC §5): the daemon evaluates it, and
`revmon rules` prints the same rules for Prometheus, aggregated across workers as the
catalogue says (`revmon.families`: every §3.1–§3.8 series is exported by one worker, so
`max without (instance)` is its value with one worker or many), with `for`,
`keep_firing_for`, and `clear` written as a deadband: the condition, `or` the clear
condition `and` the alert's own firing `ALERTS` series. The operational rules follow.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

from revmon.alerts import format_value
from revmon.families import FAMILIES
from revmon.settings import AlertRule, Settings

#: The scrape job name the operational rules expect (deploy/prometheus.yml uses it).
JOB = "revmon"
#: The name the promtool tests give the rule file (as in deploy/prometheus/).
RULES_FILE = "revmon-rules.yml"


def duration(seconds: float) -> str:
    """A Prometheus duration (`1d`, `90m`, `0s`) for a number of seconds."""
    if seconds <= 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and math.isclose(seconds % size, 0, abs_tol=1e-9):
            return f"{round(seconds / size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def number(value: float) -> str:
    """A PromQL number literal."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def selector(rule: AlertRule) -> str:
    """The rule's series: its metric with its label matchers (a list: any of them)."""
    matchers = []
    for key, wanted in sorted(rule.labels.items()):
        if isinstance(wanted, tuple):
            alternatives = "|".join(re.escape(v) for v in wanted)
            matchers.append(f'{key}=~"{_escape(alternatives)}"')
        else:
            matchers.append(f'{key}="{_escape(wanted)}"')
    return f"{rule.metric}{{{','.join(matchers)}}}" if matchers else rule.metric


def aggregated(rule: AlertRule) -> str:
    """The deployment's value of the rule's series, with any number of workers."""
    family = FAMILIES[rule.metric]
    return f"{family.aggregation} without (instance) ({selector(rule)})"


def expression(rule: AlertRule) -> str:
    """The alert expression; with `clear`, the deadband keeps a firing alert until past it."""
    condition = f"{aggregated(rule)} {rule.op} {number(rule.threshold)}"
    if rule.clear is None:
        return condition
    hold = ">=" if rule.op in (">", ">=") else "<="
    firing = f'ALERTS{{alertname="{rule.name}",alertstate="firing"}}'
    return (
        f"({condition})\nor\n"
        f"({aggregated(rule)} {hold} {number(rule.clear)}\n"
        f"  and ignoring (alertname, alertstate, severity) {firing})"
    )


_PLACEHOLDER = re.compile(r"\{\{\s*(value|threshold|labels\.([A-Za-z_][A-Za-z0-9_]*))\s*\}\}")


def go_template(text: str, threshold: float) -> str:
    """An annotation for Prometheus: revmon's placeholders as Go template actions, every
    other `{{` escaped, so Prometheus shows what the daemon shows."""
    out = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        out.append(_literal(text[position : match.start()]))
        if match.group(1) == "value":
            out.append('{{ $value | printf "%.4g" }}')
        elif match.group(1) == "threshold":
            out.append(_literal(format_value(threshold)))
        else:
            out.append(f"{{{{ $labels.{match.group(2)} }}}}")
        position = match.end()
    out.append(_literal(text[position:]))
    return "".join(out)


def _literal(text: str) -> str:
    return text.replace("{{", '{{ "{{" }}')


def _annotations(rule: AlertRule) -> dict[str, str]:
    out = {}
    if rule.summary:
        out["summary"] = go_template(rule.summary, rule.threshold)
    if rule.description:
        out["description"] = go_template(rule.description, rule.threshold)
    if rule.runbook_url:
        out["runbook_url"] = rule.runbook_url
    return out


def alerting_rule(rule: AlertRule) -> dict[str, Any]:
    """One rule of the generated file."""
    out: dict[str, Any] = {"alert": rule.name, "expr": expression(rule)}
    if rule.for_ > 0:
        out["for"] = duration(rule.for_)
    if rule.keep_firing_for > 0:
        out["keep_firing_for"] = duration(rule.keep_firing_for)
    out["labels"] = {"severity": rule.severity}
    out["annotations"] = _annotations(rule)
    return out


@dataclass(frozen=True, slots=True)
class Operational:
    """An operational rule: revmon itself, not the revenue numbers."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str


def operational_rules(settings: Settings) -> list[Operational]:
    """`RevmonDown`, `RevmonNotReady`, `RevmonConsumerLagHigh`, `RevmonDeadLettersRising`,
    `RevmonSourceSilent` and `RevmonAlertDeliveryFailing`."""
    silence = number(settings.source_silence)
    return [
        Operational(
            "RevmonDown",
            f'up{{job="{JOB}"}} == 0',
            "5m",
            "critical",
            "revmon target {{ $labels.instance }} is down",
            "Prometheus cannot scrape this revmon worker: its partitions move to the other "
            "workers after the session timeout; with none left, no metric or alert is fresh.",
        ),
        Operational(
            "RevmonNotReady",
            "revmon_ready == 0",
            "10m",
            "warning",
            "revmon worker {{ $labels.instance }} has not been ready for 10 minutes",
            "The worker is up but is joining its group, recovering state, or has lost the "
            "broker (/readyz answers 503).",
        ),
        Operational(
            "RevmonConsumerLagHigh",
            "max without (instance) (revmon_event_lag_seconds) > 3600\n"
            "and on ()\n"
            f'(time() - max(revmon_source_last_message_timestamp_seconds{{job="{JOB}"}})) < 900',
            "15m",
            "warning",
            "revmon's newest applied event is {{ $value | humanizeDuration }} old "
            "while input keeps arriving",
            "Messages arrive (one within 15 minutes) but the newest event applied is over an "
            "hour old: the workers are behind their input, or the producers send old events.",
        ),
        Operational(
            "RevmonDeadLettersRising",
            "sum without (instance, reason) (rate(revmon_events_rejected_total[5m])) > 0.1",
            "15m",
            "warning",
            'revmon rejects {{ $value | printf "%.2f" }} messages/s to the dead-letter topic',
            "A producer sends input revmon cannot accept; revmon_events_rejected_total{reason} "
            "says why, and the dead-letter topic holds the messages (sensitive: raw payloads).",
        ),
        Operational(
            "RevmonSourceSilent",
            "time() - max without (instance) "
            f"(revmon_source_last_message_timestamp_seconds) > {silence}",
            "5m",
            "warning",
            "No message on the {{ $labels.source }} input topic for "
            "{{ $value | humanizeDuration }}",
            "A feed that stops sending shows here long before its numbers look wrong; "
            "check the connector that writes this topic.",
        ),
        Operational(
            "RevmonAlertDeliveryFailing",
            "sum without (instance) "
            '(rate(revmon_alert_notifications_total{result=~"failed|dropped"}[5m])) > 0',
            "10m",
            "critical",
            "revmon cannot deliver alerts to {{ $labels.receiver }}",
            "Notifications fail or are dropped from the bounded queue: check that "
            "Alertmanager (alertmanager_url) or the alerts topic is reachable.",
        ),
    ]


def rule_file(settings: Settings) -> dict[str, Any]:
    """The Prometheus rule file: the config's alerts, then the operational rules."""
    operations = [
        {
            "alert": op.name,
            "expr": op.expr,
            "for": op.for_,
            "labels": {"severity": op.severity},
            "annotations": {"summary": op.summary, "description": op.description},
        }
        for op in operational_rules(settings)
    ]
    return {
        "groups": [
            {"name": "revmon-revenue", "rules": [alerting_rule(r) for r in settings.alerts]},
            {"name": "revmon-operations", "rules": operations},
        ]
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as literal blocks, so the file reads well."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = (
    "# Generated by `revmon rules` from the config's `alerts:` list; do not edit by hand.\n"
    "# Every expression aggregates across workers (max without (instance)), so it is right\n"
    "# with one revmon worker or many. Scrape revmon with job name `revmon`.\n"
)


def dump(data: dict[str, Any], header: str = HEADER) -> str:
    """YAML text of a generated file."""
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=100)


def render_rules(settings: Settings) -> str:
    """The text of `revmon rules`."""
    return dump(rule_file(settings))

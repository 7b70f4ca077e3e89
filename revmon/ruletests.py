"""`promtool test rules` unit tests of the generated rules, one or more per rule.

Each config rule gets a timeline built from its own threshold: a quiet start, a value
past the threshold held through `for` (silent while pending, then firing with its
annotations), a value inside the `clear` band when there is one (still firing: the
deadband), then a good value held through `keep_firing_for` (resolved). The operational
rules get hand-made cases. Prometheus 2.42 needs `interval` in every test group.
"""

from __future__ import annotations

import math
from typing import Any

from revmon.alerts import render
from revmon.families import FAMILIES
from revmon.rules import JOB, duration, operational_rules
from revmon.settings import AlertRule, Settings

#: A realistic value for each label a rule's filter leaves open.
_EXAMPLE_LABELS = {
    "funnel": "opportunity",
    "stage": "proposal",
    "kind": "new_business",
    "window": "90d",
    "period": "2026-Q4",
    "segment": "1m_5m",
    "channel": "email",
    "category": "sales",
    "movement": "churn",
    "outcome": "advanced",
}
_INSTANCE = "revmon-0:6066"
LAST_MESSAGE = "revmon_source_last_message_timestamp_seconds"


def _series_labels(rule: AlertRule) -> dict[str, str]:
    labels = {}
    for key in FAMILIES[rule.metric].labels:
        wanted = rule.labels.get(key)
        if isinstance(wanted, tuple):
            labels[key] = wanted[-1]
        elif wanted is not None:
            labels[key] = wanted
        else:
            labels[key] = _EXAMPLE_LABELS.get(key, "x")
    return labels


def _values(rule: AlertRule) -> tuple[float, float, float | None]:
    """A bad value (past the threshold), a good one (past `clear` when there is one), and
    one inside the clear band (None without `clear`)."""
    t = rule.threshold
    step = max(abs(t) * 0.5, 1.0) if t == 0 or abs(t) >= 2 else abs(t) * 0.5
    above = rule.op in (">", ">=")
    bad = t + step if above else t - step
    if rule.clear is not None:
        good = rule.clear - step if above else rule.clear + step
        return _round(bad), _round(good), _round((t + rule.clear) / 2)
    # A strict comparison does not hold at the threshold itself: the most realistic good value.
    if rule.op in (">", "<"):
        return _round(bad), t, None
    return _round(bad), _round(t - step if above else t + step), None


def _round(value: float) -> float:
    return round(value, 9)


def _series_text(parts: list[tuple[float, int]]) -> str:
    return " ".join(f"{number_text(v)}x{n - 1}" if n > 1 else number_text(v) for v, n in parts)


def number_text(value: float) -> str:
    """A sample value in promtool's expanding notation."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def _interval(rule: AlertRule) -> float:
    # Samples further apart than Prometheus' 5-minute lookback would leave gaps that
    # break `for`; one a minute, as a revmon scraped every minute exports them.
    del rule
    return 60.0


def _alert(rule: AlertRule, labels: dict[str, str], value: float) -> dict[str, Any]:
    exp_labels = {**labels, "job": JOB, "severity": rule.severity}
    out: dict[str, Any] = {"exp_labels": exp_labels}
    annotations = {}
    pairs = tuple(sorted({**exp_labels, "alertname": rule.name}.items()))
    for key, template in (("summary", rule.summary), ("description", rule.description)):
        if template:
            annotations[key] = render(template, value=value, threshold=rule.threshold, labels=pairs)
    if rule.runbook_url:
        annotations["runbook_url"] = rule.runbook_url
    if annotations:
        out["exp_annotations"] = annotations
    return out


def rule_test(rule: AlertRule) -> dict[str, Any]:
    """The test group of one config rule."""
    interval = _interval(rule)
    n_for = math.ceil(rule.for_ / interval)
    n_keep = math.ceil(rule.keep_firing_for / interval)
    bad, good, band = _values(rule)
    parts = [(good, 3), (bad, n_for + 3)]
    if band is not None:
        parts.append((band, 3))
    parts.append((good, n_keep + 4))
    labels = _series_labels(rule)
    selector = ",".join(f'{k}="{v}"' for k, v in {**labels, "job": JOB}.items())
    series = f'{rule.metric}{{{selector},instance="{_INSTANCE}"}}'
    start_bad = 3
    checks: list[tuple[int, float | None]] = [(1, None)]
    if n_for > 0:
        checks.append((start_bad + n_for - 1, None))  # pending: nothing fires yet
    checks.append((start_bad + n_for + 1, bad))
    start_good = start_bad + n_for + 3
    if band is not None:
        checks.append((start_good + 1, band))  # inside the clear band: still firing
        start_good += 3
    if n_keep > 0:
        # Kept firing: Prometheus shows the last value that held.
        checks.append((start_good + n_keep - 1, bad if band is None else band))
    checks.append((start_good + n_keep + 2, None))
    alert_tests = []
    for step, value in checks:
        expected = [] if value is None else [_alert(rule, labels, value)]
        alert_tests.append(
            {
                "eval_time": duration(step * interval),
                "alertname": rule.name,
                "exp_alerts": expected,
            }
        )
    return {
        "name": f"{rule.name}: fires past the threshold, resolves when it recovers",
        "interval": duration(interval),
        "input_series": [{"series": series, "values": _series_text(parts)}],
        "alert_rule_test": alert_tests,
    }


def _operations_tests(settings: Settings) -> list[dict[str, Any]]:
    instance = f'job="{JOB}",instance="{_INSTANCE}"'
    names = {op.name: op for op in operational_rules(settings)}
    silence_minutes = math.ceil(settings.source_silence / 60)

    def alert(name: str, labels: dict[str, str], at: str, summary: str) -> dict[str, Any]:
        expected = {
            "exp_labels": {**labels, "severity": names[name].severity},
            "exp_annotations": {"summary": summary, "description": names[name].description},
        }
        return {"eval_time": at, "alertname": name, "exp_alerts": [expected]}

    def quiet(name: str, at: str) -> dict[str, Any]:
        return {"eval_time": at, "alertname": name, "exp_alerts": []}

    me = {"job": JOB, "instance": _INSTANCE}
    return [
        {
            "name": "RevmonDown and RevmonNotReady",
            "interval": "1m",
            "input_series": [
                {"series": f"up{{{instance}}}", "values": "1x10 0x20"},
                {"series": f"revmon_ready{{{instance}}}", "values": "1x10 0x20"},
            ],
            "alert_rule_test": [
                quiet("RevmonDown", "5m"),
                quiet("RevmonDown", "13m"),
                alert("RevmonDown", me, "17m", f"revmon target {_INSTANCE} is down"),
                quiet("RevmonNotReady", "15m"),
                alert(
                    "RevmonNotReady",
                    me,
                    "22m",
                    f"revmon worker {_INSTANCE} has not been ready for 10 minutes",
                ),
            ],
        },
        {
            "name": "RevmonDeadLettersRising and RevmonAlertDeliveryFailing",
            "interval": "1m",
            "input_series": [
                {
                    "series": f'revmon_events_rejected_total{{{instance},reason="malformed_json"}}',
                    "values": "0+1x10 10+60x40",
                },
                {
                    "series": (
                        "revmon_alert_notifications_total"
                        f'{{{instance},receiver="alertmanager",result="failed"}}'
                    ),
                    "values": "0x10 0+1x30",
                },
            ],
            "alert_rule_test": [
                quiet("RevmonDeadLettersRising", "10m"),
                alert(
                    "RevmonDeadLettersRising",
                    {"job": JOB},
                    "35m",
                    "revmon rejects 1.00 messages/s to the dead-letter topic",
                ),
                quiet("RevmonAlertDeliveryFailing", "12m"),
                alert(
                    "RevmonAlertDeliveryFailing",
                    {"job": JOB, "receiver": "alertmanager", "result": "failed"},
                    "30m",
                    "revmon cannot deliver alerts to alertmanager",
                ),
            ],
        },
        {
            "name": "RevmonSourceSilent and RevmonConsumerLagHigh",
            "interval": "1m",
            "input_series": [
                # crm: a message every minute (timestamp = the sample's own time)
                {
                    "series": f'{LAST_MESSAGE}{{{instance},source="crm"}}',
                    "values": f"0+60x{silence_minutes + 40}",
                },
                # billing: the last message at t=0, then silence
                {
                    "series": f'{LAST_MESSAGE}{{{instance},source="billing"}}',
                    "values": f"0x{silence_minutes + 40}",
                },
                {"series": f"revmon_event_lag_seconds{{{instance}}}", "values": "7200x60"},
            ],
            "alert_rule_test": [
                quiet("RevmonSourceSilent", duration(60 * silence_minutes - 60)),
                alert(
                    "RevmonSourceSilent",
                    {"job": JOB, "source": "billing"},
                    duration(60 * silence_minutes + 10 * 60),
                    "No message on the billing input topic for "
                    f"{_human_duration(60 * silence_minutes + 10 * 60)}",
                ),
                quiet("RevmonConsumerLagHigh", "10m"),
                alert(
                    "RevmonConsumerLagHigh",
                    {"job": JOB},
                    "20m",
                    "revmon's newest applied event is 2h 0m 0s old while input keeps arriving",
                ),
            ],
        },
    ]


def _human_duration(seconds: int) -> str:
    """Prometheus' `humanizeDuration` of whole seconds of an hour or more."""
    hours, rest = divmod(seconds, 3600)
    days, hours = divmod(hours, 24)
    text = f"{hours}h {rest // 60}m {rest % 60}s"
    return f"{days}d {text}" if days else text


def promtool_tests(settings: Settings, rules_path: str) -> dict[str, Any]:
    """The `promtool test rules` file for the rule file at `rules_path` (relative to it)."""
    return {
        "rule_files": [rules_path],
        "evaluation_interval": "1m",
        "tests": [rule_test(r) for r in settings.alerts] + _operations_tests(settings),
    }

"""The alert evaluator: life cycle, deadband, keep_firing_for, fingerprints, annotations."""

from __future__ import annotations

from typing import Any

import pytest

from revmon.alerts import (
    RESOLVED_RETENTION,
    Evaluator,
    Instance,
    Series,
    Status,
    fingerprint,
    render,
)
from revmon.settings import AlertRule

H = 3600.0
D = 86400.0
T0 = 1_790_000_000.0  # a fixed clock


def rule(**overrides: Any) -> AlertRule:
    """A rule on the 90d E:R ratio, with overrides."""
    base: dict[str, Any] = {
        "name": "ExpenseToRevenueHigh",
        "metric": "revmon_er_ratio",
        "labels": {"window": "90d"},
        "op": ">=",
        "threshold": 0.6,
        "severity": "warning",
        "summary": "E:R is {{ value }} (threshold {{ threshold }}, {{ labels.window }})",
    }
    base.update(overrides)
    return AlertRule.model_validate(base)


def er(value: float, window: str = "90d") -> Series:
    """One E:R series."""
    return Series("revmon_er_ratio", (("window", window),), value)


def run(r: AlertRule, steps: list[tuple[float, float | None]]) -> list[tuple[str, str]]:
    """Evaluate `r` at each (hours after T0, value or None for no series); trace statuses.

    Each entry is (status after the step or "inactive", transition or "").
    """
    evaluator = Evaluator([r])
    trace = []
    for hours, value in steps:
        series = [] if value is None else [er(value)]
        outcome = evaluator.evaluate(series, now=T0 + hours * H, wall=T0 + hours * H)
        live = evaluator.instances()
        status = live[0].status.value if live else "inactive"
        moved = ",".join(t.instance.status.value for t in outcome.transitions)
        trace.append((status, moved))
    return trace


@pytest.mark.parametrize(
    ("overrides", "steps", "expected"),
    [
        pytest.param(
            {},
            [(0, 0.5), (1, 0.7), (2, 0.5)],
            [("inactive", ""), ("firing", "firing"), ("resolved", "resolved")],
            id="for-0-fires-at-once-and-resolves-at-once",
        ),
        pytest.param(
            {"for": "1d"},
            [(0, 0.7), (12, 0.7), (24, 0.7), (30, 0.7)],
            [("pending", ""), ("pending", ""), ("firing", "firing"), ("firing", "")],
            id="fires-once-held-for-exactly-for",
        ),
        pytest.param(
            {"for": "1d"},
            [(0, 0.7), (12, 0.5), (13, 0.7), (36, 0.7), (37, 0.7)],
            [
                ("pending", ""),
                ("inactive", ""),
                ("pending", ""),
                ("pending", ""),
                ("firing", "firing"),
            ],
            id="a-break-restarts-the-pending-period",
        ),
        pytest.param(
            {},
            [(0, 0.6), (1, 0.59), (2, 0.61), (3, 0.58), (4, 0.62)],
            [
                ("firing", "firing"),
                ("resolved", "resolved"),
                ("firing", "firing"),
                ("resolved", "resolved"),
                ("firing", "firing"),
            ],
            id="flapping-without-clear-fires-every-time",
        ),
        pytest.param(
            {"clear": 0.55},
            [(0, 0.6), (1, 0.59), (2, 0.61), (3, 0.56), (4, 0.62), (5, 0.54), (6, 0.58)],
            [
                ("firing", "firing"),
                ("firing", ""),
                ("firing", ""),
                ("firing", ""),
                ("firing", ""),
                ("resolved", "resolved"),
                ("inactive", ""),  # an hour later: past the 15-minute retention
            ],
            id="flapping-inside-the-clear-band-does-not-re-fire",
        ),
        pytest.param(
            {"clear": 0.55},
            [(0, 0.55), (1, 0.58)],
            [("inactive", ""), ("inactive", "")],
            id="the-clear-band-never-starts-an-alert",
        ),
        pytest.param(
            {"keep_firing_for": "2h"},
            [(0, 0.7), (1, 0.5), (2, 0.5), (3, 0.5)],
            [("firing", "firing"), ("firing", ""), ("firing", ""), ("resolved", "resolved")],
            id="keep-firing-for-delays-the-resolution",
        ),
        pytest.param(
            {"keep_firing_for": "2h"},
            [(0, 0.7), (1, 0.5), (2, 0.7), (3, 0.5), (4, 0.5), (5, 0.5)],
            [
                ("firing", "firing"),
                ("firing", ""),
                ("firing", ""),
                ("firing", ""),
                ("firing", ""),
                ("resolved", "resolved"),
            ],
            id="keep-firing-for-restarts-when-the-condition-returns",
        ),
        pytest.param(
            {"for": "2h"},
            [(0, 0.7), (1, None), (2, 0.7)],
            [("pending", ""), ("inactive", ""), ("pending", "")],
            id="a-vanished-series-ends-its-pending-instance",
        ),
        pytest.param(
            {},
            [(0, 0.7), (1, None)],
            [("firing", "firing"), ("resolved", "resolved")],
            id="a-vanished-series-resolves-its-firing-instance",
        ),
        pytest.param(
            {"for": "1h"},
            [(0, 0.7), (1, 0.7), (2, 0.5), (3, 0.7), (4, 0.7)],
            [
                ("pending", ""),
                ("firing", "firing"),
                ("resolved", "resolved"),
                ("pending", ""),
                ("firing", "firing"),
            ],
            id="a-resolved-instance-that-holds-again-starts-a-new-pending-period",
        ),
        pytest.param(
            {"op": "<", "threshold": 0.6, "clear": 0.7},
            [(0, 0.5), (1, 0.65), (2, 0.71)],
            [("firing", "firing"), ("firing", ""), ("resolved", "resolved")],
            id="below-rules-clear-above-the-clear-value",
        ),
    ],
)
def test_life_cycle(
    overrides: dict[str, Any],
    steps: list[tuple[float, float | None]],
    expected: list[tuple[str, str]],
) -> None:
    """Statuses and transitions follow SPEC §5 step by step on a fixed clock."""
    assert run(rule(**overrides), steps) == expected


def test_starts_at_is_when_firing_began_and_a_new_period_has_a_new_start() -> None:
    """fired_at is the instant it began firing; a resolved one that fires again starts anew."""
    evaluator = Evaluator([rule(**{"for": "1h"})])
    times = []
    for hours, value in [(0, 0.7), (1, 0.7), (2, 0.5), (3, 0.7), (4, 0.7)]:
        outcome = evaluator.evaluate([er(value)], now=T0 + hours * H, wall=T0)
        times += [(t.instance.status, t.instance.fired_at) for t in outcome.transitions]
    assert times == [
        (Status.FIRING, T0 + 1 * H),
        (Status.RESOLVED, T0 + 1 * H),
        (Status.FIRING, T0 + 4 * H),
    ]


def test_every_matching_series_is_its_own_instance() -> None:
    """A list-valued label matches any of its values; each series has its own fingerprint."""
    r = AlertRule.model_validate(
        {
            "name": "KeyAccountsUndercovered",
            "metric": "revmon_accounts_undercovered",
            "labels": {"segment": ["1m_5m", "5m_plus"]},
            "op": ">",
            "threshold": 0,
        }
    )
    series = [
        Series("revmon_accounts_undercovered", (("segment", s),), 2.0)
        for s in ("100k_1m", "1m_5m", "5m_plus")
    ]
    outcome = Evaluator([r]).evaluate(series, now=T0, wall=T0)
    fired = sorted(dict(t.instance.labels)["segment"] for t in outcome.transitions)
    assert fired == ["1m_5m", "5m_plus"]
    assert len({t.instance.fingerprint for t in outcome.transitions}) == 2


def test_instance_labels_and_fingerprint_are_stable() -> None:
    """Labels are alertname, severity and the series' labels; the fingerprint is their hash."""
    outcome = Evaluator([rule()]).evaluate([er(0.9)], now=T0, wall=T0)
    instance = outcome.transitions[0].instance
    assert dict(instance.labels) == {
        "alertname": "ExpenseToRevenueHigh",
        "severity": "warning",
        "window": "90d",
    }
    assert instance.fingerprint == fingerprint(instance.labels)
    assert instance.fingerprint == fingerprint(reversed(instance.labels))
    assert len(instance.fingerprint) == 16
    # sha256(b'[["alertname","ExpenseToRevenueHigh"],["severity","warning"],["window","90d"]]')
    assert instance.fingerprint == "6dea3a6daa1c6d4b"


def test_annotations_substitute_plain_text() -> None:
    """{{ value }}, {{ threshold }} and {{ labels.NAME }} are replaced, as plain text."""
    outcome = Evaluator([rule()]).evaluate([er(0.6234)], now=T0, wall=T0)
    summary = dict(outcome.transitions[0].instance.annotations)["summary"]
    assert summary == "E:R is 0.6234 (threshold 0.6, 90d)"


@pytest.mark.parametrize(
    ("template", "labels", "expected"),
    [
        pytest.param("{{ labels.x }}", {"x": "{{ value }}"}, "{{ value }}", id="no-second-pass"),
        pytest.param("{{ labels.x }}", {"x": "{{ .Foo }}"}, "{{ .Foo }}", id="go-template-inert"),
        pytest.param("{{ labels.missing }}!", {}, "!", id="missing-label-is-empty"),
        pytest.param("{{value}}/{{  threshold }}", {}, "1.5/2", id="spacing-free"),
        pytest.param("{{ $value }}", {}, "{{ $value }}", id="unknown-placeholder-left-alone"),
    ],
)
def test_render(template: str, labels: dict[str, str], expected: str) -> None:
    """Substitution is a single plain-text pass."""
    assert render(template, value=1.5, threshold=2, labels=tuple(labels.items())) == expected


def test_resolved_instances_are_retained_for_15_minutes_of_wall_clock() -> None:
    """A resolved instance stays (for Alertmanager re-sends) until 15 wall-clock minutes pass."""
    evaluator = Evaluator([rule()])
    evaluator.evaluate([er(0.9)], now=T0, wall=T0)
    evaluator.evaluate([er(0.1)], now=T0 + 1, wall=T0 + 1)
    evaluator.evaluate([er(0.1)], now=T0 + 2, wall=T0 + RESOLVED_RETENTION)
    assert [i.status for i in evaluator.instances()] == [Status.RESOLVED]
    outcome = evaluator.evaluate([er(0.1)], now=T0 + 3, wall=T0 + 1 + RESOLVED_RETENTION)
    assert evaluator.instances() == []
    assert len(outcome.removed) == 1


def test_state_round_trips_and_for_keeps_counting_after_a_takeover() -> None:
    """A new evaluator loaded with stored instances neither re-fires nor restarts `for`."""
    r = rule(**{"for": "2h"})
    first = Evaluator([r])
    first.evaluate([er(0.9)], now=T0, wall=T0)
    stored = [Instance.from_json(i.to_json()) for i in first.instances()]

    second = Evaluator([r])
    second.load(stored)
    outcome = second.evaluate([er(0.9)], now=T0 + 2 * H, wall=T0)
    assert [t.instance.status for t in outcome.transitions] == [Status.FIRING]
    stored = [Instance.from_json(i.to_json()) for i in second.instances()]

    third = Evaluator([r])
    third.load(stored)
    outcome = third.evaluate([er(0.9)], now=T0 + 3 * H, wall=T0)
    assert outcome.transitions == []
    assert [i.status for i in third.instances()] == [Status.FIRING]


def test_only_state_changes_are_stored_not_value_changes() -> None:
    """A firing instance whose value moves is not rewritten to the state topic."""
    evaluator = Evaluator([rule()])
    assert len(evaluator.evaluate([er(0.9)], now=T0, wall=T0).changed) == 1
    assert evaluator.evaluate([er(0.8)], now=T0 + 1, wall=T0).changed == []


def test_instances_of_a_removed_rule_are_dropped_on_load() -> None:
    """Stored instances of a rule no longer configured are not taken over."""
    evaluator = Evaluator([rule()])
    evaluator.evaluate([er(0.9)], now=T0, wall=T0)
    stored = evaluator.instances()
    other = Evaluator([rule(name="Other")])
    other.load(stored)
    assert other.instances() == []

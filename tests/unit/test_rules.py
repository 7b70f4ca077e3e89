"""`revmon rules`: the Prometheus rule file and its promtool tests, generated from the config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from revmon.rules import duration, expression, go_template, render_rules, selector
from revmon.ruletests import promtool_tests
from revmon.settings import AlertRule, load_settings
from tests.conftest import require_tool

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def rule(**overrides: Any) -> AlertRule:
    """A rule with overrides."""
    base: dict[str, Any] = {
        "name": "R",
        "metric": "revmon_er_ratio",
        "labels": {"window": "90d"},
        "op": ">=",
        "threshold": 0.6,
    }
    return AlertRule.model_validate({**base, **overrides})


def revmon(*args: str) -> str:
    """Run the revmon CLI; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", "revmon", *args], check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(0, "0s", id="zero"),
        pytest.param(86400, "1d", id="day"),
        pytest.param(5400, "90m", id="minutes"),
        pytest.param(21600, "6h", id="hours"),
        pytest.param(0.5, "500ms", id="milliseconds"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    """Durations print in the largest exact Prometheus unit."""
    assert duration(seconds) == text


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param({}, 'revmon_er_ratio{window="90d"}', id="one-value"),
        pytest.param(
            {
                "metric": "revmon_accounts_undercovered",
                "labels": {"segment": ["1m_5m", "5m_plus"]},
            },
            'revmon_accounts_undercovered{segment=~"1m_5m|5m_plus"}',
            id="a-list-is-any-of-them",
        ),
        pytest.param({"labels": {}}, "revmon_er_ratio", id="no-labels"),
    ],
)
def test_selector(overrides: dict[str, Any], expected: str) -> None:
    """A rule's labels become matchers; a list of values becomes a regex alternative."""
    assert selector(rule(**overrides)) == expected


def test_expression_aggregates_across_workers_and_writes_clear_as_a_deadband() -> None:
    """The condition `or` (the clear condition `and` the alert's own firing ALERTS series)."""
    assert expression(rule()) == 'max without (instance) (revmon_er_ratio{window="90d"}) >= 0.6'
    text = expression(rule(clear=0.55))
    assert text.startswith('(max without (instance) (revmon_er_ratio{window="90d"}) >= 0.6)\nor\n')
    assert '(revmon_er_ratio{window="90d"}) >= 0.55' in text
    assert 'ALERTS{alertname="R",alertstate="firing"}' in text
    below = expression(rule(op="<", threshold=3, clear=3.5))
    assert "<= 3.5" in below


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("E:R {{ value }}", 'E:R {{ $value | printf "%.4g" }}', id="value"),
        pytest.param("over {{ threshold }}", "over 0.6", id="threshold-is-literal"),
        pytest.param("in {{ labels.window }}", "in {{ $labels.window }}", id="label"),
        pytest.param("{{ .Evil }}", '{{ "{{" }} .Evil }}', id="other-braces-escaped"),
    ],
)
def test_annotations_become_go_templates_that_show_what_the_daemon_shows(
    text: str, expected: str
) -> None:
    """revmon's placeholders map to Go template actions; any other `{{` is literal text."""
    assert go_template(text, 0.6) == expected


def test_the_committed_rule_files_equal_the_generator() -> None:
    """deploy/prometheus/ holds exactly what `revmon rules` prints for the shipped defaults."""
    assert (DEPLOY / "revmon-rules.yml").read_text() == revmon("rules")
    assert (DEPLOY / "revmon-rules.test.yml").read_text() == revmon("rules", "--promtool-tests")


def test_the_rule_file_has_every_config_rule_and_every_operational_rule() -> None:
    """One alert per config rule, with for and labels, plus the six operational rules."""
    data = yaml.safe_load(render_rules(load_settings(None)))
    names = [r["alert"] for group in data["groups"] for r in group["rules"]]
    assert names == [
        "ExpenseToRevenueHigh",
        "NewBusinessPipelineThinning",
        "PipelineCoverageLow",
        "LeadConversionDrop",
        "StaleOpportunities",
        "CustomerChurnHigh",
        "KeyAccountsUndercovered",
        "RevmonDown",
        "RevmonNotReady",
        "RevmonConsumerLagHigh",
        "RevmonDeadLettersRising",
        "RevmonSourceSilent",
        "RevmonAlertDeliveryFailing",
    ]
    thinning = data["groups"][0]["rules"][1]
    assert thinning["for"] == "1d"
    assert thinning["labels"] == {"severity": "critical"}


def test_promtool_checks_and_tests_the_shipped_rules() -> None:
    """`promtool check rules` and `promtool test rules` pass on deploy/prometheus/."""
    promtool = require_tool("promtool")
    subprocess.run([promtool, "check", "rules", "revmon-rules.yml"], cwd=DEPLOY, check=True)
    done = subprocess.run(
        [promtool, "test", "rules", "revmon-rules.test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_tests_of_a_custom_config_pass(tmp_path: Path) -> None:
    """Rules with keep_firing_for, a below-threshold clear and list labels also pass promtool."""
    promtool = require_tool("promtool")
    settings = load_settings(
        None,
        source_silence="2h",
        alerts=[
            {
                "name": "CoverageLow",
                "metric": "revmon_pipeline_coverage_ratio",
                "labels": {"kind": ["new_business", "expansion"]},
                "op": "<=",
                "threshold": 3,
                "clear": 3.5,
                "for": "2h",
                "keep_firing_for": "30m",
                "severity": "critical",
                "summary": "{{ labels.kind }} coverage {{ value }} below {{ threshold }}",
                "description": "period {{ labels.period }}",
                "runbook_url": "https://runbooks.example/coverage",
            },
            {
                "name": "NoCustomers",
                "metric": "revmon_customers",
                "op": "<",
                "threshold": 1,
            },
        ],
    )
    (tmp_path / "revmon-rules.yml").write_text(render_rules(settings))
    tests = promtool_tests(settings, "revmon-rules.yml")
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests))
    done = subprocess.run(
        [promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_tests_fail_when_the_deadband_is_missing(tmp_path: Path) -> None:
    """The generated deadband test catches a rule file without the clear condition."""
    promtool = require_tool("promtool")
    settings = load_settings(None)
    data = yaml.safe_load(render_rules(settings))
    first = data["groups"][0]["rules"][0]
    first["expr"] = first["expr"].split("\nor\n")[0]
    (tmp_path / "revmon-rules.yml").write_text(yaml.safe_dump(data))
    (tmp_path / "tests.yml").write_text(
        yaml.safe_dump(promtool_tests(settings, "revmon-rules.yml"))
    )
    done = subprocess.run(
        [promtool, "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "ExpenseToRevenueHigh" in done.stdout + done.stderr

"""Prometheus' own exporter lint (`promtool check metrics`) on a full `/metrics` exposition.

SPEC §3: every name passes `promtool check metrics` (base units, no `_sum`/`_count`/
`_total` on a plain gauge). The exposition is the one `revmon replay` writes for a
simulated history with snapshots and expiry, so every family of SPEC §3 is in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from revmon.families import FAMILIES
from tests.e2e.running import revmon, samples

pytestmark = pytest.mark.e2e

EXPIRE = "funnels:\n  lead: {expire: {mql: 30d}}\n  opportunity: {expire: {negotiation: 30d}}\n"
TARGETS = "targets:\n  - {period: 2025-Q2, kind: all, amount: 1000000000}\n"


def promtool() -> str:
    """The promtool binary; missing is a failure on CI (`CI=true`), else a skip."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool is not installed (CI=true): install Prometheus' promtool")
        pytest.skip("promtool is not installed")
    return found


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The final exposition of a replayed 120-day history with expiry and a target."""
    work = tmp_path_factory.mktemp("promtool")
    history, config, metrics = work / "h.jsonl", work / "c.yaml", work / "m.prom"
    made = revmon(
        "simulate",
        "--days",
        "120",
        "--seed",
        "3",
        "--end",
        "2025-05-01",
        "--out",
        str(history),
        cwd=work,
    )
    assert made.code == 0, made.stderr
    config.write_text(EXPIRE + TARGETS)
    result = revmon(
        "replay",
        str(history),
        "--config",
        str(config),
        "--metrics-out",
        str(metrics),
        cwd=work,
        timeout=600,
    )
    assert result.code == 0, result.stderr[-3000:]
    return metrics.read_text()


def test_promtool_check_metrics_finds_nothing(exposition: str) -> None:
    """`promtool check metrics` reads the whole exposition and reports no finding."""
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=exposition.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )

    findings = (checked.stdout + checked.stderr).decode().strip()
    assert checked.returncode == 0, findings
    assert findings == ""


def test_every_family_of_the_catalogue_is_exported(exposition: str) -> None:
    """Every v2 family (ratios included, with a denominator in this history) is present."""
    exported = {name for name, _ in samples(exposition)}
    suffixes = ("_bucket", "_gcount", "_gsum")
    names = {next((n.removesuffix(s) for s in suffixes if n.endswith(s)), n) for n in exported}
    exported_total = {n.removesuffix("_total") for n in names}

    missing = [
        f.name
        for f in FAMILIES.values()
        if f.name not in names and f.name.removesuffix("_total") not in exported_total
    ]
    assert missing == []


def test_the_renamed_v1_families_are_gone(exposition: str) -> None:
    """The three names promtool rejected in v1 are no longer exported."""
    for old in (
        "revmon_sales_minutes",
        "revmon_funnel_time_in_stage_seconds_sum",
        "revmon_pipeline_cycle_seconds_sum",
    ):
        assert old not in exposition


def test_promtool_flags_the_v1_names(tmp_path: Path) -> None:
    """The lint is real: the v1 names are findings (so a clean run means something)."""
    v1 = (
        "# HELP revmon_sales_minutes Sales activity minutes.\n"
        "# TYPE revmon_sales_minutes gauge\n"
        'revmon_sales_minutes{segment="zero",window="7d"} 1.0\n'
        "# HELP revmon_pipeline_cycle_seconds_sum Sum of cycles.\n"
        "# TYPE revmon_pipeline_cycle_seconds_sum gauge\n"
        'revmon_pipeline_cycle_seconds_sum{kind="renewal",window="7d"} 1.0\n'
    )
    checked = subprocess.run(
        [promtool(), "check", "metrics"],
        input=v1.encode(),
        capture_output=True,
        timeout=60,
        check=False,
    )

    findings = (checked.stdout + checked.stderr).decode()
    assert "revmon_sales_minutes" in findings
    assert "revmon_pipeline_cycle_seconds_sum" in findings

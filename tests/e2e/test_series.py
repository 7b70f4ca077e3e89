"""Every series of SPEC §3 is exported with its name and labels after a replay."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from revmon.exposition import METRIC_HELP

pytestmark = pytest.mark.e2e

# SPEC §3: label names of each family (sample names of the gauge histogram spelled out).
LABELS: dict[str, set[str]] = {
    "revmon_funnel_open": {"funnel", "stage"},
    "revmon_funnel_age_seconds_bucket": {"funnel", "stage", "le"},
    "revmon_funnel_age_seconds_gcount": {"funnel", "stage"},
    "revmon_funnel_age_seconds_gsum": {"funnel", "stage"},
    "revmon_funnel_stale": {"funnel", "stage"},
    "revmon_funnel_stale_ratio": {"funnel", "stage"},
    "revmon_funnel_entries": {"funnel", "stage", "window"},
    "revmon_funnel_exits": {"funnel", "stage", "outcome", "window"},
    "revmon_funnel_conversion_ratio": {"funnel", "stage", "window"},
    "revmon_funnel_dwell_seconds_bucket": {"funnel", "stage", "window", "le"},
    "revmon_funnel_dwell_seconds_gcount": {"funnel", "stage", "window"},
    "revmon_funnel_dwell_seconds_gsum": {"funnel", "stage", "window"},
    "revmon_marketing_new_names": {"channel", "window"},
    "revmon_marketing_spend_amount": {"channel", "window"},
    "revmon_marketing_cost_per_name_amount": {"channel", "window"},
    "revmon_channel_pipeline_created_amount": {"channel", "window"},
    "revmon_channel_won_amount": {"channel", "window"},
    "revmon_channel_pipeline_to_spend_ratio": {"channel", "window"},
    "revmon_pipeline_open": {"kind", "stage"},
    "revmon_pipeline_open_amount": {"kind", "stage"},
    "revmon_pipeline_created": {"kind", "window"},
    "revmon_pipeline_created_amount": {"kind", "window"},
    "revmon_pipeline_won": {"kind", "window"},
    "revmon_pipeline_won_amount": {"kind", "window"},
    "revmon_pipeline_lost": {"kind", "window"},
    "revmon_pipeline_lost_amount": {"kind", "window"},
    "revmon_pipeline_win_ratio": {"kind", "window"},
    "revmon_pipeline_cycle_seconds_bucket": {"kind", "window", "le"},
    "revmon_pipeline_cycle_seconds_gcount": {"kind", "window"},
    "revmon_pipeline_cycle_seconds_gsum": {"kind", "window"},
    "revmon_pipeline_velocity_amount_per_day": {"kind", "window"},
    "revmon_pipeline_creation_pace_ratio": {"kind"},
    "revmon_target_amount": {"period", "kind"},
    "revmon_period_won_amount": {"period", "kind"},
    "revmon_pipeline_coverage_ratio": {"period", "kind"},
    "revmon_pipeline_gap_amount": {"period", "kind"},
    "revmon_revenue_amount": {"kind", "window"},
    "revmon_expense_amount": {"category", "window"},
    "revmon_er_ratio": {"window"},
    "revmon_customers": set(),
    "revmon_mrr_amount": set(),
    "revmon_customers_new": {"window"},
    "revmon_customers_churned": {"window"},
    "revmon_customer_churn_ratio": {"window"},
    "revmon_mrr_movement_amount": {"movement", "window"},
    "revmon_net_revenue_retention_ratio": {"window"},
    "revmon_quick_ratio": {"window"},
    "revmon_cac_payback_months": {"window"},
    "revmon_magic_number": {"window"},
    "revmon_accounts": {"segment"},
    "revmon_segment_revenue_amount": {"segment"},
    "revmon_sales_activities": {"segment", "kind", "window"},
    "revmon_sales_activity_seconds": {"segment", "window"},
    "revmon_accounts_undercovered": {"segment"},
    "revmon_stage_win_ratio": {"kind", "stage"},
    "revmon_pipeline_expected_amount": {"kind"},
    "revmon_events_total": {"type"},
    "revmon_events_rejected_total": {"reason"},
    "revmon_events_duplicate_total": set(),
    "revmon_events_late_total": set(),
    "revmon_watermark_seconds": set(),
    "revmon_event_lag_seconds": set(),
    "revmon_alerts_firing": {"alertname", "severity"},
    "revmon_build_info": {"version"},
}


def test_every_spec_series_is_exported_with_its_labels(tmp_path: Path) -> None:
    """A replay of a year of history exports every SPEC §3 family with exactly its labels."""
    history = tmp_path / "history.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "revmon",
            "simulate",
            "--days",
            "200",
            "--seed",
            "2",
            "--out",
            str(history),
        ],
        check=True,
        capture_output=True,
    )
    last_day = history.read_text().splitlines()[-1].split('"occurred_at":"')[1][:7]
    year, month = last_day.split("-")
    quarter = f"{year}-Q{(int(month) - 1) // 3 + 1}"
    config = tmp_path / "revmon.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "targets": [
                    {"period": quarter, "kind": "new_business", "amount": 50_000_000},
                    {"period": f"{year}-{month}", "kind": "all", "amount": 90_000_000},
                ]
            }
        )
    )
    out = tmp_path / "final.prom"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "revmon",
            "replay",
            str(history),
            "--config",
            str(config),
            "--metrics-out",
            str(out),
            "--log-level",
            "WARNING",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    seen: dict[str, set[frozenset[str]]] = {}
    for family in text_string_to_metric_families(out.read_text()):
        for sample in family.samples:
            seen.setdefault(sample.name, set()).add(frozenset(sample.labels))

    assert set(METRIC_HELP) <= {name.removesuffix("_bucket") for name in seen}
    for name, labels in LABELS.items():
        assert seen.get(name) == {frozenset(labels)}, name

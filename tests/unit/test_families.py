"""The catalogue of exported families (revmon/families.py) after SPEC v2."""

from __future__ import annotations

import pytest

from revmon.exposition import GAUGE_HISTOGRAMS
from revmon.families import FAMILIES


@pytest.mark.parametrize(
    ("name", "kind", "labels"),
    [
        pytest.param(
            "revmon_funnel_dwell_seconds",
            "gaugehistogram",
            ("funnel", "stage", "window"),
            id="dwell",
        ),
        pytest.param(
            "revmon_pipeline_cycle_seconds", "gaugehistogram", ("kind", "window"), id="cycle"
        ),
        pytest.param(
            "revmon_sales_activity_seconds", "gauge", ("segment", "window"), id="activity-seconds"
        ),
        pytest.param(
            "revmon_channel_pipeline_created_amount",
            "gauge",
            ("channel", "window"),
            id="channel-created",
        ),
        pytest.param("revmon_channel_won_amount", "gauge", ("channel", "window"), id="channel-won"),
        pytest.param(
            "revmon_channel_pipeline_to_spend_ratio",
            "gauge",
            ("channel", "window"),
            id="channel-ratio",
        ),
        pytest.param("revmon_quick_ratio", "gauge", ("window",), id="quick-ratio"),
        pytest.param("revmon_cac_payback_months", "gauge", ("window",), id="cac-payback"),
        pytest.param("revmon_magic_number", "gauge", ("window",), id="magic-number"),
    ],
)
def test_v2_families_are_catalogued(name: str, kind: str, labels: tuple[str, ...]) -> None:
    """Each v2 family has its SPEC type and labels, and is state exported by the owner."""
    family = FAMILIES[name]

    assert (family.kind, family.labels) == (kind, labels)
    assert family.is_state
    assert family.scope == "owner"
    assert (name in GAUGE_HISTOGRAMS) == (kind == "gaugehistogram")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("revmon_sales_minutes", id="minutes"),
        pytest.param("revmon_funnel_time_in_stage_seconds_sum", id="time-in-stage-sum"),
        pytest.param("revmon_pipeline_cycle_seconds_sum", id="cycle-sum"),
    ],
)
def test_v1_names_promtool_rejects_are_gone(name: str) -> None:
    """The three v1 names `promtool check metrics` flagged are no longer catalogued."""
    assert name not in FAMILIES


def test_help_texts_name_the_currency_and_the_mean() -> None:
    """Amounts say their currency; gauge histograms say how to take the mean."""
    for family in FAMILIES.values():
        if family.name.endswith("_amount"):
            assert "in the reporting currency" in family.help, family.name
        if family.kind == "gaugehistogram":
            assert "mean = _gsum / _gcount" in family.help, family.name

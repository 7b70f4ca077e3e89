"""The Funnel dashboard: inventory, ages, stale share, conversion, time in stage, flow."""

from __future__ import annotations

from revmon.grafana.model import (
    COUNT,
    FUNNEL,
    RATIO,
    SECONDS,
    WINDOW,
    Dashboard,
    Panel,
    Query,
    label_variable,
    quantile,
    value,
    window_variable,
)


def funnel() -> Dashboard:
    """Where do leads and deals pile up, go stale, convert or drop?"""
    FLOW = f"{FUNNEL},{WINDOW}"  # noqa: N806  # a selector, spelled like the others
    inventory = [
        Panel(
            "bargauge",
            "Open by stage",
            "Entities now in each open stage of the funnel (work in process).",
            COUNT,
            [Query(value("revmon_funnel_open", FUNNEL), "{{stage}}")],
            width=8,
        ),
        Panel(
            "heatmap",
            "Age of open entities",
            "How long open entities have been in their stage, all stages of the funnel: "
            "the gauge histogram revmon_funnel_age_seconds (buckets 1d to 365d).",
            SECONDS,
            [
                Query(
                    f"sum by (le) ({value('revmon_funnel_age_seconds_bucket', FUNNEL)})",
                    "{{le}}",
                    heatmap=True,
                )
            ],
            width=16,
        ),
        Panel(
            "timeseries",
            "Age percentiles by stage",
            "Median and 90th percentile age of the open entities of each stage, from the "
            "age buckets (a percentile falls on a bucket edge: 1d, 3d, 7d, 14d, 30d...).",
            SECONDS,
            [
                Query(quantile(0.5, "revmon_funnel_age_seconds", FUNNEL), "p50 {{stage}}"),
                Query(quantile(0.9, "revmon_funnel_age_seconds", FUNNEL), "p90 {{stage}}"),
            ],
        ),
        Panel(
            "timeseries",
            "Stale share against SLA",
            "Share of each stage's open entities older than the stage's SLA; the line is "
            "the StaleOpportunities threshold of 25%.",
            RATIO,
            [Query(value("revmon_funnel_stale_ratio", FUNNEL), "{{stage}}")],
            line=0.25,
        ),
    ]
    flow = [
        Panel(
            "timeseries",
            "Conversion by stage",
            "Advanced / (advanced + dropped) exits from each stage in the window.",
            RATIO,
            [Query(value("revmon_funnel_conversion_ratio", FLOW), "{{stage}}")],
        ),
        Panel(
            "timeseries",
            "Time in stage",
            "Median and 90th percentile time spent in each stage by the exits of the window "
            "(all outcomes), from the dwell-time buckets.",
            SECONDS,
            [
                Query(
                    quantile(0.5, "revmon_funnel_dwell_seconds", FLOW),
                    "p50 {{stage}}",
                ),
                Query(
                    quantile(0.9, "revmon_funnel_dwell_seconds", FLOW),
                    "p90 {{stage}}",
                ),
            ],
        ),
        Panel(
            "timeseries",
            "Entries by stage",
            "Entries into each stage in the window (creation counts as an entry).",
            COUNT,
            [Query(value("revmon_funnel_entries", FLOW), "{{stage}}")],
        ),
        Panel(
            "timeseries",
            "Exits by outcome",
            "Exits from the funnel's open stages in the window, by outcome (advanced, "
            "dropped, regressed).",
            COUNT,
            [
                Query(
                    f"sum by (outcome) ({value('revmon_funnel_exits', FLOW)})",
                    "{{outcome}}",
                )
            ],
            stacked=True,
        ),
    ]
    return Dashboard(
        "revmon-funnel",
        "revmon / Funnel",
        "Inventory and ages, stale share against SLA, conversion, time in stage and flow.",
        [label_variable("funnel", "Funnel", "revmon_funnel_open", "lead"), window_variable()],
        [("Inventory", inventory), ("Flow", flow)],
    )

"""The Pipeline and forecast dashboard: by kind, cycle, velocity, forecast, channels."""

from __future__ import annotations

from revmon.grafana.model import (
    COUNT,
    KIND,
    MULTIPLE,
    RATIO,
    SECONDS,
    WINDOW,
    Dashboard,
    Panel,
    Query,
    label_variable,
    mean,
    quantile,
    value,
    window_variable,
)


def pipeline(money: str) -> Dashboard:
    """How much pipeline is there, how fast does it close, what will it bring?"""
    CLOSED = f"{KIND},{WINDOW}"  # noqa: N806  # a selector, spelled like the others
    pipe = [
        Panel(
            "bargauge",
            "Open amount by stage",
            "Amount of the open opportunities of the kind, by stage.",
            money,
            [Query(value("revmon_pipeline_open_amount", KIND), "{{stage}}")],
            width=8,
        ),
        Panel(
            "bargauge",
            "Open by stage",
            "Open opportunities of the kind, by stage.",
            COUNT,
            [Query(value("revmon_pipeline_open", KIND), "{{stage}}")],
            width=8,
        ),
        Panel(
            "stat",
            "Win ratio",
            "Won / (won + lost) opportunities of the kind closed in the window, by count.",
            RATIO,
            [Query(value("revmon_pipeline_win_ratio", CLOSED), "{{kind}}")],
            width=8,
        ),
        Panel(
            "timeseries",
            "Created, won and lost amount",
            "Amount of the kind's opportunities created, won and lost in the window.",
            money,
            [
                Query(value("revmon_pipeline_created_amount", CLOSED), "created"),
                Query(value("revmon_pipeline_won_amount", CLOSED), "won"),
                Query(value("revmon_pipeline_lost_amount", CLOSED), "lost"),
            ],
        ),
        Panel(
            "timeseries",
            "Created, won and lost",
            "Opportunities of the kind created, won and lost in the window.",
            COUNT,
            [
                Query(value("revmon_pipeline_created", CLOSED), "created"),
                Query(value("revmon_pipeline_won", CLOSED), "won"),
                Query(value("revmon_pipeline_lost", CLOSED), "lost"),
            ],
        ),
        Panel(
            "timeseries",
            "Sales cycle",
            "Median, 90th percentile and mean time from creation to win of the window's "
            "wins of the kind.",
            SECONDS,
            [
                Query(quantile(0.5, "revmon_pipeline_cycle_seconds", CLOSED), "p50"),
                Query(quantile(0.9, "revmon_pipeline_cycle_seconds", CLOSED), "p90"),
                Query(mean("revmon_pipeline_cycle_seconds", CLOSED), "mean"),
            ],
        ),
        Panel(
            "timeseries",
            "Pipeline velocity",
            "Amount the kind's pipeline turns into wins per day: open count x win ratio x "
            "mean won amount / mean cycle in days.",
            money,
            [Query(value("revmon_pipeline_velocity_amount_per_day", CLOSED), "per day")],
        ),
    ]
    forecast = [
        Panel(
            "timeseries",
            "Stage-weighted forecast against target",
            "Open amount weighted by each stage's historical win ratio, plus what the period "
            "has already won, against the period's target.",
            money,
            [
                Query(value("revmon_pipeline_expected_amount", KIND), "expected from open"),
                Query(value("revmon_period_won_amount", KIND), "won {{period}}"),
                Query(value("revmon_target_amount", KIND), "target {{period}}"),
            ],
        ),
        Panel(
            "bargauge",
            "Win ratio by stage reached",
            "Of the kind's opportunities closed in 365 days, the share won among those that "
            "reached each stage (the forecast's weights).",
            RATIO,
            [Query(value("revmon_stage_win_ratio", KIND), "{{stage}}")],
        ),
    ]
    channels = [
        Panel(
            "timeseries",
            "Pipeline and won by channel against spend",
            "Pipeline created and amount won in the window by the lead's channel, with the "
            "channel's campaign spend.",
            money,
            [
                Query(
                    value("revmon_channel_pipeline_created_amount", WINDOW), "pipeline {{channel}}"
                ),
                Query(value("revmon_channel_won_amount", WINDOW), "won {{channel}}"),
                Query(value("revmon_marketing_spend_amount", WINDOW), "spend {{channel}}"),
            ],
        ),
        Panel(
            "bargauge",
            "Pipeline per unit of spend",
            "Pipeline created per unit of campaign spend in the window, by channel.",
            MULTIPLE,
            [Query(value("revmon_channel_pipeline_to_spend_ratio", WINDOW), "{{channel}}")],
            width=6,
        ),
        Panel(
            "bargauge",
            "Cost per new name",
            "Campaign spend per lead created in the window, by channel.",
            money,
            [Query(value("revmon_marketing_cost_per_name_amount", WINDOW), "{{channel}}")],
            width=6,
        ),
        Panel(
            "timeseries",
            "New names by channel",
            "Leads created in the window, by channel.",
            COUNT,
            [Query(value("revmon_marketing_new_names", WINDOW), "{{channel}}")],
            stacked=True,
            width=24,
        ),
    ]
    return Dashboard(
        "revmon-pipeline",
        "revmon / Pipeline and forecast",
        "Open, created, won and lost by kind, win ratio, cycle, velocity, forecast, channels.",
        [label_variable("kind", "Kind", "revmon_pipeline_open", "new_business"), window_variable()],
        [("Pipeline", pipe), ("Forecast", forecast), ("Channels", channels)],
    )

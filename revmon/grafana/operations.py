"""The Operations dashboard: revmon's own health, freshness and delivery."""

from __future__ import annotations

from revmon.grafana.model import (
    COUNT,
    PER_SECOND,
    SECONDS,
    Dashboard,
    Panel,
    Query,
    rate,
    value,
)


def operations() -> Dashboard:
    """Is revmon itself healthy, current, and delivering what it computes?"""
    ingest = [
        Panel(
            "timeseries",
            "Events applied per second",
            "Valid, non-duplicate events applied per second, by type, over every worker.",
            PER_SECOND,
            [Query(rate("revmon_events_total"), "{{type}}")],
            stacked=True,
        ),
        Panel(
            "timeseries",
            "Rejections per second",
            "Messages or batch elements rejected (and dead-lettered), by reason.",
            PER_SECOND,
            [Query(rate("revmon_events_rejected_total"), "{{reason}}")],
            stacked=True,
        ),
        Panel(
            "timeseries",
            "Duplicates and late events",
            "Events ignored as duplicates, and late events (applied, changing nothing about "
            "their entity's stage), per second.",
            PER_SECOND,
            [
                Query(rate("revmon_events_duplicate_total"), "duplicates"),
                Query(rate("revmon_events_late_total"), "late"),
            ],
        ),
        Panel(
            "timeseries",
            "Lag and watermark age",
            "Wall clock minus the newest event time applied (lag), and the age of revmon's "
            "evaluation instant now (watermark).",
            SECONDS,
            [
                Query(value("revmon_event_lag_seconds"), "event lag"),
                Query(f"time() - {value('revmon_watermark_seconds')}", "watermark age"),
            ],
        ),
    ]
    sources = [
        Panel(
            "timeseries",
            "Source silence",
            "Seconds since the last message of each input topic was received; "
            "RevmonSourceSilent fires after `source_silence` (6h).",
            SECONDS,
            [
                Query(
                    f"time() - {value('revmon_source_last_message_timestamp_seconds')}",
                    "{{source}}",
                )
            ],
            line=6 * 3600,
        ),
        Panel(
            "timeseries",
            "Newest event age by source",
            "Wall clock minus the newest occurred_at applied from each input topic.",
            SECONDS,
            [
                Query(
                    f"time() - {value('revmon_source_newest_event_timestamp_seconds')}",
                    "{{source}}",
                )
            ],
        ),
    ]
    delivery = [
        Panel(
            "timeseries",
            "Alert notifications",
            "Alert notifications per second by receiver (alertmanager, topic) and result "
            "(sent, failed, dropped).",
            PER_SECOND,
            [Query(rate("revmon_alert_notifications_total"), "{{receiver}} {{result}}")],
        ),
        Panel(
            "timeseries",
            "Metric messages",
            "Messages written to the metrics topic per second (changes, nulls, tombstones).",
            PER_SECOND,
            [Query(rate("revmon_metric_messages_total"), "metrics topic")],
        ),
        Panel(
            "stat",
            "Workers by version",
            "revmon workers reporting each version (revmon_build_info).",
            COUNT,
            [Query("count without (instance) (revmon_build_info)", "{{version}}")],
            width=24,
            height=5,
        ),
    ]
    return Dashboard(
        "revmon-operations",
        "revmon / Operations",
        "Events per second, rejections, duplicates, lag, source freshness, delivery.",
        [],
        [("Ingest", ingest), ("Sources", sources), ("Delivery", delivery)],
    )

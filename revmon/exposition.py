"""Every metric revmon exports, declared once against an injected registry (SPEC §3.9)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from revmon import __version__
from revmon.events import EVENT_TYPES, Reason
from revmon.kpi.ledger import Sample
from revmon.settings import Settings

# `_created` series double the exposition and no dashboard or rule of revmon reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class OperationsMetrics:
    """The operational series: applied, rejected, duplicate and late events, clocks, build.

    Counters are per worker process; Prometheus adds them with `sum without (instance)`.
    Every labelled series the config enumerates exists from the start, at 0.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        settings: Settings,
        *,
        watermark: Callable[[], float | None],
        newest_event: Callable[[], float | None],
        wall_clock: Callable[[], float],
        clock_owner: Callable[[], bool] = lambda: True,
    ) -> None:
        self.events = Counter(
            "revmon_events",
            "Valid, non-duplicate events applied, by type.",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "revmon_events_rejected",
            "Messages or batch elements rejected, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "revmon_events_duplicate",
            "Events ignored because their event_id was applied.",
            registry=registry,
        )
        self.late = Counter(
            "revmon_events_late",
            "Events older than their entity's current stage entry (applied, change nothing).",
            registry=registry,
        )
        alerts = Gauge(
            "revmon_alerts_firing",
            "1 while an alert instance of the rule fires.",
            ["alertname", "severity"],
            registry=registry,
        )
        build = Gauge("revmon_build_info", "revmon's version.", ["version"], registry=registry)
        build.labels(version=__version__).set(1)
        for event_type in EVENT_TYPES:
            self.events.labels(type=event_type)
        for reason in Reason:
            self.rejected.labels(reason=reason.value)
        for rule in settings.alerts:
            alerts.labels(alertname=rule.name, severity=rule.severity).set(0)
        self.alerts_firing = alerts
        registry.register(_ClockCollector(watermark, newest_event, wall_clock, clock_owner))


class _ClockCollector(Collector):
    """`revmon_watermark_seconds` and `revmon_event_lag_seconds`, computed at scrape time.

    Both are global (every partition's newest event), so only one worker exports them.
    """

    def __init__(
        self,
        watermark: Callable[[], float | None],
        newest_event: Callable[[], float | None],
        wall_clock: Callable[[], float],
        owner: Callable[[], bool],
    ) -> None:
        self._watermark = watermark
        self._newest = newest_event
        self._wall = wall_clock
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        if not self._owner():
            return
        now = self._watermark()
        if now is not None:
            yield GaugeMetricFamily(
                "revmon_watermark_seconds", "The evaluation instant `now`, unix seconds.", now
            )
        newest = self._newest()
        if newest is not None:
            yield GaugeMetricFamily(
                "revmon_event_lag_seconds",
                "Wall clock minus the newest occurred_at applied.",
                self._wall() - newest,
            )


#: Every SPEC §3.1–§3.8 family with its help text; gauges unless named in GAUGE_HISTOGRAMS.
METRIC_HELP: dict[str, str] = {
    "revmon_funnel_open": "Entities now in an open stage.",
    "revmon_funnel_age_seconds": "Age (now - entered_at) of open entities, a gauge histogram.",
    "revmon_funnel_stale": "Open entities older than their stage's SLA.",
    "revmon_funnel_stale_ratio": "Stale / open entities.",
    "revmon_funnel_entries": "Entries into a stage in the window (creation counts).",
    "revmon_funnel_exits": "Exits from an open stage by outcome in the window.",
    "revmon_funnel_conversion_ratio": "Advanced / (advanced + dropped) exits in the window.",
    "revmon_funnel_time_in_stage_seconds_sum": "Sum of time in stage over exits in the window.",
    "revmon_marketing_new_names": "Leads created in the window.",
    "revmon_marketing_spend_amount": "Campaign spend in the window.",
    "revmon_marketing_cost_per_name_amount": "Spend / new names in the window.",
    "revmon_pipeline_open": "Open opportunities.",
    "revmon_pipeline_open_amount": "Amount of open opportunities.",
    "revmon_pipeline_created": "Opportunities created in the window.",
    "revmon_pipeline_created_amount": "Amount at creation of opportunities created in the window.",
    "revmon_pipeline_won": "Opportunities won in the window.",
    "revmon_pipeline_won_amount": "Amount at close of opportunities won in the window.",
    "revmon_pipeline_lost": "Opportunities lost in the window.",
    "revmon_pipeline_lost_amount": "Amount at close of opportunities lost in the window.",
    "revmon_pipeline_win_ratio": "Won / (won + lost) opportunities in the window, by count.",
    "revmon_pipeline_cycle_seconds_sum": "Sum of (won_at - created_at) over wins in the window.",
    "revmon_pipeline_velocity_amount_per_day": "Open x win ratio x mean won amount / mean cycle.",
    "revmon_pipeline_creation_pace_ratio": "Created amount 30d / (created amount 90d / 3).",
    "revmon_target_amount": "Configured target of the period containing now.",
    "revmon_period_won_amount": "Won amount inside the period, up to now.",
    "revmon_pipeline_coverage_ratio": "Open amount / (target - period won).",
    "revmon_pipeline_gap_amount": "max(0, coverage x remaining target - open amount).",
    "revmon_revenue_amount": "Paid invoices minus refunds in the window.",
    "revmon_expense_amount": "Expenses and campaign spend in the window.",
    "revmon_er_ratio": "Expense / revenue in the window.",
    "revmon_customers": "Accounts with at least one active subscription.",
    "revmon_mrr_amount": "Sum of mrr of active subscriptions.",
    "revmon_customers_new": "Accounts that became customers in the window.",
    "revmon_customers_churned": "Accounts that stopped being customers in the window.",
    "revmon_customer_churn_ratio": "Churned / (customers - new + churned) in the window.",
    "revmon_mrr_movement_amount": "MRR movements in the window.",
    "revmon_net_revenue_retention_ratio": "Net revenue retention over the window.",
    "revmon_accounts": "Known accounts by segment.",
    "revmon_segment_revenue_amount": "365-day revenue of the segment's accounts.",
    "revmon_sales_activities": "Sales activities in the window by the account's segment now.",
    "revmon_sales_minutes": "Sales activity minutes in the window by segment now.",
    "revmon_accounts_undercovered": "Accounts not touched within their segment's cadence.",
    "revmon_stage_win_ratio": "Share won of opportunities closed in 365d that reached the stage.",
    "revmon_pipeline_expected_amount": "Stage-weighted amount of open opportunities.",
}
GAUGE_HISTOGRAMS = frozenset({"revmon_funnel_age_seconds"})
_GAUGE_HISTOGRAM_SUFFIXES = ("_bucket", "_gcount", "_gsum")


def family_of(sample_name: str) -> str:
    """The metric family a sample belongs to (`..._bucket` of a gauge histogram → its name)."""
    for suffix in _GAUGE_HISTOGRAM_SUFFIXES:
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in GAUGE_HISTOGRAMS:
            return base
    return sample_name


class KpiCollector(Collector):
    """The revenue metrics (SPEC §3.1–§3.8), computed from the engine's state at scrape time.

    `evaluate()` returns the samples, or None when this worker does not export them.
    """

    def __init__(self, evaluate: Callable[[], Sequence[Sample] | None]) -> None:
        self._evaluate = evaluate

    def collect(self) -> Iterable[Metric]:
        samples = self._evaluate()
        if not samples:
            return
        families: dict[str, Metric] = {}
        for sample in samples:
            name = family_of(sample.name)
            family = families.get(name)
            if family is None:
                kind = "gaugehistogram" if name in GAUGE_HISTOGRAMS else "gauge"
                family = families[name] = Metric(name, METRIC_HELP.get(name, name), kind)
            family.add_sample(sample.name, dict(sample.labels), sample.value)
        yield from families.values()


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of everything in the registry."""
    return generate_latest(registry)

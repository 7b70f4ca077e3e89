"""The catalogue of every metric family revmon exports (SPEC §3): type, labels, help, scope.

One source for the exposition (HELP texts, gauge histograms), the validation of alert
rules (a rule names a family and labels it has), the generated Prometheus rules and
dashboards (how a family aggregates across workers) and the docs test. Pure data: it
imports no framework.

Scope says how several workers' series add up (SPEC §4):
- ``owner``: exported by exactly one worker (the owner of input partition 0), so
  ``max without (instance)`` is its value whatever the number of workers (``sum`` too,
  except for the instant a takeover overlaps two exporters).
- ``worker``: a per-worker counter or gauge; ``sum without (instance)`` adds counters,
  ``max without (instance)`` takes the newest of timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["gauge", "gaugehistogram", "counter"]
Scope = Literal["owner", "worker"]


@dataclass(frozen=True, slots=True)
class Family:
    """One exported metric family."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str
    scope: Scope = "owner"
    #: The SPEC section it belongs to ("3.1" … "3.9").
    section: str = ""

    @property
    def aggregation(self) -> str:
        """The PromQL aggregation that gives the deployment's value of a series."""
        if self.scope == "owner" or self.name.endswith("_timestamp_seconds"):
            return "max"
        return "sum"

    @property
    def is_state(self) -> bool:
        """True for the SPEC §3.1–§3.8 series (state that survives restarts)."""
        return self.section != "3.9"


_W = ("window",)
#: Amount HELP texts end with this; the exposition names the configured currency in it.
REPORTING_CURRENCY = "in the reporting currency"


def _f(
    section: str,
    name: str,
    kind: Kind,
    labels: tuple[str, ...],
    help_: str,
    scope: Scope = "owner",
) -> Family:
    return Family(name, kind, labels, help_, scope, section)


_FAMILIES: tuple[Family, ...] = (
    # 3.1 inventory
    _f("3.1", "revmon_funnel_open", "gauge", ("funnel", "stage"), "Entities now in an open stage."),
    _f(
        "3.1",
        "revmon_funnel_age_seconds",
        "gaugehistogram",
        ("funnel", "stage"),
        "Age (now - entered_at) of open entities, a gauge histogram; mean = _gsum / _gcount.",
    ),
    _f(
        "3.1",
        "revmon_funnel_stale",
        "gauge",
        ("funnel", "stage"),
        "Open entities older than their stage's SLA.",
    ),
    _f("3.1", "revmon_funnel_stale_ratio", "gauge", ("funnel", "stage"), "Stale / open entities."),
    # 3.2 flow
    _f(
        "3.2",
        "revmon_funnel_entries",
        "gauge",
        ("funnel", "stage", *_W),
        "Entries into a stage in the window (creation counts).",
    ),
    _f(
        "3.2",
        "revmon_funnel_exits",
        "gauge",
        ("funnel", "stage", "outcome", *_W),
        "Exits from an open stage by outcome in the window.",
    ),
    _f(
        "3.2",
        "revmon_funnel_conversion_ratio",
        "gauge",
        ("funnel", "stage", *_W),
        "Advanced / (advanced + dropped) exits in the window.",
    ),
    _f(
        "3.2",
        "revmon_funnel_dwell_seconds",
        "gaugehistogram",
        ("funnel", "stage", *_W),
        "Time in stage of the exits (all outcomes) in the window, a gauge histogram; "
        "mean = _gsum / _gcount.",
    ),
    # 3.3 marketing
    _f(
        "3.3",
        "revmon_marketing_new_names",
        "gauge",
        ("channel", *_W),
        "Leads created in the window.",
    ),
    _f(
        "3.3",
        "revmon_marketing_spend_amount",
        "gauge",
        ("channel", *_W),
        "Campaign spend in the window, in the reporting currency.",
    ),
    _f(
        "3.3",
        "revmon_marketing_cost_per_name_amount",
        "gauge",
        ("channel", *_W),
        "Spend / new names in the window, in the reporting currency.",
    ),
    _f(
        "3.3",
        "revmon_channel_pipeline_created_amount",
        "gauge",
        ("channel", *_W),
        "Amount at creation of opportunities created in the window, by the channel of "
        "their lead source, in the reporting currency.",
    ),
    _f(
        "3.3",
        "revmon_channel_won_amount",
        "gauge",
        ("channel", *_W),
        "Amount at close of opportunities won in the window, by the channel of their "
        "lead source, in the reporting currency.",
    ),
    _f(
        "3.3",
        "revmon_channel_pipeline_to_spend_ratio",
        "gauge",
        ("channel", *_W),
        "Channel pipeline created / the channel's spend in the window.",
    ),
    # 3.4 pipeline
    _f("3.4", "revmon_pipeline_open", "gauge", ("kind", "stage"), "Open opportunities."),
    _f(
        "3.4",
        "revmon_pipeline_open_amount",
        "gauge",
        ("kind", "stage"),
        "Amount of open opportunities, in the reporting currency.",
    ),
    _f("3.4", "revmon_pipeline_created", "gauge", ("kind", *_W), "Opportunities created."),
    _f(
        "3.4",
        "revmon_pipeline_created_amount",
        "gauge",
        ("kind", *_W),
        "Amount at creation of opportunities created in the window, in the reporting currency.",
    ),
    _f("3.4", "revmon_pipeline_won", "gauge", ("kind", *_W), "Opportunities won in the window."),
    _f(
        "3.4",
        "revmon_pipeline_won_amount",
        "gauge",
        ("kind", *_W),
        "Amount at close of opportunities won in the window, in the reporting currency.",
    ),
    _f("3.4", "revmon_pipeline_lost", "gauge", ("kind", *_W), "Opportunities lost in the window."),
    _f(
        "3.4",
        "revmon_pipeline_lost_amount",
        "gauge",
        ("kind", *_W),
        "Amount at close of opportunities lost in the window, in the reporting currency.",
    ),
    _f(
        "3.4",
        "revmon_pipeline_win_ratio",
        "gauge",
        ("kind", *_W),
        "Won / (won + lost) opportunities in the window, by count.",
    ),
    _f(
        "3.4",
        "revmon_pipeline_cycle_seconds",
        "gaugehistogram",
        ("kind", *_W),
        "Sales cycle (won_at - created_at) of the wins in the window, a gauge histogram; "
        "mean = _gsum / _gcount.",
    ),
    _f(
        "3.4",
        "revmon_pipeline_velocity_amount_per_day",
        "gauge",
        ("kind", *_W),
        "Open x win ratio x mean won amount / mean cycle in days, in the reporting currency.",
    ),
    _f(
        "3.4",
        "revmon_pipeline_creation_pace_ratio",
        "gauge",
        ("kind",),
        "Created amount 30d / (created amount 90d / 3); below 1 the pipe is thinning.",
    ),
    _f(
        "3.4",
        "revmon_target_amount",
        "gauge",
        ("period", "kind"),
        "Configured target of the period containing now, in the reporting currency.",
    ),
    _f(
        "3.4",
        "revmon_period_won_amount",
        "gauge",
        ("period", "kind"),
        "Won amount inside the period, up to now, in the reporting currency.",
    ),
    _f(
        "3.4",
        "revmon_pipeline_coverage_ratio",
        "gauge",
        ("period", "kind"),
        "Open amount / (target - period won), while the remainder is positive.",
    ),
    _f(
        "3.4",
        "revmon_pipeline_gap_amount",
        "gauge",
        ("period", "kind"),
        "max(0, coverage x remaining target - open amount), in the reporting currency.",
    ),
    # 3.5 finance
    _f(
        "3.5",
        "revmon_revenue_amount",
        "gauge",
        ("kind", *_W),
        "Paid invoices minus refunds in the window, in the reporting currency.",
    ),
    _f(
        "3.5",
        "revmon_expense_amount",
        "gauge",
        ("category", *_W),
        "Expenses and campaign spend in the window, in the reporting currency.",
    ),
    _f("3.5", "revmon_er_ratio", "gauge", _W, "Expense / revenue in the window."),
    # 3.6 customers
    _f("3.6", "revmon_customers", "gauge", (), "Accounts with at least one active subscription."),
    _f(
        "3.6",
        "revmon_mrr_amount",
        "gauge",
        (),
        "Sum of mrr of active subscriptions, in the reporting currency.",
    ),
    _f("3.6", "revmon_customers_new", "gauge", _W, "Accounts that became customers."),
    _f("3.6", "revmon_customers_churned", "gauge", _W, "Accounts that stopped being customers."),
    _f(
        "3.6",
        "revmon_customer_churn_ratio",
        "gauge",
        _W,
        "Churned / (customers - new + churned) in the window.",
    ),
    _f(
        "3.6",
        "revmon_mrr_movement_amount",
        "gauge",
        ("movement", *_W),
        "MRR movements in the window, in the reporting currency.",
    ),
    _f(
        "3.6",
        "revmon_net_revenue_retention_ratio",
        "gauge",
        _W,
        "Net revenue retention over the window.",
    ),
    _f(
        "3.6",
        "revmon_quick_ratio",
        "gauge",
        _W,
        "MRR gained (new + expansion) / MRR lost (contraction + churn) in the window.",
    ),
    _f(
        "3.6",
        "revmon_cac_payback_months",
        "gauge",
        _W,
        "Sales and marketing expense / MRR gained in the window: months of new MRR "
        "that pay the spend back.",
    ),
    _f(
        "3.6",
        "revmon_magic_number",
        "gauge",
        _W,
        "(MRR gained - MRR lost) x 12 / sales and marketing expense in the window.",
    ),
    # 3.7 accounts
    _f("3.7", "revmon_accounts", "gauge", ("segment",), "Known accounts by segment."),
    _f(
        "3.7",
        "revmon_segment_revenue_amount",
        "gauge",
        ("segment",),
        "365-day revenue of the segment's accounts, in the reporting currency.",
    ),
    _f(
        "3.7",
        "revmon_sales_activities",
        "gauge",
        ("segment", "kind", *_W),
        "Sales activities in the window by the account's segment now.",
    ),
    _f(
        "3.7",
        "revmon_sales_activity_seconds",
        "gauge",
        ("segment", *_W),
        "Time spent in sales activities in the window (their minutes x 60), by segment now.",
    ),
    _f(
        "3.7",
        "revmon_accounts_undercovered",
        "gauge",
        ("segment",),
        "Accounts not touched within their segment's cadence.",
    ),
    # 3.8 forecast
    _f(
        "3.8",
        "revmon_stage_win_ratio",
        "gauge",
        ("kind", "stage"),
        "Share won of opportunities closed in 365d that reached the stage.",
    ),
    _f(
        "3.8",
        "revmon_pipeline_expected_amount",
        "gauge",
        ("kind",),
        "Stage-weighted amount of open opportunities, in the reporting currency.",
    ),
    # 3.9 operations
    _f("3.9", "revmon_events_total", "counter", ("type",), "Applied events.", "worker"),
    _f(
        "3.9",
        "revmon_events_rejected_total",
        "counter",
        ("reason",),
        "Messages or batch elements rejected, by reason.",
        "worker",
    ),
    _f(
        "3.9",
        "revmon_events_duplicate_total",
        "counter",
        (),
        "Events ignored as duplicates.",
        "worker",
    ),
    _f("3.9", "revmon_events_late_total", "counter", (), "Late events.", "worker"),
    _f("3.9", "revmon_watermark_seconds", "gauge", (), "The evaluation instant now."),
    _f(
        "3.9",
        "revmon_event_lag_seconds",
        "gauge",
        (),
        "Wall clock minus the newest occurred_at applied.",
    ),
    _f(
        "3.9",
        "revmon_alerts_firing",
        "gauge",
        ("alertname", "severity"),
        "Firing alert instances of the rule.",
    ),
    _f("3.9", "revmon_build_info", "gauge", ("version",), "revmon's version.", "worker"),
    _f(
        "3.9",
        "revmon_source_last_message_timestamp_seconds",
        "gauge",
        ("source",),
        "Wall-clock time the last message of the input topic was received, unix seconds.",
        "worker",
    ),
    _f(
        "3.9",
        "revmon_source_newest_event_timestamp_seconds",
        "gauge",
        ("source",),
        "Newest occurred_at applied from the input topic, unix seconds.",
        "worker",
    ),
    _f(
        "3.9",
        "revmon_alert_notifications_total",
        "counter",
        ("receiver", "result"),
        "Alert notifications by receiver (alertmanager, topic) and result.",
        "worker",
    ),
    _f(
        "3.9",
        "revmon_ready",
        "gauge",
        (),
        "1 when this worker is ready (/readyz answers 200), else 0.",
        "worker",
    ),
    _f(
        "3.9",
        "revmon_metric_messages_total",
        "counter",
        (),
        "Messages written to the metrics topic.",
        "worker",
    ),
)

FAMILIES: dict[str, Family] = {f.name: f for f in _FAMILIES}


def help_text(name: str, currency: str) -> str:
    """The HELP text of family `name`, an amount's naming `currency` (e.g. USD)."""
    found = FAMILIES.get(name)
    if found is None:
        return name
    return found.help.replace(REPORTING_CURRENCY, f"in {currency}, the reporting currency")


def family(name: str) -> Family | None:
    """The family called `name`, or None."""
    return FAMILIES.get(name)


def state_families() -> list[Family]:
    """The SPEC §3.1–§3.8 families."""
    return [f for f in FAMILIES.values() if f.is_state]

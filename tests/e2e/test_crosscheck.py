"""`revmon replay` against a plain batch computation (tests/e2e/batch.py) of the same file.

A 400-day simulated history (its opening book loaded as snapshots, deals with lead
sources and without accounts) is spiked with duplicates, late events, edge-case entity
sequences (entities, subscriptions, accounts, v2 snapshots, channels and expiries) and
bad lines, and replayed with funnel expiry configured; every series of SPEC §3.1–§3.8
and the §3.9 counters that the replay exports must equal what the batch computes from
SPEC alone.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from revmon.settings import load_settings
from tests.e2e.batch import DAY, YEAR, Batch, Key, compute
from tests.e2e.running import revmon, samples

pytestmark = pytest.mark.e2e

DAYS, SEED = 400, 11
DUPLICATES = 30
# Duplicates are only promised within `dedupe_horizon` (30 d) of the newest event applied;
# copying only events within 28 d of the newest in the file keeps every copy recognisable
# whatever order the worker reads the topics in.
COPY_WITHIN = 28 * DAY
QUARTER_TARGET, MONTH_TARGET = 3_000_000, 2_000_000

FAMILIES: dict[str, tuple[str, ...]] = {
    "funnel": (
        "revmon_funnel_open",
        "revmon_funnel_age_seconds_bucket",
        "revmon_funnel_age_seconds_gcount",
        "revmon_funnel_age_seconds_gsum",
        "revmon_funnel_stale",
        "revmon_funnel_stale_ratio",
        "revmon_funnel_entries",
        "revmon_funnel_exits",
        "revmon_funnel_conversion_ratio",
        "revmon_funnel_dwell_seconds_bucket",
        "revmon_funnel_dwell_seconds_gcount",
        "revmon_funnel_dwell_seconds_gsum",
    ),
    "marketing": (
        "revmon_marketing_new_names",
        "revmon_marketing_spend_amount",
        "revmon_marketing_cost_per_name_amount",
    ),
    "channels": (
        "revmon_channel_pipeline_created_amount",
        "revmon_channel_won_amount",
        "revmon_channel_pipeline_to_spend_ratio",
    ),
    "pipeline": (
        "revmon_pipeline_open",
        "revmon_pipeline_open_amount",
        "revmon_pipeline_created",
        "revmon_pipeline_created_amount",
        "revmon_pipeline_won",
        "revmon_pipeline_won_amount",
        "revmon_pipeline_lost",
        "revmon_pipeline_lost_amount",
        "revmon_pipeline_win_ratio",
        "revmon_pipeline_cycle_seconds_bucket",
        "revmon_pipeline_cycle_seconds_gcount",
        "revmon_pipeline_cycle_seconds_gsum",
        "revmon_pipeline_velocity_amount_per_day",
        "revmon_pipeline_creation_pace_ratio",
    ),
    "targets": (
        "revmon_target_amount",
        "revmon_period_won_amount",
        "revmon_pipeline_coverage_ratio",
        "revmon_pipeline_gap_amount",
    ),
    "finance": ("revmon_revenue_amount", "revmon_expense_amount", "revmon_er_ratio"),
    "forecast": ("revmon_stage_win_ratio", "revmon_pipeline_expected_amount"),
    "customers": (
        "revmon_customers",
        "revmon_mrr_amount",
        "revmon_customers_new",
        "revmon_customers_churned",
        "revmon_customer_churn_ratio",
        "revmon_mrr_movement_amount",
        "revmon_net_revenue_retention_ratio",
    ),
    "economics": ("revmon_quick_ratio", "revmon_cac_payback_months", "revmon_magic_number"),
    "accounts": (
        "revmon_accounts",
        "revmon_segment_revenue_amount",
        "revmon_sales_activities",
        "revmon_sales_activity_seconds",
        "revmon_accounts_undercovered",
    ),
    "operations": (
        "revmon_events_total",
        "revmon_events_duplicate_total",
        "revmon_events_late_total",
        "revmon_events_rejected_total",
    ),
}
# Counts are compared exactly; amounts, seconds and ratios to rel 1e-9 / abs 1e-6.
COUNTS = frozenset(
    {
        "revmon_funnel_open",
        "revmon_funnel_age_seconds_bucket",
        "revmon_funnel_age_seconds_gcount",
        "revmon_funnel_stale",
        "revmon_funnel_entries",
        "revmon_funnel_exits",
        "revmon_funnel_dwell_seconds_bucket",
        "revmon_funnel_dwell_seconds_gcount",
        "revmon_marketing_new_names",
        "revmon_pipeline_open",
        "revmon_pipeline_created",
        "revmon_pipeline_won",
        "revmon_pipeline_lost",
        "revmon_pipeline_cycle_seconds_bucket",
        "revmon_pipeline_cycle_seconds_gcount",
        "revmon_customers",
        "revmon_customers_new",
        "revmon_customers_churned",
        "revmon_accounts",
        "revmon_sales_activities",
        "revmon_accounts_undercovered",
        *FAMILIES["operations"],
    }
)
MIB = 1024 * 1024


def line(**fields: Any) -> bytes:
    """One compact JSON line."""
    return json.dumps(fields, separators=(",", ":")).encode()


def stamp(at: float, offset_hours: float = 0) -> str:
    """RFC 3339 text of unix time `at`, written with the given UTC offset."""
    zone = UTC if offset_hours == 0 else timezone(timedelta(hours=offset_hours))
    return datetime.fromtimestamp(at, zone).isoformat()


@dataclass(frozen=True)
class Crafted:
    """The replay input and what was injected into it."""

    lines: list[bytes]
    duplicates: int
    late: int
    rejected: Counter[str]


def late_events(clean: Batch) -> list[bytes]:
    """Events about existing entities dated before their current stage entry (SPEC §1).

    Each would change its entity if it were on time; appended after the whole history.
    """
    funnels = clean.settings.funnels
    leads = sorted(clean.leads.items())
    opps = sorted(clean.opportunities.items())
    open_leads = [(i, e) for i, e in leads if e.stage in funnels.lead.stages]
    converted = next((i, e) for i, e in leads if e.stage == funnels.lead.converted)
    open_opps = [(i, e) for i, e in opps if e.stage in funnels.opportunity.stages]
    lost = next((i, e) for i, e in opps if e.stage in funnels.opportunity.dropped)
    won = next((i, e) for i, e in opps if e.stage == funnels.opportunity.converted)
    out = []
    for n, (lead_id, lead) in enumerate(open_leads[:2]):
        out.append(
            line(
                event_id=f"xc-late-lead-{n}",
                type="lead.stage_changed",
                occurred_at=stamp(lead.entered - DAY),
                lead_id=lead_id,
                stage=funnels.lead.dropped[0],
            )
        )
    out.append(
        line(
            event_id="xc-late-converted",
            type="lead.stage_changed",
            occurred_at=stamp(converted[1].entered - 3600, -5),
            lead_id=converted[0],
            stage=funnels.lead.stages[0],
        )
    )
    for n, (opp_id, opp) in enumerate(open_opps[:2]):
        out.append(
            line(
                event_id=f"xc-late-amount-{n}",
                type="opportunity.amount_changed",
                occurred_at=stamp(opp.entered - 3600),
                opportunity_id=opp_id,
                amount="999999.00",
            )
        )
    opp_id, opp = open_opps[2]
    out.append(
        line(
            event_id="xc-late-win",
            type="opportunity.stage_changed",
            occurred_at=stamp(opp.entered - 60),
            opportunity_id=opp_id,
            stage=funnels.opportunity.converted,
            amount="1.00",
        )
    )
    out.append(
        line(
            event_id="xc-late-reopen",
            type="opportunity.stage_changed",
            occurred_at=stamp(lost[1].entered - DAY),
            opportunity_id=lost[0],
            stage=funnels.opportunity.stages[1],
        )
    )
    out.append(
        line(
            event_id="xc-late-won-amount",
            type="opportunity.amount_changed",
            occurred_at=stamp(won[1].entered - DAY),
            opportunity_id=won[0],
            amount="5.00",
        )
    )
    return out


def edge_sequences(newest: float) -> list[bytes]:
    """Fresh entities walked through the SPEC §1 rules, plus window edges and defaults."""
    t = newest - 5 * DAY
    h = 3600.0
    rows: list[dict[str, Any]] = [
        # A lead first seen through a stage change, a repeat creation, a same-stage move,
        # advance, regress, drop, then moves of a closed lead.
        {"type": "lead.stage_changed", "lead_id": "xc-lead-1", "stage": "mql", "at": t},
        {"type": "lead.created", "lead_id": "xc-lead-1", "channel": "email", "at": t + h},
        {"type": "lead.stage_changed", "lead_id": "xc-lead-1", "stage": "mql", "at": t + 2 * h},
        {"type": "lead.stage_changed", "lead_id": "xc-lead-1", "stage": "sql", "at": t + 3 * h},
        {"type": "lead.stage_changed", "lead_id": "xc-lead-1", "stage": "mql", "at": t + 4 * h},
        {
            "type": "lead.stage_changed",
            "lead_id": "xc-lead-1",
            "stage": "disqualified",
            "at": t + 5 * h,
        },
        {"type": "lead.stage_changed", "lead_id": "xc-lead-1", "stage": "name", "at": t + 6 * h},
        # A lead created at a stage from a channel outside the list; converted; then moved.
        {"type": "lead.created", "lead_id": "xc-lead-2", "channel": "tv", "stage": "sql", "at": t},
        {
            "type": "lead.stage_changed",
            "lead_id": "xc-lead-2",
            "stage": "opportunity",
            "at": t + 2 * h,
        },
        {"type": "lead.stage_changed", "lead_id": "xc-lead-2", "stage": "sql", "at": t + 3 * h},
        {"type": "lead.created", "lead_id": "xc-lead-3", "at": t, "offset": -5},
        # An unknown opportunity appears through a stage change with an amount; is
        # re-valued, lost at a new amount, re-valued and won while closed (nothing),
        # re-opened with an amount, moved to its own stage (nothing), and won.
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-1",
            "stage": "discovery",
            "amount": "1000.00",
            "at": t,
        },
        {
            "type": "opportunity.amount_changed",
            "opportunity_id": "xc-opp-1",
            "amount": "1500",
            "at": t + h,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-1",
            "stage": "lost",
            "amount": 1200.5,
            "at": t + 2 * h,
        },
        {
            "type": "opportunity.amount_changed",
            "opportunity_id": "xc-opp-1",
            "amount": "9999",
            "at": t + 3 * h,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-1",
            "stage": "won",
            "at": t + 4 * h,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-1",
            "stage": "proposal",
            "amount": "2000",
            "at": t + 5 * h,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-1",
            "stage": "proposal",
            "amount": "7777",
            "at": t + 6 * h,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-1",
            "stage": "won",
            "at": t + 7 * h,
        },
        # A renewal created late in the funnel, closing this month, advanced with an amount.
        {
            "type": "opportunity.created",
            "opportunity_id": "xc-opp-2",
            "account_id": "xc-acc",
            "amount": "5000",
            "kind": "renewal",
            "stage": "proposal",
            "expected_close_date": stamp(newest)[:10],
            "at": t,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-2",
            "stage": "negotiation",
            "amount": "5500",
            "at": t + h,
        },
        # Re-valuing an unknown opportunity creates nothing.
        {
            "type": "opportunity.amount_changed",
            "opportunity_id": "xc-opp-3",
            "amount": "10",
            "at": t,
        },
        # Created already won; created closing next year, then created again (nothing).
        {
            "type": "opportunity.created",
            "opportunity_id": "xc-opp-4",
            "account_id": "xc-acc",
            "amount": "300",
            "kind": "expansion",
            "stage": "won",
            "at": t,
        },
        {
            "type": "opportunity.created",
            "opportunity_id": "xc-opp-5",
            "account_id": "xc-acc",
            "amount": "800",
            "kind": "new_business",
            "expected_close_date": stamp(newest + 400 * DAY)[:10],
            "at": t,
        },
        {
            "type": "opportunity.created",
            "opportunity_id": "xc-opp-5",
            "account_id": "xc-acc",
            "amount": "1",
            "kind": "renewal",
            "at": t + h,
        },
        # First seen lost, re-opened, advanced.
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-6",
            "stage": "lost",
            "at": t,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-6",
            "stage": "qualification",
            "at": t + h,
        },
        {
            "type": "opportunity.stage_changed",
            "opportunity_id": "xc-opp-6",
            "stage": "discovery",
            "at": t + 2 * h,
        },
        # Money with defaults, an explicit reporting currency, and window edges: exactly
        # on now - 7d (outside 7d) and one second after it (inside).
        {"type": "campaign.spend", "campaign_id": "xc-cmp", "amount": "100", "at": t},
        {"type": "campaign.spend", "campaign_id": "xc-cmp", "channel": "tv", "amount": 50, "at": t},
        {"type": "invoice.paid", "account_id": "xc-acc", "amount": "1000", "at": t},
        {"type": "refund.issued", "account_id": "xc-acc", "amount": "250", "at": t + h},
        {
            "type": "expense.recorded",
            "category": "tools",
            "amount": 12.5,
            "currency": "USD",
            "at": newest - 7 * DAY,
        },
        {
            "type": "expense.recorded",
            "category": "analytics",
            "amount": "7.25",
            "at": newest - 7 * DAY + 1,
        },
        {
            "type": "campaign.spend",
            "campaign_id": "xc-cmp",
            "channel": "webinar",
            "amount": "33",
            "at": newest - 30 * DAY,
        },
        *account_sequences(newest),
        *v2_sequences(newest),
    ]
    out = []
    for n, row in enumerate(rows):
        fields = {k: v for k, v in row.items() if k not in ("at", "offset")}
        occurred_at = stamp(row["at"], row.get("offset", 0))
        out.append(line(event_id=f"xc-edge-{n}", occurred_at=occurred_at, **fields))
    return out


def v2_sequences(newest: float) -> list[dict[str, Any]]:
    """Snapshots, lead sources on deals, deals without accounts and expiries (SPEC v2).

    The replay's config expires lead `mql` after 30 d and opportunity `discovery` after
    45 d and `negotiation` after 30 d (`EXPIRE`).
    """
    h = 3600.0

    def snap(at: float) -> dict[str, Any]:
        return {"snapshot": True, "entered_at": stamp(at, 2)}

    def deal(n: int, at: float, stage: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "opportunity.created",
            "opportunity_id": f"xc-v2-opp-{n}",
            "amount": "1000",
            "kind": "new_business",
            "stage": stage,
            "at": at,
            **extra,
        }

    def to(n: int, at: float, stage: str, **extra: Any) -> dict[str, Any]:
        return {
            "type": "opportunity.stage_changed",
            "opportunity_id": f"xc-v2-opp-{n}",
            "stage": stage,
            "at": at,
            **extra,
        }

    return [
        # Snapshot leads: one in sql (no expiry), one in mql since 40 d (expired 10 d ago),
        # and a snapshot of a lead that exists (nothing).
        {
            "type": "lead.created",
            "lead_id": "xc-v2-lead-1",
            "stage": "sql",
            "channel": "email",
            "at": newest - DAY,
            **snap(newest - 20 * DAY),
        },
        {
            "type": "lead.created",
            "lead_id": "xc-v2-lead-2",
            "stage": "mql",
            "at": newest - DAY,
            **snap(newest - 40 * DAY),
        },
        {"type": "lead.created", "lead_id": "xc-v2-lead-3", "at": newest - 3 * DAY},
        {
            "type": "lead.created",
            "lead_id": "xc-v2-lead-3",
            "stage": "sql",
            "at": newest - DAY,
            **snap(newest - 9 * DAY),
        },
        # A lead in mql held by an event inside its period; one moved exactly at its deadline;
        # one moved a second after it (found dropped).
        {
            "type": "lead.created",
            "lead_id": "xc-v2-lead-4",
            "stage": "mql",
            "at": newest - 60 * DAY,
        },
        {
            "type": "lead.stage_changed",
            "lead_id": "xc-v2-lead-4",
            "stage": "mql",
            "at": newest - 50 * DAY,
        },
        {
            "type": "lead.created",
            "lead_id": "xc-v2-lead-5",
            "stage": "mql",
            "at": newest - 35 * DAY,
        },
        {
            "type": "lead.stage_changed",
            "lead_id": "xc-v2-lead-5",
            "stage": "sql",
            "at": newest - 5 * DAY,
        },
        {
            "type": "lead.created",
            "lead_id": "xc-v2-lead-6",
            "stage": "mql",
            "at": newest - 35 * DAY,
        },
        {
            "type": "lead.stage_changed",
            "lead_id": "xc-v2-lead-6",
            "stage": "sql",
            "at": newest - 5 * DAY + 1,
        },
        # A snapshot deal without an account, from a channel, expiring in negotiation.
        deal(1, newest - DAY, "negotiation", channel="webinar", **snap(newest - 50 * DAY)),
        # A deal from paid search without an account, won; one from a channel off the list.
        deal(2, newest - 3 * DAY, "qualification", channel="paid_search"),
        to(2, newest - 3 * DAY + h, "won", amount="1100"),
        deal(3, newest - 2 * DAY, "discovery", channel="tv", account_id="xc-acc"),
        # Expired in negotiation, re-opened after its deadline, expiring again.
        deal(4, newest - 80 * DAY, "negotiation", channel="email"),
        to(4, newest - 40 * DAY, "negotiation"),
        # Held by an amount change inside its period; won exactly at its deadline.
        deal(5, newest - 70 * DAY, "negotiation"),
        {
            "type": "opportunity.amount_changed",
            "opportunity_id": "xc-v2-opp-5",
            "amount": "1234.5",
            "at": newest - 60 * DAY,
        },
        deal(6, newest - 35 * DAY, "negotiation", channel="referral"),
        to(6, newest - 5 * DAY, "won"),
        # Expired in discovery: an amount change and a win after the deadline change nothing.
        deal(7, newest - 60 * DAY, "discovery"),
        {
            "type": "opportunity.amount_changed",
            "opportunity_id": "xc-v2-opp-7",
            "amount": "5",
            "at": newest - 10 * DAY,
        },
        to(7, newest - 9 * DAY, "won", amount="99"),
        # A snapshot deal won later: not created, its cycle starts at entered_at.
        deal(8, newest - 4 * DAY, "proposal", channel="events", **snap(newest - 12 * DAY)),
        to(8, newest - 2 * DAY, "won"),
    ]


def account_sequences(newest: float) -> list[dict[str, Any]]:
    """Subscriptions out of arrival order and accounts on segment and coverage edges."""
    t = newest - 5 * DAY
    h = 3600.0
    sub = "subscription"
    return [
        # A change and a cancel arrive before their start but happened after it: the
        # account becomes a customer at t, expands at t + h and churns at t + 2h; a
        # change after the cancel changes nothing.
        {"type": f"{sub}.canceled", "subscription_id": "xc-sub-1", "at": t + 2 * h},
        {"type": f"{sub}.changed", "subscription_id": "xc-sub-1", "mrr": "300", "at": t + h},
        {
            "type": f"{sub}.started",
            "subscription_id": "xc-sub-1",
            "account_id": "xc-cust-1",
            "mrr": "200",
            "at": t,
        },
        {"type": f"{sub}.changed", "subscription_id": "xc-sub-1", "mrr": "900", "at": t + 3 * h},
        # A second subscription of an account (expansion), a change down (contraction),
        # a cancel leaving another active (contraction), arriving before an earlier change.
        {
            "type": f"{sub}.started",
            "subscription_id": "xc-sub-2",
            "account_id": "xc-cust-2",
            "mrr": "100.50",
            "at": t,
        },
        {
            "type": f"{sub}.started",
            "subscription_id": "xc-sub-3",
            "account_id": "xc-cust-2",
            "mrr": "50",
            "at": t + h,
        },
        {"type": f"{sub}.canceled", "subscription_id": "xc-sub-3", "at": t + 3 * h},
        {"type": f"{sub}.changed", "subscription_id": "xc-sub-3", "mrr": "70", "at": t + 2 * h},
        {"type": f"{sub}.changed", "subscription_id": "xc-sub-2", "mrr": "80", "at": t + 2 * h},
        # A subscription started long ago (new outside the short windows), still active;
        # events of a subscription never started change nothing.
        {
            "type": f"{sub}.started",
            "subscription_id": "xc-sub-4",
            "account_id": "xc-cust-3",
            "mrr": "1000",
            "at": newest - 200 * DAY,
        },
        {"type": f"{sub}.changed", "subscription_id": "xc-sub-9", "mrr": "5", "at": t},
        {"type": f"{sub}.canceled", "subscription_id": "xc-sub-9", "at": t},
        # Exactly 10 000 of revenue (10k_100k, cadence 90d), touched by a call: covered.
        {"type": "invoice.paid", "account_id": "xc-seg-1", "amount": "10500", "at": t},
        {"type": "refund.issued", "account_id": "xc-seg-1", "amount": "500", "at": t + h},
        {"type": "activity.logged", "account_id": "xc-seg-1", "kind": "call", "at": t},
        # Exactly 10 000 too, only emailed: never touched, undercovered.
        {"type": "invoice.paid", "account_id": "xc-seg-2", "amount": 10000, "at": t},
        {
            "type": "activity.logged",
            "account_id": "xc-seg-2",
            "kind": "email",
            "minutes": "2.5",
            "at": t,
        },
        # Revenue just inside the 365 days (one invoice exactly on the edge, outside);
        # a meeting exactly a cadence ago (not older than it: covered).
        {"type": "invoice.paid", "account_id": "xc-seg-3", "amount": "5000", "at": newest - YEAR},
        {
            "type": "invoice.paid",
            "account_id": "xc-seg-3",
            "amount": "20000",
            "at": newest - YEAR + 1,
        },
        {
            "type": "activity.logged",
            "account_id": "xc-seg-3",
            "kind": "meeting",
            "at": newest - 90 * DAY,
        },
        # A visit a second more than a cadence ago: undercovered.
        {"type": "invoice.paid", "account_id": "xc-seg-4", "amount": "50000", "at": t},
        {
            "type": "activity.logged",
            "account_id": "xc-seg-4",
            "kind": "visit",
            "minutes": 30,
            "at": newest - 90 * DAY - 1,
        },
        # Refunds only: negative revenue in `zero`; an account known only from a lead,
        # and one just under 10 000 with a touch-less history (lt_10k has no cadence).
        {"type": "refund.issued", "account_id": "xc-seg-5", "amount": "300", "at": t},
        {"type": "lead.created", "lead_id": "xc-lead-9", "account_id": "xc-seg-6", "at": t},
        {"type": "invoice.paid", "account_id": "xc-seg-7", "amount": "9999.999999", "at": t},
    ]


def bad_lines(on_time: str) -> list[tuple[str, bytes]]:
    """Lines SPEC §1 rejects, each with its reason."""
    lead = {"type": "lead.created", "occurred_at": on_time, "lead_id": "xc-bad-lead"}
    spend = {
        "type": "campaign.spend",
        "occurred_at": on_time,
        "campaign_id": "xc-bad",
        "amount": "5",
    }
    invalid = [
        {**lead, "occurred_at": "2025-06-01T10:00:00"},  # naive timestamp
        {**lead, "occurred_at": "yesterday"},
        {**lead, "occurred_at": None},
        {k: v for k, v in lead.items() if k != "lead_id"},
        {**lead, "stage": "unicorn"},
        {**spend, "amount": -5},
        {**spend, "amount": "abc"},
        {
            "type": "opportunity.created",
            "occurred_at": on_time,
            "opportunity_id": "xc-bad-opp",
            "account_id": "xc-acc",
            "amount": "10",
            "kind": "upsell",
        },
        {
            "type": "opportunity.stage_changed",
            "occurred_at": on_time,
            "opportunity_id": "xc-bad-opp",
            "stage": "won ",
        },
        {"type": "expense.recorded", "occurred_at": on_time, "category": "travel", "amount": 1},
        {**lead, "snapshot": True, "stage": "disqualified"},  # a snapshot into a closed stage
        {**lead, "snapshot": "yes"},
        {**lead, "snapshot": True, "entered_at": "2099-01-01T00:00:00Z"},  # after occurred_at
        {**lead, "snapshot": True, "entered_at": "2025-01-01T00:00:00"},  # no offset
        {
            "type": "activity.logged",
            "occurred_at": on_time,
            "account_id": "xc-acc",
            "kind": "call",
            "minutes": 0,
        },
    ]
    out = [("invalid_field", line(event_id=f"xc-bad-{n}", **e)) for n, e in enumerate(invalid)]
    out += [
        ("invalid_field", line(event_id="", **lead)),
        ("invalid_field", line(event_id="x" * 201, **lead)),
        ("malformed_json", b'{"event_id": "xc-bad-t", "type": "lead.created", "lead_id": "l'),
        ("malformed_json", b"this is not json"),
        ("not_an_event", b"42"),
        ("not_an_event", b"[]"),
        ("not_an_event", b'"lead.created"'),
        ("not_an_event", b"null"),
        ("not_an_event", line(event_id="xc-bad-nt", occurred_at=on_time, lead_id="x")),
        ("not_an_event", line(event_id="xc-bad-it", type=7, occurred_at=on_time)),
        ("unknown_type", line(event_id="xc-bad-u", type="lead.deleted", occurred_at=on_time)),
        ("currency_mismatch", line(event_id="xc-bad-c1", currency="EUR", **spend)),
        (
            "currency_mismatch",
            line(
                event_id="xc-bad-c2",
                type="invoice.paid",
                occurred_at=on_time,
                account_id="xc-acc",
                amount="100.00",
                currency="usd",
            ),
        ),
        ("too_large", line(event_id="xc-bad-big", notes="x" * (MIB + 100), **lead)),
    ]
    return out


def mixed_array(on_time: str) -> bytes:
    """One line holding a JSON array: two valid events around an invalid one."""
    return json.dumps(
        [
            {
                "event_id": "xc-arr-1",
                "type": "expense.recorded",
                "occurred_at": on_time,
                "category": "sales",
                "amount": "10.10",
            },
            {
                "event_id": "xc-arr-2",
                "type": "expense.recorded",
                "occurred_at": on_time,
                "category": "sales",
            },
            {
                "event_id": "xc-arr-3",
                "type": "invoice.paid",
                "occurred_at": on_time,
                "account_id": "xc-acc",
                "amount": "99",
                "kind": "one_time",
            },
        ]
    ).encode()


def craft(history: list[bytes], clean: Batch, rng: random.Random) -> Crafted:
    """`history` with duplicates, bad lines, late events and edge sequences injected."""
    assert clean.newest is not None
    newest = clean.newest
    times = [datetime.fromisoformat(json.loads(raw)["occurred_at"]).timestamp() for raw in history]
    after: dict[int, list[bytes]] = {}
    recent = [i for i, at in enumerate(times) if at >= newest - COPY_WITHIN]
    for original in rng.sample(recent[: len(recent) // 2], DUPLICATES):
        after.setdefault(original + rng.randint(0, 20), []).append(history[original])
    on_time = json.loads(history[len(history) // 2])["occurred_at"]
    bad = bad_lines(on_time)
    for _, raw in bad:
        after.setdefault(rng.randrange(len(history)), []).append(raw)
    after.setdefault(rng.randrange(len(history)), []).append(mixed_array(on_time))
    for _ in range(4):
        after.setdefault(rng.randrange(len(history)), []).append(rng.choice([b"", b"  "]))
    late = late_events(clean)
    lines = [x for i, raw in enumerate(history) for x in (raw, *after.get(i, []))]
    lines += late + edge_sequences(newest)
    rejected = Counter(reason for reason, _ in bad)
    rejected["invalid_field"] += 1  # the array's middle element
    return Crafted(lines, DUPLICATES, len(late), rejected)


@dataclass(frozen=True)
class CrossCheck:
    """The batch's series and the replay's exposition for the same input."""

    batch: Batch
    crafted: Crafted
    expected: dict[Key, float]
    got: dict[Key, float]


EXPIRE = (
    "funnels:\n"
    "  lead: {expire: {mql: 30d}}\n"
    "  opportunity: {expire: {discovery: 45d, negotiation: 30d}}\n"
)


def write_config(path: Path, now: float) -> Path:
    """A config with a new-business target for now's quarter and an all-kinds one for its
    month, and funnel expiry (SPEC §2) on lead `mql` and two opportunity stages."""
    day = datetime.fromtimestamp(now, UTC)
    quarter, month = f"{day.year}-Q{(day.month - 1) // 3 + 1}", f"{day.year}-{day.month:02d}"
    path.write_text(
        "targets:\n"
        f"  - {{period: {quarter}, kind: new_business, amount: {QUARTER_TARGET}}}\n"
        f"  - {{period: {month}, kind: all, amount: {MONTH_TARGET}}}\n" + EXPIRE
    )
    return path


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's working directory."""
    return tmp_path_factory.mktemp("crosscheck")


@pytest.fixture(scope="module")
def history(workdir: Path) -> list[bytes]:
    """The lines of `revmon simulate --days 400 --seed 11`."""
    out = workdir / "hist.jsonl"
    result = revmon(
        "simulate", "--days", str(DAYS), "--seed", str(SEED), "--out", str(out), cwd=workdir
    )
    assert result.code == 0, result.stderr
    return [raw for raw in out.read_bytes().splitlines() if raw.strip()]


@pytest.fixture(scope="module")
def crosscheck(workdir: Path, history: list[bytes]) -> CrossCheck:
    """Replay the spiked history and compute the batch view of the same file and config."""
    clean = compute(history, load_settings(None))
    crafted = craft(history, clean, random.Random(SEED))
    assert clean.newest is not None
    config = write_config(workdir / "cfg.yaml", clean.newest)
    path, metrics = workdir / "input.jsonl", workdir / "m.prom"
    path.write_bytes(b"\n".join(crafted.lines) + b"\n")

    result = revmon(
        "replay", str(path), "--config", str(config), "--metrics-out", str(metrics), cwd=workdir
    )

    assert result.code == 0, result.stderr[-3000:]
    batch = compute(crafted.lines, load_settings(config))
    return CrossCheck(batch, crafted, batch.metrics(), samples(metrics.read_text()))


def parsed(raw: bytes) -> Any:
    """A line's JSON value, or None when it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return None


def test_the_history_holds_every_v2_input(crosscheck: CrossCheck) -> None:
    """Snapshots, deals with lead sources and without accounts, and expiries are all there."""
    events = [e for e in map(parsed, crosscheck.crafted.lines) if isinstance(e, dict)]
    deals = [e for e in events if e.get("type") == "opportunity.created"]
    expired = {
        (dict(labels)["funnel"], dict(labels)["stage"])
        for (name, labels), value in crosscheck.expected.items()
        if name == "revmon_funnel_exits" and dict(labels)["outcome"] == "dropped" and value
    }

    assert sum(1 for e in events if e.get("snapshot") is True) > 50
    assert sum(1 for e in deals if "channel" in e) > 50
    assert sum(1 for e in deals if "account_id" not in e) > 50
    assert {("lead", "mql"), ("opportunity", "discovery"), ("opportunity", "negotiation")} <= (
        expired
    )


def test_the_batch_sees_every_injection(crosscheck: CrossCheck) -> None:
    """The batch counts the injected duplicates, late events and rejections and has every family."""
    batch, crafted = crosscheck.batch, crosscheck.crafted
    names = {name for name, _ in crosscheck.expected}
    targets = {
        dict(labels)["kind"]: value
        for (name, labels), value in crosscheck.expected.items()
        if name == "revmon_pipeline_coverage_ratio"
    }

    assert batch.duplicates == crafted.duplicates
    assert batch.late == crafted.late
    assert batch.rejected == crafted.rejected
    assert set(FAMILIES["funnel"]) | set(FAMILIES["forecast"]) <= names
    assert {name for family in FAMILIES.values() for name in family} <= names
    assert set(targets) == {"new_business", "all"}  # both remainders are positive


def mismatches(expected: dict[Key, float], got: dict[Key, float], names: tuple[str, ...]) -> str:
    """Every series of `names` whose value differs, or that only one side has, one per line."""
    found = []
    for name in names:
        mine = {k: v for k, v in expected.items() if k[0] == name}
        theirs = {k: v for k, v in got.items() if k[0] == name}
        for key in sorted(mine.keys() | theirs.keys(), key=lambda k: sorted(k[1])):
            want, have = mine.get(key), theirs.get(key)
            if want is None or have is None:
                same = want is have
            elif name in COUNTS:
                same = want == have
            else:
                same = have == pytest.approx(want, rel=1e-9, abs=1e-6)
            if not same:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(key[1]))
                found.append(f"{name}{{{labels}}}: expected {want}, got {have}")
    return "\n".join(found)


@pytest.mark.parametrize("group", [pytest.param(group, id=group) for group in FAMILIES])
def test_replay_matches_the_batch(crosscheck: CrossCheck, group: str) -> None:
    """Every series of the group's families has the batch's value, or is absent on both sides."""
    found = mismatches(crosscheck.expected, crosscheck.got, FAMILIES[group])

    assert not found, "\n" + found


def test_a_line_with_a_nan_literal_is_malformed_json(workdir: Path) -> None:
    """A line holding the non-JSON literal NaN (in an extra field) is rejected, not applied."""
    expense = {
        "type": "expense.recorded",
        "occurred_at": "2026-01-10T00:00:00Z",
        "category": "tools",
        "amount": "5",
    }
    lines = [
        line(event_id="xc-nan-1", **expense),
        line(event_id="xc-nan-2", **expense)[:-1] + b',"note":NaN}',
    ]
    path, metrics = workdir / "nan.jsonl", workdir / "nan.prom"
    path.write_bytes(b"\n".join(lines) + b"\n")
    batch = compute(lines, load_settings(None))

    result = revmon("replay", str(path), "--metrics-out", str(metrics), cwd=workdir)

    assert result.code == 0, result.stderr[-3000:]
    assert batch.rejected == Counter(malformed_json=1)
    names = (*FAMILIES["operations"], *FAMILIES["finance"])
    found = mismatches(batch.metrics(), samples(metrics.read_text()), names)
    assert not found, "\n" + found


def replay_against_batch(workdir: Path, name: str, lines: list[bytes], group: str) -> str:
    """Replay `lines` (default config) and the mismatches of `group`'s families."""
    path, metrics = workdir / f"{name}.jsonl", workdir / f"{name}.prom"
    path.write_bytes(b"\n".join(lines) + b"\n")
    batch = compute(lines, load_settings(None))

    result = revmon("replay", str(path), "--metrics-out", str(metrics), cwd=workdir)

    assert result.code == 0, result.stderr[-3000:]
    return mismatches(batch.metrics(), samples(metrics.read_text()), FAMILIES[group])


def subscription_line(n: int, kind: str, at: str, **fields: Any) -> bytes:
    """One subscription event of `xc-tie-sub` (account `xc-tie`)."""
    return line(
        event_id=f"xc-tie-{n}",
        type=f"subscription.{kind}",
        occurred_at=at,
        subscription_id="xc-tie-sub",
        **fields,
    )


def test_a_later_cancel_arriving_before_its_start_churns(workdir: Path) -> None:
    """Out of arrival order but later in event time: the cancel applies after the start."""
    lines = [
        subscription_line(1, "canceled", "2026-01-10T00:00:01Z"),
        subscription_line(2, "started", "2026-01-10T00:00:00Z", account_id="xc-tie", mrr="40"),
    ]

    found = replay_against_batch(workdir, "later-cancel", lines, "customers")

    assert not found, "\n" + found


def test_a_cancel_tied_with_its_start_and_arriving_first_changes_nothing(workdir: Path) -> None:
    """SPEC §3.6 ties in arrival order: the cancel comes first, of an unknown subscription."""
    at = "2026-01-10T00:00:00Z"
    lines = [
        subscription_line(1, "canceled", at),
        subscription_line(2, "started", at, account_id="xc-tie", mrr="40"),
    ]

    found = replay_against_batch(workdir, "tied-cancel", lines, "customers")

    assert not found, "\n" + found


def test_a_file_of_snapshots_only_exports_no_new_names_and_no_pipeline_created(
    workdir: Path,
) -> None:
    """Every lead and deal arrives as a snapshot: no new name, no pipeline created, no entry."""
    at = "2026-01-10T00:00:00Z"
    lines = []
    for n in range(40):
        stage = ("name", "mql", "sql")[n % 3]
        entered = f"2025-12-{n % 28 + 1:02d}T09:00:00+01:00"
        lines.append(
            line(
                event_id=f"xc-snap-lead-{n}",
                type="lead.created",
                occurred_at=at,
                lead_id=f"snap-lead-{n}",
                channel="paid_search",
                stage=stage,
                snapshot=True,
                entered_at=entered,
            )
        )
        lines.append(
            line(
                event_id=f"xc-snap-opp-{n}",
                type="opportunity.created",
                occurred_at=at,
                opportunity_id=f"snap-opp-{n}",
                amount="1000",
                kind="new_business",
                stage="proposal",
                channel="email",
                snapshot=True,
                entered_at=entered,
            )
        )
    path, metrics = workdir / "snapshots.jsonl", workdir / "snapshots.prom"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = revmon("replay", str(path), "--metrics-out", str(metrics), cwd=workdir)

    assert result.code == 0, result.stderr[-3000:]
    got = samples(metrics.read_text())
    zero = (
        "revmon_marketing_new_names",
        "revmon_pipeline_created",
        "revmon_pipeline_created_amount",
        "revmon_channel_pipeline_created_amount",
        "revmon_funnel_entries",
    )
    nonzero = {(name, labels): v for (name, labels), v in got.items() if name in zero and v}
    assert nonzero == {}
    open_leads = sum(v for (name, _), v in got.items() if name == "revmon_funnel_open")
    assert open_leads == 80
    batch = compute(lines, load_settings(None))
    groups = ("funnel", "marketing", "channels", "pipeline")
    found = mismatches(batch.metrics(), got, tuple(n for g in groups for n in FAMILIES[g]))
    assert not found, "\n" + found

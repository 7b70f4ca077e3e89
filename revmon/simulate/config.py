"""The knobs of the simulated revenue engine; the defaults are a mid-size B2B SaaS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from revmon.settings import Settings

DEFAULT_START = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_CHANNELS = (
    "paid_search",
    "paid_social",
    "email",
    "events",
    "webinar",
    "organic",
    "referral",
    "partner",
)


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate: how long, from when, with which seed, funnels and rates.

    Per-stage tuples (`*_advance`, `*_stage_days`) are indexed by open-stage position; a
    funnel with more stages than values reuses the last value.
    """

    days: int
    seed: int
    start: datetime = DEFAULT_START
    leads_per_day: float = 40.0
    lead_growth: float = 0.25  # yearly growth of lead volume and of the team's costs
    yearly_wave: float = 0.12  # amplitude of the seasonal swing of lead volume
    opening_customers: int | None = None  # customers at `start`; None: 10 per daily lead
    lead_stages: tuple[str, ...] = ("name", "mql", "sql")
    lead_converted: str = "opportunity"
    lead_dropped: tuple[str, ...] = ("disqualified",)
    opportunity_stages: tuple[str, ...] = ("qualification", "discovery", "proposal", "negotiation")
    opportunity_won: str = "won"
    opportunity_lost: tuple[str, ...] = ("lost",)
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    lead_advance: tuple[float, ...] = (0.35, 0.38, 0.40)
    lead_stage_days: tuple[float, ...] = (4.0, 3.0, 6.0)
    opportunity_advance: tuple[float, ...] = (0.65, 0.65, 0.70, 0.80)
    opportunity_stage_days: tuple[float, ...] = (6.0, 12.0, 12.0, 8.0)
    renewal_win: float = 0.87
    expansion_win: float = 0.5
    expansions_per_month: float = 0.03  # chance per customer account per month
    monthly_cancel: float = 0.004  # chance per monthly-billed subscription per month
    annual_billing: float = 0.3  # share of subscriptions paid a year up front
    neglected_accounts: float = 0.15  # share of accounts sales rarely touches
    spend_per_lead: float = 150.0  # campaign spend per new name, all channels together
    expense_scale: float = 1.0  # multiplies the monthly `expense.recorded` amounts
    # v2: the opening book arrives as a CRM connection does, as snapshot loads (open
    # leads and deals with `snapshot: true` and `entered_at`), not as new creations.
    snapshot_load: bool = True
    # The accounts there are to sell to; None: unbounded. Once this many were seen, every
    # new lead comes from one of them (a steady business for long runs: `bench/soak.py`).
    market: int | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        if self.days < 0 or self.leads_per_day < 0:
            raise ValueError("days and leads_per_day cannot be negative")
        if self.market is not None and self.market < 1:
            raise ValueError("market must be at least one account")
        if not self.lead_stages or not self.opportunity_stages:
            raise ValueError("each funnel needs at least one open stage")
        rates = (*self.lead_advance, *self.opportunity_advance, self.renewal_win)
        if not all(0 <= p <= 1 for p in rates) or not self.lead_advance:
            raise ValueError("advance rates are probabilities between 0 and 1")
        if not self.opportunity_advance or not self.lead_stage_days:
            raise ValueError("per-stage tuples need at least one value")
        if not self.opportunity_stage_days or min(self.opportunity_stage_days) <= 0:
            raise ValueError("stage durations must be positive")

    @property
    def opening(self) -> int:
        """Customers (with active subscriptions) already on the books at `start`."""
        if self.opening_customers is not None:
            return self.opening_customers
        return round(self.leads_per_day * 10)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        days: int,
        seed: int,
        start: datetime | None = None,
        **knobs: Any,
    ) -> SimulationConfig:
        """A config whose funnels and channels are the configured ones, so every event is valid."""
        lead = settings.funnels.lead
        opportunity = settings.funnels.opportunity
        return cls(
            days=days,
            seed=seed,
            start=DEFAULT_START if start is None else start,
            lead_stages=lead.stages,
            lead_converted=lead.converted,
            lead_dropped=lead.dropped,
            opportunity_stages=opportunity.stages,
            opportunity_won=opportunity.converted,
            opportunity_lost=opportunity.dropped,
            channels=settings.marketing.channels,
            **knobs,
        )

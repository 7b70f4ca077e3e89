"""The simulated entities: accounts and their size tiers, leads, opportunities, subscriptions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from revmon.simulate.world import World

ACTIVITY_KINDS = ("email", "call", "meeting", "visit")


@dataclass(frozen=True, slots=True)
class Tier:
    """An account size: how big its deals are and how much sales attention it gets.

    `activity_weights` follow `ACTIVITY_KINDS`; the day counts are mean gaps between touches.
    """

    name: str
    weight: float
    deal_median: float
    deal_touch_days: float
    care_days: float
    activity_weights: tuple[float, float, float, float]


@dataclass(slots=True, eq=False)
class Account:
    """A company: a prospect until it has a subscription, a customer while it has one."""

    id: str
    tier: Tier
    neglected: bool
    subscriptions: list[Subscription] = field(default_factory=list)
    cared: bool = False  # a customer-care touch loop is running
    reviewed: bool = False  # a monthly account review (expansion, one-offs) is running


@dataclass(slots=True, eq=False)
class Lead:
    """A name in the lead funnel; `stage` indexes the configured open stages."""

    id: str
    account: Account
    stage: int = 0
    regressed: bool = False
    stalled: bool = False
    channel: str | None = None  # the lead source, copied onto its deal at conversion


OnClose: TypeAlias = "Callable[[World, Opportunity, bool], None]"


@dataclass(slots=True, eq=False)
class Opportunity:
    """A deal in the pipeline; `on_close(world, opportunity, won)` hands a decision on."""

    id: str
    account: Account
    kind: str
    amount: float
    stage: int
    first_stage: int
    on_close: OnClose
    subscription: Subscription | None = None
    open: bool = True
    stalled: bool = False
    moves: int = 0  # bumped on every stage change, so stale scheduled actions can tell
    touches: int = 0  # generation of the deal-touch loop (a re-open starts a new one)


@dataclass(slots=True, eq=False)
class Subscription:
    """A 12-month term, billed monthly or annually up front; renewed, changed or canceled."""

    id: str
    account: Account
    mrr: float
    annual: bool
    term_start: int
    term_end: int
    active: bool = True
    term: int = 0
    renewal: Opportunity | None = None
    renewal_won: bool | None = None  # None: undecided at term end, which auto-renews
    renewal_acv: float = 0.0

"""Accounts: size tiers that set deal sizes, and the sales touches (activities) they get.

Open deals are touched every few days (more often for bigger accounts); customers get a
care cadence by tier. A share of accounts is neglected: touched several times less often,
which is what the undercovered-accounts metric is there to catch.
"""

from __future__ import annotations

import itertools
import math

from revmon.simulate.model import ACTIVITY_KINDS, Account, Opportunity, Tier
from revmon.simulate.world import World

TIERS = (
    Tier("smb", 0.55, 7_000.0, 6.0, 60.0, (0.55, 0.35, 0.10, 0.0)),
    Tier("mid", 0.30, 22_000.0, 4.0, 30.0, (0.40, 0.35, 0.20, 0.05)),
    Tier("enterprise", 0.12, 75_000.0, 2.5, 14.0, (0.30, 0.30, 0.30, 0.10)),
    Tier("strategic", 0.03, 280_000.0, 1.5, 7.0, (0.20, 0.25, 0.40, 0.15)),
    Tier("global", 0.004, 1_200_000.0, 1.0, 5.0, (0.15, 0.25, 0.40, 0.20)),
)
_TIER_CUM = tuple(itertools.accumulate(t.weight for t in TIERS))
_KNOWN_ACCOUNT = 0.2  # share of new leads from an account already seen
_NEGLECT_FACTOR = 6.0
_MINUTES_GIVEN = 0.75  # share of activities whose export carries a duration
_DEAL_MIN, _DEAL_MAX = 5_000.0, 5_000_000.0
_PROSPECT_POOL = 5_000  # known accounts kept for new leads; bounds memory


def new_account(world: World) -> Account:
    """A fresh account of a random tier, remembered as a prospect for later leads."""
    tier = world.rng.choices(TIERS, cum_weights=_TIER_CUM)[0]
    account = Account(world.new_id("acc"), tier, world.chance(world.config.neglected_accounts))
    world.accounts_seen += 1
    if world.config.market is not None and len(world.market) < world.config.market:
        world.market.append(account)
    pool = world.prospects
    if len(pool) < _PROSPECT_POOL:
        pool.append(account)
    else:
        pool[world.rng.randrange(len(pool))] = account
    return account


def for_lead(world: World) -> Account:
    """The account of a new lead: usually new, sometimes one already known (or a customer).

    With a `market`, once that many accounts were seen every lead comes from one of them.
    """
    market = world.config.market
    if market is not None and world.accounts_seen >= market:
        chosen: Account = world.pick(world.market)
        return chosen
    if world.prospects and world.chance(_KNOWN_ACCOUNT):
        known: Account = world.pick(world.prospects)
        return known
    return new_account(world)


def deal_size(world: World, account: Account) -> float:
    """A yearly contract value: lognormal around the tier's median."""
    value = world.rng.lognormvariate(math.log(account.tier.deal_median), 0.5)
    return round(min(max(value, _DEAL_MIN), _DEAL_MAX), -2)


def log_activity(world: World, account: Account, opportunity_id: str | None = None) -> None:
    """One sales touch on the account, its kind drawn by the account's tier."""
    kind: str = world.rng.choices(ACTIVITY_KINDS, weights=account.tier.activity_weights)[0]
    minutes = _minutes(world, kind) if world.chance(_MINUTES_GIVEN) else None
    world.emit(
        "activity.logged",
        "salesforce",
        account_id=account.id,
        kind=kind,
        opportunity_id=opportunity_id,
        minutes=minutes,
    )


def log_sdr_touch(world: World, account: Account) -> None:
    """A call or an email by a sales development rep while the lead is worked."""
    kind = "call" if world.chance(0.4) else "email"
    minutes = _minutes(world, kind) if world.chance(_MINUTES_GIVEN) else None
    world.emit("activity.logged", "salesforce", account_id=account.id, kind=kind, minutes=minutes)


def _minutes(world: World, kind: str) -> int:
    rng = world.rng
    if kind == "email":
        return rng.randint(2, 10)
    if kind == "call":
        return max(1, round(rng.lognormvariate(math.log(20), 0.5)))
    if kind == "meeting":
        return rng.choice((30, 30, 45, 60, 60, 90))
    return rng.randint(60, 240)


def _gap(account: Account, days: float) -> float:
    return days * (_NEGLECT_FACTOR if account.neglected else 1.0)


def start_deal_touches(world: World, opportunity: Opportunity) -> None:
    """Touch the deal's account every few days while the opportunity stays open."""
    opportunity.touches += 1
    gap = _gap(opportunity.account, opportunity.account.tier.deal_touch_days)
    world.at(world.soon(gap), _deal_touch, opportunity, opportunity.touches)


def _deal_touch(world: World, opportunity: Opportunity, generation: int) -> None:
    if not opportunity.open or opportunity.touches != generation:
        return
    log_activity(world, opportunity.account, opportunity.id)
    gap = _gap(opportunity.account, opportunity.account.tier.deal_touch_days)
    world.at(world.soon(gap), _deal_touch, opportunity, generation)


def start_care(world: World, account: Account) -> None:
    """Touch a customer at its tier's cadence for as long as it stays a customer."""
    if account.cared:
        return
    account.cared = True
    world.at(world.soon(_gap(account, account.tier.care_days)), _care, account)


def _care(world: World, account: Account) -> None:
    if not account.subscriptions:
        account.cared = False
        return
    log_activity(world, account)
    world.at(world.soon(_gap(account, account.tier.care_days)), _care, account)

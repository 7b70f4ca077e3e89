"""The opportunity pipeline: stages, re-valuations, wins and losses, re-opened deals.

Each open stage ends after a lognormal delay. A few deals regress one stage or stall (a
long wait, once per deal); the rest advance at the stage's pass rate (rarely skipping a
stage) or close lost. Renewals and
expansions enter later in the funnel and move twice as fast; their per-step advance rate
is set so the whole walk wins at the configured renewal or expansion win rate.
"""

from __future__ import annotations

import math

from revmon.simulate import accounts
from revmon.simulate.model import Account, OnClose, Opportunity, Subscription
from revmon.simulate.world import DAY, World, date_text, money, nth

_SOURCE = "salesforce"
_SKIP = 0.05
_REGRESS = 0.04
_STALL = 0.04
_STALL_FACTOR = 4.0
_REOPEN = 0.06  # share of lost deals that come back months later
_REVALUE = 0.15  # chance per stage of an `opportunity.amount_changed` while in it
_AMOUNT_ON_MOVE = 0.25  # chance that a forward move carries a new amount
_STAGE_ON_CREATE = 0.2  # chance that a creation names its first stage explicitly
_CLOSE_DATE = 0.7  # share of deals with an expected close date
_NO_ACCOUNT = 0.2  # new-business deals exported before an account was attached (v2)


def open_opportunity(
    world: World,
    account: Account,
    kind: str,
    amount: float,
    on_close: OnClose,
    *,
    stage: int = 0,
    subscription: Subscription | None = None,
    channel: str | None = None,
    since: int | None = None,
) -> Opportunity:
    """Create a deal at open stage position `stage` and start moving it.

    `channel` is its lead source (v2); with `since`, the deal is loaded as a snapshot
    that has been in its stage since then (v2).
    """
    stages = world.config.opportunity_stages
    stage = min(stage, len(stages) - 1)
    opportunity = Opportunity(
        world.new_id("opp"), account, kind, amount, stage, stage, on_close, subscription
    )
    named = stage > 0 or world.chance(_STAGE_ON_CREATE)
    no_account = kind == "new_business" and world.chance(_NO_ACCOUNT)
    world.emit(
        "opportunity.created",
        _SOURCE,
        opportunity_id=opportunity.id,
        account_id=None if no_account else account.id,
        amount=money(amount),
        kind=kind,
        stage=stages[stage] if named else None,
        expected_close_date=_close_date(world, opportunity) if world.chance(_CLOSE_DATE) else None,
        channel=channel,
        snapshot=None if since is None else True,
        entered_at=None if since is None else world.stamp(since),
    )
    _schedule(world, opportunity)
    accounts.start_deal_touches(world, opportunity)
    return opportunity


def _pace(opportunity: Opportunity) -> float:
    return 1.0 if opportunity.kind == "new_business" else 0.5


def _close_date(world: World, opportunity: Opportunity) -> str:
    stage_days = world.config.opportunity_stage_days
    stages = range(opportunity.stage, len(world.config.opportunity_stages))
    days = sum(nth(stage_days, i) for i in stages) * _pace(opportunity)
    days *= world.rng.lognormvariate(0.2, 0.3)  # reps are optimistic, then slip
    return date_text(world.now + int(days * DAY))


def _advance_rate(world: World, opportunity: Opportunity) -> float:
    config = world.config
    if opportunity.kind == "new_business":
        return nth(config.opportunity_advance, opportunity.stage)
    win = config.renewal_win if opportunity.kind == "renewal" else config.expansion_win
    steps = len(config.opportunity_stages) - opportunity.first_stage
    return math.pow(win, 1.0 / steps)


def _schedule(world: World, opportunity: Opportunity, factor: float = 1.0) -> None:
    median = nth(world.config.opportunity_stage_days, opportunity.stage)
    due = world.later(median * _pace(opportunity) * factor, 0.5)
    world.at(due, _step, opportunity, opportunity.moves)
    if world.chance(_REVALUE):
        midway = world.now + int((due - world.now) * world.rng.uniform(0.2, 0.8))
        world.at(midway, _revalue, opportunity, opportunity.moves)


def _step(world: World, opportunity: Opportunity, moves: int) -> None:
    if not opportunity.open or opportunity.moves != moves:
        return
    last = len(world.config.opportunity_stages) - 1
    i = opportunity.stage
    # Regress and stall only delay the decision, so the advance rate is the stage's pass rate.
    r = world.rng.random()
    if r < _REGRESS and i > opportunity.first_stage:
        _move(world, opportunity, i - 1)
    elif r < _REGRESS + _STALL and not opportunity.stalled:
        opportunity.stalled = True
        _schedule(world, opportunity, _STALL_FACTOR)
    elif not world.chance(_advance_rate(world, opportunity)):
        _close(world, opportunity, won=False)
    elif i == last:
        _close(world, opportunity, won=True)
    else:
        skip = i + 2 <= last and world.chance(_SKIP)
        _move(world, opportunity, i + 2 if skip else i + 1)


def _revalued(world: World, amount: float) -> float:
    return round(amount * world.rng.lognormvariate(0.0, 0.2), -2)


def _revalue(world: World, opportunity: Opportunity, moves: int) -> None:
    if not opportunity.open or opportunity.moves != moves:
        return
    opportunity.amount = _revalued(world, opportunity.amount)
    world.emit(
        "opportunity.amount_changed",
        _SOURCE,
        opportunity_id=opportunity.id,
        amount=money(opportunity.amount),
    )


def _move(world: World, opportunity: Opportunity, stage: int) -> None:
    amount = None
    if stage > opportunity.stage and world.chance(_AMOUNT_ON_MOVE):
        opportunity.amount = _revalued(world, opportunity.amount)
        amount = money(opportunity.amount)
    opportunity.stage = stage
    opportunity.moves += 1
    world.emit(
        "opportunity.stage_changed",
        _SOURCE,
        opportunity_id=opportunity.id,
        stage=world.config.opportunity_stages[stage],
        amount=amount,
    )
    _schedule(world, opportunity)


def _close(world: World, opportunity: Opportunity, *, won: bool) -> None:
    config = world.config
    if not won and not config.opportunity_lost:
        return  # no lost stage configured: the deal just sits in its stage
    amount = None
    if won and world.chance(0.5):
        opportunity.amount = round(opportunity.amount * world.rng.uniform(0.85, 1.0), -2)
        amount = money(opportunity.amount)  # the final discount
    stage = config.opportunity_won if won else world.pick(config.opportunity_lost)
    opportunity.open = False
    opportunity.moves += 1
    world.emit(
        "opportunity.stage_changed",
        _SOURCE,
        opportunity_id=opportunity.id,
        stage=stage,
        amount=amount,
    )
    opportunity.on_close(world, opportunity, won)
    if not won and opportunity.kind != "renewal" and world.chance(_REOPEN):
        world.at(world.later(45.0, 0.5), _reopen, opportunity)


def _reopen(world: World, opportunity: Opportunity) -> None:
    if opportunity.open:
        return
    stage = min(opportunity.first_stage + 1, len(world.config.opportunity_stages) - 1)
    opportunity.open = True
    opportunity.stage = stage
    opportunity.moves += 1
    world.emit(
        "opportunity.stage_changed",
        _SOURCE,
        opportunity_id=opportunity.id,
        stage=world.config.opportunity_stages[stage],
    )
    _schedule(world, opportunity)
    accounts.start_deal_touches(world, opportunity)

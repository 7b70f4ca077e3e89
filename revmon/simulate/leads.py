"""The lead funnel: names advance, skip a stage, regress, stall or drop; converted leads open deals.

Each open stage ends after a lognormal delay. A few leads regress one stage or stall for
several times the usual delay (once each; these are the stale names); the rest advance
at the stage's rate (sometimes skipping the next stage) or drop. The last open stage
advances to the converted stage, which opens a new-business opportunity on the account.
"""

from __future__ import annotations

from revmon.simulate import accounts, billing, sales
from revmon.simulate.model import Lead
from revmon.simulate.world import DAY, World, nth

_SOURCE = "hubspot"
_SKIP = 0.08
_REGRESS = 0.05
_STALL = 0.06
_STALL_FACTOR = 8.0
_LATE_ENTRY = 0.03  # imported straight into the second stage (e.g. a trade-show list)
_NO_ACCOUNT = 0.1  # lead exports without an account id
_SDR_TOUCH = 0.4  # chance of a call or email on a move forward


def create(world: World, channel: str | None, campaign_id: str | None) -> None:
    """A new name arrives from a channel (and maybe a campaign)."""
    stages = world.config.lead_stages
    lead = Lead(world.new_id("lead"), accounts.for_lead(world), channel=channel)
    named = None
    if len(stages) > 1 and world.chance(_LATE_ENTRY):
        lead.stage = 1
        named = stages[1]
    world.emit(
        "lead.created",
        _SOURCE,
        lead_id=lead.id,
        account_id=_account_id(world, lead),
        channel=channel,
        campaign_id=campaign_id,
        stage=named,
    )
    _schedule(world, lead)


def open_book(world: World) -> None:
    """The open leads already in the CRM at the start, loaded as snapshots on the first morning."""
    if world.config.snapshot_load:
        for _ in range(world.config.opening // 2):
            world.at(world.start + world.rng.randrange(8 * 3600), load)


def load(world: World) -> None:
    """An open lead of the opening book, loaded as a snapshot (SPEC §1, v2).

    It sits in a random open stage since up to 40 days before the load, then moves on.
    """
    stages = world.config.lead_stages
    channel = world.pick(world.config.channels) if world.config.channels else None
    lead = Lead(world.new_id("lead"), accounts.for_lead(world), channel=channel)
    lead.stage = world.rng.randrange(len(stages))
    since = world.now - world.rng.randrange(40 * DAY)
    world.emit(
        "lead.created",
        _SOURCE,
        lead_id=lead.id,
        account_id=_account_id(world, lead),
        channel=channel,
        stage=stages[lead.stage],
        snapshot=True,
        entered_at=world.stamp(since),
    )
    _schedule(world, lead)


def _account_id(world: World, lead: Lead) -> str | None:
    return None if world.chance(_NO_ACCOUNT) else lead.account.id


def _schedule(world: World, lead: Lead, factor: float = 1.0) -> None:
    median = nth(world.config.lead_stage_days, lead.stage) * factor
    world.at(world.later(median, 0.8), _step, lead)


def _step(world: World, lead: Lead) -> None:
    config = world.config
    last = len(config.lead_stages) - 1
    i = lead.stage
    # Regress and stall only delay the decision, so the advance rate is the stage's pass rate.
    r = world.rng.random()
    if r < _REGRESS and i > 0 and not lead.regressed:
        lead.regressed = True
        _move(world, lead, i - 1)
    elif r < _REGRESS + _STALL and not lead.stalled:
        lead.stalled = True
        _schedule(world, lead, _STALL_FACTOR)
    elif world.chance(nth(config.lead_advance, i)):
        if i == last:
            _convert(world, lead)
        else:
            skip = i + 2 <= last and world.chance(_SKIP)
            _move(world, lead, i + 2 if skip else i + 1)
    elif config.lead_dropped:
        _emit_stage(world, lead, world.pick(config.lead_dropped))
    # else: no dropped stage is configured, so the lead just stays where it is


def _emit_stage(world: World, lead: Lead, stage: str) -> None:
    world.emit(
        "lead.stage_changed",
        _SOURCE,
        lead_id=lead.id,
        stage=stage,
        account_id=_account_id(world, lead),
    )


def _move(world: World, lead: Lead, stage: int) -> None:
    forward = stage > lead.stage
    lead.stage = stage
    _emit_stage(world, lead, world.config.lead_stages[stage])
    if forward and world.chance(_SDR_TOUCH):
        accounts.log_sdr_touch(world, lead.account)
    _schedule(world, lead)


def _convert(world: World, lead: Lead) -> None:
    _emit_stage(world, lead, world.config.lead_converted)
    amount = accounts.deal_size(world, lead.account)
    sales.open_opportunity(
        world,
        lead.account,
        "new_business",
        amount,
        billing.new_business_closed,
        channel=lead.channel,
    )

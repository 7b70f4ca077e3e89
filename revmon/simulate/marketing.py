"""Marketing: the daily clock of the engine, campaign spend per channel, and new names.

Every day each paid channel spends on its campaign of the month (ad platforms export
daily totals, stamped at midnight); now and then a channel outside the configured list
(`tv`) runs a flight, and some spend rows lose their channel. Leads arrive as a Poisson
count per day, more on weekdays and with a yearly wave and growth, mostly in business
hours, split across channels by a fixed mix.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

from revmon.simulate import expenses, leads
from revmon.simulate.world import DAY, HOUR, World, moment, money

# Share of new names by channel; configured channels not listed here get `_OTHER_MIX`.
_MIX = {
    "paid_search": 0.22,
    "paid_social": 0.13,
    "email": 0.09,
    "events": 0.06,
    "webinar": 0.08,
    "organic": 0.22,
    "referral": 0.10,
    "partner": 0.10,
}
_OTHER_MIX = 0.08
_UNLISTED = "tv"  # a channel that is not in the default list: it counts as `other`
_UNLISTED_MIX = 0.01
_NO_CHANNEL_MIX = 0.03
_FREE = frozenset({"organic", "referral"})  # channels without campaign spend
# Share of the daily budget by paid channel; unlisted paid channels get `_OTHER_BUDGET`.
_BUDGET = {
    "paid_search": 0.36,
    "paid_social": 0.22,
    "email": 0.04,
    "events": 0.18,
    "webinar": 0.08,
    "partner": 0.12,
}
_OTHER_BUDGET = 0.08
_SOURCES = {"paid_search": "google_ads", "paid_social": "linkedin_ads"}
_SPEND_DAY = 0.93  # chance that a paid channel reports spend on a given day
_NO_CHANNEL_SPEND = 0.03
_TV_FLIGHT = 0.01  # chance per day of a TV flight


def start(world: World) -> None:
    """Start the daily clock at the first moment of the history."""
    world.at(world.start, _day)


def _day(world: World) -> None:
    midnight = world.now - world.now % DAY
    fraction = (midnight + DAY - world.now) / DAY
    today = moment(world.now)
    if today.day == 1 or world.now == world.start:
        month_days = 30.44
        remaining = 1.0 if today.day == 1 else (month_days - today.day + fraction) / month_days
        expenses.book_month(world, max(remaining, 0.0))
    campaign_month = f"{today:%Y%m}"
    _spend(world, campaign_month, fraction)
    _arrivals(world, midnight, campaign_month)
    world.at(midnight + DAY, _day)


def _volume(world: World) -> float:
    """Expected new names today: trend, a yearly wave and the weekday."""
    config = world.config
    years = (world.now - world.start) / (365 * DAY)
    weekday = (world.now // DAY + 3) % 7
    day_of_year = moment(world.now).timetuple().tm_yday
    wave = 1.0 + config.yearly_wave * math.sin(2 * math.pi * day_of_year / 365)
    growth = math.pow(1.0 + config.lead_growth, years)
    return config.leads_per_day * growth * wave * _weekday(weekday)


def _weekday(weekday: int) -> float:
    return 1.2 if weekday < 5 else 0.5


def _spend(world: World, campaign_month: str, fraction: float) -> None:
    config = world.config
    budget = _volume(world) * config.spend_per_lead * fraction
    paid = [c for c in config.channels if c not in _FREE]
    shares = [_BUDGET.get(c, _OTHER_BUDGET) for c in paid]
    total = sum(shares) or 1.0
    for channel, share in zip(paid, shares, strict=True):
        if world.chance(_SPEND_DAY):
            amount = budget * share / total * world.rng.lognormvariate(0.0, 0.25)
            shown = None if world.chance(_NO_CHANNEL_SPEND) else channel
            _emit_spend(world, channel, shown, campaign_month, amount)
    if world.chance(_TV_FLIGHT):
        amount = budget * world.rng.uniform(0.5, 2.0)
        _emit_spend(world, _UNLISTED, _UNLISTED, campaign_month, amount)


def _emit_spend(
    world: World, channel: str, shown: str | None, campaign_month: str, amount: float
) -> None:
    world.emit(
        "campaign.spend",
        _SOURCES.get(channel, "hubspot"),
        campaign_id=_campaign(channel, campaign_month),
        amount=money(amount),
        channel=shown,
    )


def _campaign(channel: str, campaign_month: str) -> str:
    return f"cmp-{channel}-{campaign_month}"


@lru_cache(maxsize=8)
def _mix(channels: tuple[str, ...]) -> tuple[tuple[str | None, ...], tuple[float, ...]]:
    names: list[str | None] = [*channels, _UNLISTED, None]
    weights = [_MIX.get(c, _OTHER_MIX) for c in channels] + [_UNLISTED_MIX, _NO_CHANNEL_MIX]
    return tuple(names), tuple(itertools.accumulate(weights))


def _arrivals(world: World, midnight: int, campaign_month: str) -> None:
    names, cumulative = _mix(world.config.channels)
    rng = world.rng
    for _ in range(world.poisson(_volume(world) * (midnight + DAY - world.now) / DAY)):
        if rng.random() < 0.85:
            t = midnight + int(rng.triangular(7.0, 20.0, 12.0) * HOUR)
        else:
            t = midnight + rng.randrange(DAY)  # forms filled in at night, other time zones
        if t < world.now:
            t = rng.randrange(world.now, midnight + DAY)
        channel = rng.choices(names, cum_weights=cumulative)[0]
        paid = channel is not None and channel not in _FREE
        campaign_id = _campaign(channel, campaign_month) if channel and paid else None
        world.at(t, _arrive, channel, campaign_id)


def _arrive(world: World, channel: str | None, campaign_id: str | None) -> None:
    leads.create(world, channel, campaign_id)

"""Monthly costs of the revenue engine by category, booked on the first of the month.

Costs are sized to the lead volume (the team that works it) and grow with it; customer
success also grows with the MRR it looks after. Finance exports carry dates only, so each
booking is stamped at midnight UTC.
"""

from __future__ import annotations

import math

from revmon.simulate.world import DAY, World, money

_SOURCE = "netsuite"
_BASE_LEADS_PER_DAY = 40.0
# Monthly amounts at 40 leads a day; `campaign.spend` comes on top as marketing cost.
_MONTHLY = {
    "sales": 290_000.0,
    "marketing": 40_000.0,
    "customer_success": 35_000.0,
    "analytics": 14_000.0,
    "tools": 20_000.0,
    "other": 16_000.0,
}
_SUCCESS_SHARE_OF_MRR = 0.05


def book_month(world: World, fraction: float = 1.0) -> None:
    """One `expense.recorded` per category for the month (or `fraction` of it) starting now."""
    config = world.config
    years = (world.now - world.start) / (365 * DAY)
    scale = config.expense_scale * config.leads_per_day / _BASE_LEADS_PER_DAY
    scale *= math.pow(1.0 + config.lead_growth, years) * fraction
    for category, base in _MONTHLY.items():
        amount = base * scale * world.rng.lognormvariate(0.0, 0.08)
        if category == "customer_success":
            amount += _SUCCESS_SHARE_OF_MRR * world.mrr * fraction
        world.emit("expense.recorded", _SOURCE, category=category, amount=money(amount))

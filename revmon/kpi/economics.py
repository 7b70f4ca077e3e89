"""Unit economics (SPEC §3.6, v2): quick ratio, CAC payback and magic number per window.

Pure arithmetic on summed partials of two stages: MRR movements come from the account
books (`kpi/customers.py`), sales and marketing expense (campaign spend included) from
the finance books (`kpi/finance.py`). Nothing is kept here; each ratio is exported
only where its denominator is positive (compared at micro-unit precision, so amounts
that cancel to the cent are "none", not 1e-13).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from revmon.kpi.customers import CHURN, CONTRACTION, EXPANSION, MRR_MOVEMENT, NEW
from revmon.kpi.finance import EXPENSE, MONEY_DIGITS
from revmon.kpi.ledger import Sample, component
from revmon.settings import Settings

#: Expense categories that make up S&M (SPEC §3.6).
SALES_AND_MARKETING = ("sales", "marketing")
MONTHS_PER_YEAR = 12


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The three unit-economics families, per configured window, where defined."""
    del now  # every component is already taken at `now`

    def get(*key: str) -> float:
        return partials.get(component(*key), 0.0)

    quick: list[Sample] = []
    payback: list[Sample] = []
    magic: list[Sample] = []
    for window in settings.window_list:
        label = (("window", window.label),)
        w = window.label
        gained = math.fsum((get(MRR_MOVEMENT, NEW, w), get(MRR_MOVEMENT, EXPANSION, w)))
        lost = math.fsum((get(MRR_MOVEMENT, CONTRACTION, w), get(MRR_MOVEMENT, CHURN, w)))
        spend = math.fsum(get(EXPENSE, category, w) for category in SALES_AND_MARKETING)
        if round(lost, MONEY_DIGITS) > 0:
            quick.append(Sample("revmon_quick_ratio", label, gained / lost))
        if round(gained, MONEY_DIGITS) > 0:
            payback.append(Sample("revmon_cac_payback_months", label, spend / gained))
        if round(spend, MONEY_DIGITS) > 0:
            value = (gained - lost) * MONTHS_PER_YEAR / spend
            magic.append(Sample("revmon_magic_number", label, value))
    return [*quick, *payback, *magic]

"""Cost of revenue (SPEC §3.5): revenue by kind, expense by category and E:R, per window.

Entity stage: revenue and expense events are summed wherever they arrive, so the book of
any input partition takes them; nothing is kept per account or per campaign.

Partials (keys `metric|label|...`, each the exported series itself, in the reporting
currency): `revmon_revenue_amount|<kind>|<window>`, Σ `invoice.paid` of the kind, with
kind `refund` the negative Σ `refund.issued`; `revmon_expense_amount|<category>|<window>`,
Σ `expense.recorded` plus `campaign.spend` as category `marketing`. E:R is computed from
these in `samples()`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from revmon.events import CampaignSpend, Event, ExpenseRecorded, InvoicePaid, RefundIssued
from revmon.kpi.ledger import Sample, Windows, component
from revmon.settings import Settings, Window

# The label sets of SPEC §1 (`invoice.paid` kinds, `expense.recorded` categories).
INVOICE_KINDS = ("new_business", "expansion", "renewal", "recurring", "one_time")
REFUND = "refund"
REVENUE_KINDS: tuple[str, ...] = (*INVOICE_KINDS, REFUND)
EXPENSE_CATEGORIES = ("sales", "marketing", "customer_success", "analytics", "tools", "other")

# Partial (summable component) names: the exported metric names.
REVENUE = "revmon_revenue_amount"  # |kind|window
EXPENSE = "revmon_expense_amount"  # |category|window

# A denominator that is a sum of money is compared at micro-unit precision, so a window
# whose refunds cancel its invoices to the cent is "no revenue", not 1e-13 of it.
MONEY_DIGITS = 6


@dataclass(slots=True)
class FinanceBook:
    """Revenue and expense of one input partition as event-time series (SPEC §3.5).

    `windows` holds series `revenue|<kind>` and `expense|<category>`; there are no
    records and nothing derived.
    """

    window_list: tuple[Window, ...]
    windows: Windows

    @classmethod
    def from_settings(cls, settings: Settings) -> FinanceBook:
        """An empty book whose series keep what the longest configured window sees."""
        window_list = settings.window_list
        return cls(window_list, Windows(max(w.seconds for w in window_list)))

    def apply(self, event: Event) -> None:
        """Add a revenue or expense event; any other event type changes nothing."""
        if isinstance(event, InvoicePaid):
            self.windows.add(component("revenue", event.kind), event.at, float(event.amount))
        elif isinstance(event, RefundIssued):
            self.windows.add(component("revenue", REFUND), event.at, -float(event.amount))
        elif isinstance(event, ExpenseRecorded):
            self.windows.add(component("expense", event.category), event.at, float(event.amount))
        elif isinstance(event, CampaignSpend):
            self.windows.add(component("expense", "marketing"), event.at, float(event.amount))

    def rebuild(self) -> None:
        """Nothing is derived: the windows are the whole state."""

    def partials(self, now: float) -> dict[str, float]:
        """The summable components at `now` (see the module docstring for the keys)."""
        out: dict[str, float] = {}
        for window in self.window_list:
            for kind in REVENUE_KINDS:
                out[component(REVENUE, kind, window.label)] = self.windows.sum(
                    component("revenue", kind), now, window.seconds
                )
            for category in EXPENSE_CATEGORIES:
                out[component(EXPENSE, category, window.label)] = self.windows.sum(
                    component("expense", category), now, window.seconds
                )
        return out


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The §3.5 series from partials summed over partitions; E:R only where revenue > 0."""
    del now  # every component is already taken at `now`
    revenue: list[Sample] = []
    expense: list[Sample] = []
    ratios: list[Sample] = []
    for window in settings.window_list:
        label = ("window", window.label)
        kinds = [partials.get(component(REVENUE, k, window.label), 0.0) for k in REVENUE_KINDS]
        costs = [partials.get(component(EXPENSE, c, window.label), 0.0) for c in EXPENSE_CATEGORIES]
        for kind, value in zip(REVENUE_KINDS, kinds, strict=True):
            revenue.append(Sample(REVENUE, (("kind", kind), label), value))
        for category, value in zip(EXPENSE_CATEGORIES, costs, strict=True):
            expense.append(Sample(EXPENSE, (("category", category), label), value))
        total = round(math.fsum(kinds), MONEY_DIGITS)
        if total > 0:
            ratios.append(Sample("revmon_er_ratio", (label,), math.fsum(costs) / total))
    return [*revenue, *expense, *ratios]

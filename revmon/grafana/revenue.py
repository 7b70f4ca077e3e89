"""The Revenue engine dashboard: E:R, revenue and expense, coverage, pace, alerts."""

from __future__ import annotations

from revmon.grafana.model import (
    COUNT,
    MONTHS,
    MULTIPLE,
    RATIO,
    WINDOW,
    Dashboard,
    Panel,
    Query,
    value,
    window_variable,
)


def revenue_engine(money: str) -> Dashboard:
    """Is the revenue engine paying for itself, and is next quarter's pipe being built?"""
    panels = [
        Panel(
            "timeseries",
            "Expense to revenue (E:R)",
            "Expenses (all categories, campaign spend included) per unit of revenue in the "
            "window; the red line is the 0.60 alert threshold (ExpenseToRevenueHigh).",
            RATIO,
            [Query(value("revmon_er_ratio", WINDOW), "E:R {{window}}")],
            line=0.6,
        ),
        Panel(
            "timeseries",
            "Creation pace",
            "New pipeline created in 30 days against the 90-day monthly average; below 1 the "
            "pipe is thinning, below 0.6 for new business the on-call is paged.",
            MULTIPLE,
            [Query(value("revmon_pipeline_creation_pace_ratio"), "{{kind}}")],
            line=0.6,
            above_is_bad=False,
        ),
        Panel(
            "timeseries",
            "Revenue by kind",
            "Paid invoices minus refunds in the window, by invoice kind (refunds negative).",
            money,
            [Query(value("revmon_revenue_amount", WINDOW), "{{kind}}")],
            stacked=True,
        ),
        Panel(
            "timeseries",
            "Expense by category",
            "Recorded expenses and campaign spend (category marketing) in the window.",
            money,
            [Query(value("revmon_expense_amount", WINDOW), "{{category}}")],
            stacked=True,
        ),
        Panel(
            "timeseries",
            "Pipeline coverage against target",
            "Open amount over what is left of the period's target (target - won); the line "
            "is the required coverage of 3. Absent once the target is met or without targets.",
            MULTIPLE,
            [Query(value("revmon_pipeline_coverage_ratio"), "{{period}} {{kind}}")],
            line=3,
            above_is_bad=False,
        ),
        Panel(
            "timeseries",
            "Pipeline gap and target",
            "Pipeline still to create to reach the required coverage, with the period's "
            "target and the amount won in it so far.",
            money,
            [
                Query(value("revmon_pipeline_gap_amount"), "gap {{period}} {{kind}}"),
                Query(value("revmon_target_amount"), "target {{period}} {{kind}}"),
                Query(value("revmon_period_won_amount"), "won {{period}} {{kind}}"),
            ],
        ),
        Panel(
            "stat",
            "Firing alerts",
            "Firing instances of each revmon alert rule (evaluated by revmon itself).",
            COUNT,
            [Query(value("revmon_alerts_firing"), "{{alertname}} ({{severity}})")],
            width=24,
            height=5,
            line=1,
        ),
    ]
    economics = [
        Panel(
            "stat",
            "Quick ratio",
            "MRR gained (new + expansion) per unit of MRR lost (contraction + churn) in the "
            "window; above 4 is efficient growth.",
            MULTIPLE,
            [Query(value("revmon_quick_ratio", WINDOW), "{{window}}")],
            width=8,
            line=1,
            above_is_bad=False,
        ),
        Panel(
            "stat",
            "CAC payback",
            "Months of new MRR needed to pay back the window's sales and marketing spend.",
            MONTHS,
            [Query(value("revmon_cac_payback_months", WINDOW), "{{window}}")],
            width=8,
            line=18,
        ),
        Panel(
            "stat",
            "Magic number",
            "Annualised net new MRR per unit of sales and marketing spend in the window.",
            MULTIPLE,
            [Query(value("revmon_magic_number", WINDOW), "{{window}}")],
            width=8,
            line=0.75,
            above_is_bad=False,
        ),
    ]
    return Dashboard(
        "revmon-revenue-engine",
        "revmon / Revenue engine",
        "E:R, revenue and expense, coverage and gap against target, creation pace, alerts.",
        [window_variable()],
        [("Revenue engine", panels), ("Unit economics", economics)],
    )

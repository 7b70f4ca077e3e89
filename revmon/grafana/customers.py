"""The Customers and segments dashboard: MRR movements, churn, NRR, sales attention."""

from __future__ import annotations

from revmon.grafana.model import (
    COUNT,
    RATIO,
    WINDOW,
    Dashboard,
    Panel,
    Query,
    value,
    window_variable,
)

GAINS = 'movement=~"new|expansion"'
LOSSES = 'movement=~"contraction|churn"'


def customers(money: str) -> Dashboard:
    """Are customers staying and growing, and does sales time follow the revenue?"""
    base = [
        Panel(
            "stat",
            "Customers",
            "Accounts with at least one active subscription.",
            COUNT,
            [Query(value("revmon_customers"), "customers")],
            width=6,
        ),
        Panel(
            "stat",
            "MRR",
            "Monthly recurring revenue of the active subscriptions.",
            money,
            [Query(value("revmon_mrr_amount"), "MRR")],
            width=6,
        ),
        Panel(
            "stat",
            "Churn",
            "Customers lost in the window over the customers at its start; the alert "
            "CustomerChurnHigh fires above 5% over 90 days.",
            RATIO,
            [Query(value("revmon_customer_churn_ratio", WINDOW), "{{window}}")],
            width=6,
            line=0.05,
        ),
        Panel(
            "stat",
            "Net revenue retention",
            "MRR kept from the customers at the window's start, expansion included.",
            RATIO,
            [Query(value("revmon_net_revenue_retention_ratio", WINDOW), "{{window}}")],
            width=6,
            line=1,
            above_is_bad=False,
        ),
        Panel(
            "timeseries",
            "MRR movements",
            "MRR gained (new, expansion: above zero) and lost (contraction, churn: below "
            "zero) in the window.",
            money,
            [
                Query(
                    value("revmon_mrr_movement_amount", f"{GAINS},{WINDOW}"),
                    "{{movement}}",
                ),
                Query(
                    "-1 * "
                    + value(
                        "revmon_mrr_movement_amount", f'movement=~"contraction|churn",{WINDOW}'
                    ),
                    "{{movement}}",
                ),
            ],
            stacked=True,
            bars=True,
        ),
        Panel(
            "timeseries",
            "New and churned customers",
            "Accounts that became and stopped being customers in the window.",
            COUNT,
            [
                Query(value("revmon_customers_new", WINDOW), "new"),
                Query(value("revmon_customers_churned", WINDOW), "churned"),
            ],
        ),
    ]
    effort = value("revmon_sales_activity_seconds", WINDOW)
    revenue = value("revmon_segment_revenue_amount")
    segments = [
        Panel(
            "bargauge",
            "Sales effort share against revenue share",
            "By segment: share of the time spent in sales activities in the window, and "
            "share of the 365-day revenue. Effort far above revenue is attention misplaced.",
            RATIO,
            [
                Query(
                    f"{effort} / ignoring (segment) group_left sum without (segment) ({effort})",
                    "effort {{segment}}",
                ),
                Query(
                    f"{revenue} / ignoring (segment) group_left sum without (segment) ({revenue})",
                    "revenue {{segment}}",
                ),
            ],
        ),
        Panel(
            "bargauge",
            "Undercovered accounts",
            "Accounts not met, visited or called within their segment's cadence; key "
            "accounts (1m_5m, 5m_plus) raise KeyAccountsUndercovered.",
            COUNT,
            [Query(value("revmon_accounts_undercovered"), "{{segment}}")],
            line=1,
        ),
        Panel(
            "bargauge",
            "Accounts by segment",
            "Known accounts by 365-day revenue segment.",
            COUNT,
            [Query(value("revmon_accounts"), "{{segment}}")],
        ),
        Panel(
            "timeseries",
            "Sales activities by segment",
            "Calls, emails, meetings and visits in the window, by the account's segment.",
            COUNT,
            [
                Query(
                    f"sum by (segment) ({value('revmon_sales_activities', WINDOW)})",
                    "{{segment}}",
                )
            ],
            stacked=True,
        ),
    ]
    return Dashboard(
        "revmon-customers",
        "revmon / Customers and segments",
        "Customers, MRR movements, churn, NRR, sales attention by segment, undercovered.",
        [window_variable()],
        [("Customers", base), ("Segments", segments)],
    )

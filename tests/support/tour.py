"""A hand-made 230-day history that crosses every shipped alert threshold once, and recovers.

Day n is `START + n days` at noon (UTC). What each shipped rule sees:

- `KeyAccountsUndercovered`: account `key-1` pays 2,000,000 on day 0 (segment `1m_5m`,
  cadence 30 days) and has a meeting that day; none until day 50, then one every 20
  days. Undercovered from day 31, firing on day 32, resolved on day 50.
- `LeadConversionDrop`: a lead a day enters `mql`; until day 59 it advances to `sql` the
  next day, from day 60 to 99 it is disqualified, then it advances again until day 130.
  The 30-day `mql` conversion falls below 0.2 in the 80s and recovers past it by day 106.
- `ExpenseToRevenueHigh`: 1,000 of revenue and 300 of expense a day; from day 100 to 139
  the expense is 3,000 a day, then nothing. The 90-day E:R crosses 0.6 on day 109 and
  stays above the 0.55 clear value until the costly days leave the window (day 213).
- `NewBusinessPipelineThinning`: one new-business opportunity (10,000) a day to day 99,
  none to day 125, three a day from day 126 on. Each moves to `discovery` the next day and
  is won on the fifth. The 30-day pace falls below 0.6 on day 115 and recovers by day 130.
- `CustomerChurnHigh`: accounts `cust-0`..`cust-39` subscribe on days 0-39; four of them
  cancel on days 120-123. 90-day churn is above 0.05 from day 121 until the cancellations
  leave the window (day 211).
- `PipelineCoverageLow`: the config's target for 2026-Q3 (new business 200,000) starts on
  day 181: the open new-business pipeline covers less than 3x the remainder until enough
  is won (day 185).
- `StaleOpportunities`: two expansion deals open in `qualification` on day 190 and sit
  there past its 14-day SLA (stale share 2 of 5 from day 205); they move to `discovery`
  on day 212.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 1, 1, 12, tzinfo=UTC)
LAST_DAY = 230
TARGETS = [{"period": "2026-Q3", "kind": "new_business", "amount": 200000}]


def at(day: int) -> str:
    """The timestamp of day `day`."""
    return (START + timedelta(days=day)).isoformat()


def _key_account(day: int) -> Iterator[dict[str, Any]]:
    if day == 0:
        yield {"type": "invoice.paid", "account_id": "key-1", "amount": 2_000_000}
    if day == 0 or (day >= 50 and day % 20 == 10):
        yield {"type": "activity.logged", "account_id": "key-1", "kind": "meeting"}


def _leads(day: int) -> Iterator[dict[str, Any]]:
    if day <= 130:
        yield {"type": "lead.created", "lead_id": f"l{day}", "stage": "mql", "channel": "email"}
    if 1 <= day <= 131:
        made = day - 1
        stage = "disqualified" if 60 <= made <= 99 else "sql"
        yield {"type": "lead.stage_changed", "lead_id": f"l{made}", "stage": stage}


def _money(day: int) -> Iterator[dict[str, Any]]:
    yield {"type": "invoice.paid", "account_id": "acct-er", "amount": 1000}
    if day < 100:
        yield {"type": "expense.recorded", "category": "tools", "amount": 300}
    elif day < 140:
        yield {"type": "expense.recorded", "category": "tools", "amount": 3000}


def _new_business(day: int) -> Iterator[dict[str, Any]]:
    per_day = 1 if day <= 99 else (0 if day <= 125 else 3)
    for i in range(per_day):
        yield {
            "type": "opportunity.created",
            "opportunity_id": f"o{day}-{i}",
            "account_id": "acct-er",
            "amount": 10000,
            "kind": "new_business",
        }
    for back, stage in ((1, "discovery"), (5, "won")):
        made = day - back
        count = 1 if 0 <= made <= 99 else (3 if made >= 126 else 0)
        for i in range(count):
            yield {"type": "opportunity.stage_changed", "opportunity_id": f"o{made}-{i}",
                   "stage": stage}  # fmt: skip


def _customers(day: int) -> Iterator[dict[str, Any]]:
    if day < 40:
        yield {"type": "subscription.started", "subscription_id": f"s{day}",
               "account_id": f"cust-{day}", "mrr": 100}  # fmt: skip
    if 120 <= day <= 123:
        yield {"type": "subscription.canceled", "subscription_id": f"s{day - 120}"}


def _stale(day: int) -> Iterator[dict[str, Any]]:
    for i in range(2):
        if day == 190:
            yield {"type": "opportunity.created", "opportunity_id": f"x{i}",
                   "account_id": "acct-er", "amount": 400000, "kind": "expansion"}  # fmt: skip
        if day == 212:
            yield {"type": "opportunity.stage_changed", "opportunity_id": f"x{i}",
                   "stage": "discovery"}  # fmt: skip


def events() -> Iterator[dict[str, Any]]:
    """Every event of the history, in time order."""
    for day in range(LAST_DAY + 1):
        streams = (_key_account, _leads, _money, _new_business, _customers, _stale)
        for n, event in enumerate(e for stream in streams for e in stream(day)):
            yield {"event_id": f"d{day}-{n}", "occurred_at": at(day), **event}

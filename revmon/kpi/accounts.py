"""Account segments and sales attention (SPEC §3.7), and the account-stage book behind §3.6.

`AccountBook` is the second stage (docs/architecture.md): it receives `AccountFact`s
keyed by `account_id`, so every fact of an account is in one book. It keeps one compact
record per account and the §3.6 event-time series (`kpi.customers`).

Why partials walk the accounts: an account's segment is a function of `now` (its
revenue of the 365 days up to now), so activities and coverage cannot be filed under a
segment when they happen. Accounts are far fewer than leads (a partition of a large
engine holds tens of thousands), and the walk is a few microseconds per account.

Partials (keys `metric|label|...`, each the exported series itself): the §3.6 ones of
`kpi.customers`, and `revmon_accounts|<segment>`, `revmon_segment_revenue_amount|<segment>`,
`revmon_sales_activities|<segment>|<kind>|<window>`,
`revmon_sales_activity_seconds|<segment>|<window>`,
`revmon_accounts_undercovered|<segment>`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from revmon.events import (
    ActivityLogged,
    InvoicePaid,
    RefundIssued,
    SubscriptionCanceled,
    SubscriptionChanged,
    SubscriptionStarted,
)
from revmon.kpi import customers
from revmon.kpi.customers import AccountFact, insert_in_time_order, replay, subscription_entry
from revmon.kpi.ledger import Records, Sample, Windows, component
from revmon.settings import Settings

DAY = 86_400.0
YEAR = 365 * DAY  # segment revenue covers (now - 365d, now]
ACTIVITY_KINDS = ("call", "email", "meeting", "visit")
_EMAIL = ACTIVITY_KINDS.index("email")  # the one kind that is not a touch (SPEC §3.7)
MICROS = 1_000_000

# Partial (summable component) names: the exported metric names.
ACCOUNTS = "revmon_accounts"  # |segment
SEGMENT_REVENUE = "revmon_segment_revenue_amount"  # |segment
ACTIVITIES = "revmon_sales_activities"  # |segment|kind|window
SECONDS = "revmon_sales_activity_seconds"  # |segment|window (v1: minutes)
UNDERCOVERED = "revmon_accounts_undercovered"  # |segment

# An account record: [subscriptions, revenue, activities, old_touch], each list flat and
# in time order, None while empty (most accounts are prospects with no revenue at all).
# - subscriptions: [at, code, subscription_id, mrr] per event, all kept (kpi.customers);
# - revenue: [at, micro-units] per invoice (refunds negative), the newest 365 days;
# - activities: [at, kind index, minutes (an int when whole)], what the longest window
#   can see;
# - old_touch: the newest call/meeting/visit among activities dropped from the list.
SUBS, REVENUE, ACTIVITY, OLD_TOUCH = range(4)
_REVENUE_STRIDE, _ACTIVITY_STRIDE = 2, 3


@dataclass(slots=True)
class AccountBook:
    """The accounts of one account-stage partition (SPEC §3.6, §3.7).

    `records`: account id → record (see above); `windows`: the §3.6 series. The customer
    count and MRR where every timeline ends are derived (`rebuild()`).
    """

    settings: Settings
    records: Records
    windows: Windows  # its retention is also how long activities are kept
    _customers: int = 0
    _mrr: Decimal = Decimal(0)

    @classmethod
    def from_settings(cls, settings: Settings) -> AccountBook:
        """An empty book; series and activities keep what the longest window sees."""
        return cls(settings, Records(), Windows(max(w.seconds for w in settings.window_list)))

    def apply(self, fact: AccountFact) -> None:
        """Apply one fact; any event makes its account known."""
        event = fact.event
        record = self.records.get(fact.account_id)
        known = record is not None
        if record is None:
            record = [None, None, None, None]
        if isinstance(event, SubscriptionStarted | SubscriptionChanged | SubscriptionCanceled):
            record[SUBS] = self._subscription(record[SUBS] or [], subscription_entry(event))
        elif isinstance(event, InvoicePaid | RefundIssued):
            micros = float(round(event.amount * MICROS))
            entry = [event.at, micros if isinstance(event, InvoicePaid) else -micros]
            record[REVENUE] = _keep(record[REVENUE], entry, _REVENUE_STRIDE, YEAR)[0]
        elif isinstance(event, ActivityLogged):
            self._activity(record, event)
        elif known:
            return
        self.records.put(fact.account_id, record)

    def _subscription(self, subs: list[Any], entry: list[Any]) -> list[Any]:
        """Insert a subscription event and write the difference it makes to the timeline."""
        old = replay(subs)
        insert_in_time_order(subs, entry, customers.STRIDE)
        new = replay(subs)
        for series, at, value in customers.corrections(old, new):
            self.windows.add(series, at, value)
        self._customers += new.customer - old.customer
        self._mrr += new.mrr - old.mrr
        return subs

    def _activity(self, record: list[Any], event: ActivityLogged) -> None:
        kind = ACTIVITY_KINDS.index(event.kind)
        entry = [event.at, kind, _compact(event.effective_minutes)]
        kept, dropped = _keep(record[ACTIVITY], entry, _ACTIVITY_STRIDE, self.windows.retention)
        record[ACTIVITY] = kept
        for i in range(0, len(dropped), _ACTIVITY_STRIDE):
            touch = record[OLD_TOUCH]
            if dropped[i + 1] != _EMAIL and (touch is None or touch < dropped[i]):
                record[OLD_TOUCH] = dropped[i]

    def rebuild(self) -> None:
        """Recompute the derived customer count and MRR from `records` (after `load()`)."""
        self._customers, self._mrr = 0, Decimal(0)
        for _, record in self.records.items():
            if record[SUBS]:
                timeline = replay(record[SUBS])
                self._customers += timeline.customer
                self._mrr += timeline.mrr

    def partials(self, now: float) -> dict[str, float]:
        """The summable components at `now` (see the module docstring for the keys).

        Facts dated after `now` have not happened yet: they count in no window, no
        segment revenue, no coverage, and not in the customers and MRR of now.
        """
        out = customers.customer_partials(
            self.windows, self.settings.window_list, now, self._customers, self._mrr
        )
        out.update(_SegmentTally(self.settings, now).walk(self.records).partials())
        return out


def _keep(
    flat: list[Any] | None, entry: list[Any], stride: int, retention: float
) -> tuple[list[Any] | None, list[Any]]:
    """Insert `entry` into `flat` in time order, then drop what no window can need.

    Dropped are the entries at or before (newest entry − retention). Returns the kept
    list (None when empty) and the dropped entries.
    """
    flat = flat or []
    insert_in_time_order(flat, entry, stride)
    cut = flat[-stride] - retention
    i = 0
    while i < len(flat) and flat[i] <= cut:
        i += stride
    dropped = flat[:i]
    del flat[:i]
    return (flat or None), dropped


def _compact(minutes: float) -> float:
    """Minutes as an int when whole: small ints are shared objects, so a default costs nothing."""
    return int(minutes) if float(minutes).is_integer() else float(minutes)


def segment_index(micros: float, bounds: list[float]) -> int:
    """Index into `Segments.names` of a revenue (micro-units), `bounds` also in micro-units.

    `zero` is ≤ 0; every other segment includes its lower bound.
    """
    return 0 if micros <= 0 else bisect_right(bounds, micros)


class _SegmentTally:
    """The §3.7 sums at one `now`, accumulated account by account."""

    def __init__(self, settings: Settings, now: float) -> None:
        segments = settings.segments
        self.names = segments.names
        self.windows = settings.window_list
        self.now = now
        self.bounds = [float(round(b * MICROS)) for b in segments.boundaries]
        self.cadence = [segments.cadence.get(name) for name in self.names]
        self.edges = [now - w.seconds for w in self.windows]
        self.year_start = now - YEAR
        n = len(self.names)
        self.accounts = [0] * n
        self.revenue = [0.0] * n
        self.undercovered = [0] * n
        self.activities = [[[0] * len(self.windows) for _ in ACTIVITY_KINDS] for _ in range(n)]
        self.minutes = [[0.0] * len(self.windows) for _ in range(n)]

    def walk(self, records: Records) -> _SegmentTally:
        """Tally every account of `records`."""
        for _, record in records.items():
            self.add(record)
        return self

    def add(self, record: list[Any]) -> None:
        """Tally one account: its segment now, its activities and its coverage.

        Entries are in time order, so each window is a slice found by bisection and
        summed or counted in C: a few microseconds per account.
        """
        now = self.now
        micros = 0.0
        revenue = record[REVENUE]
        if revenue:
            times = revenue[0::_REVENUE_STRIDE]
            hi = bisect_right(times, now)
            lo = bisect_right(times, self.year_start, 0, hi)
            micros = sum(revenue[2 * lo + 1 : 2 * hi : 2])  # whole micro-units: exact
        segment = segment_index(micros, self.bounds)
        self.accounts[segment] += 1
        self.revenue[segment] += micros
        activities = record[ACTIVITY]
        if activities:
            self._activities(segment, activities)
        cadence = self.cadence[segment]
        if cadence is not None:
            touched = last_touch(record, now)
            if touched is None or now - touched > cadence:
                self.undercovered[segment] += 1

    def _activities(self, segment: int, activities: list[Any]) -> None:
        times = activities[0::_ACTIVITY_STRIDE]
        hi = bisect_right(times, self.now)
        kinds, minutes = activities[1::_ACTIVITY_STRIDE], activities[2::_ACTIVITY_STRIDE]
        counts, total = self.activities[segment], self.minutes[segment]
        for w, edge in enumerate(self.edges):
            lo = bisect_right(times, edge, 0, hi)
            if lo < hi:
                inside = kinds[lo:hi]
                for k, by_window in enumerate(counts):
                    by_window[w] += inside.count(k)
                total[w] += sum(minutes[lo:hi])

    def partials(self) -> dict[str, float]:
        """The tallies as components."""
        out: dict[str, float] = {}
        for s, name in enumerate(self.names):
            out[component(ACCOUNTS, name)] = float(self.accounts[s])
            out[component(SEGMENT_REVENUE, name)] = self.revenue[s] / MICROS
            out[component(UNDERCOVERED, name)] = float(self.undercovered[s])
            for w, window in enumerate(self.windows):
                out[component(SECONDS, name, window.label)] = self.minutes[s][w] * 60
                for k, kind in enumerate(ACTIVITY_KINDS):
                    key = component(ACTIVITIES, name, kind, window.label)
                    out[key] = float(self.activities[s][k][w])
        return out


def last_touch(record: list[Any], now: float) -> float | None:
    """When the account last had a call, meeting or visit at or before `now`, or None.

    A touch dropped from the activities lies before every kept one, so it is only
    wrong to skip it when the account has activities dated a whole retention after now.
    """
    activities = record[ACTIVITY]
    if activities:
        for i in range(len(activities) - _ACTIVITY_STRIDE, -1, -_ACTIVITY_STRIDE):
            if activities[i] <= now and activities[i + 1] != _EMAIL:
                return float(activities[i])
    old: float | None = record[OLD_TOUCH]
    return old if old is not None and old <= now else None


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The §3.6 and §3.7 series from the account book's partials summed over partitions."""

    def get(*key: str) -> float:
        return partials.get(component(*key), 0.0)

    names = settings.segments.names
    windows = [w.label for w in settings.window_list]
    out = customers.samples(settings, partials, now)
    for name in (ACCOUNTS, SEGMENT_REVENUE):
        out.extend(Sample(name, (("segment", s),), get(name, s)) for s in names)
    out.extend(
        Sample(
            ACTIVITIES,
            (("segment", s), ("kind", k), ("window", w)),
            get(ACTIVITIES, s, k, w),
        )
        for s in names
        for k in ACTIVITY_KINDS
        for w in windows
    )
    out.extend(
        Sample(SECONDS, (("segment", s), ("window", w)), get(SECONDS, s, w))
        for s in names
        for w in windows
    )
    out.extend(Sample(UNDERCOVERED, (("segment", s),), get(UNDERCOVERED, s)) for s in names)
    return out

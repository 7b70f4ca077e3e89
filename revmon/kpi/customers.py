"""Customers and retention (SPEC §3.6): account facts, subscription routing and MRR timelines.

Two stages (docs/architecture.md): the entity stage turns events into `AccountFact`s
(`SubscriptionRouter.route`, keyed by `subscription_id`); the account stage
(`kpi.accounts.AccountBook`, keyed by `account_id`) keeps each account's subscription
events in `occurred_at` order and replays them with `replay()`.

Why a replay and not a running state: billing webhooks arrive out of order and partitions
interleave, but SPEC §3.6 defines an account's movements in event-time order. An account
has few subscription events, so for each one the book replays the account's history
without and with it and writes the difference of the two timelines into its windows
(`corrections()`): an in-order event adds just its own movement; a late one also
retracts (negative points) and re-adds whatever it changes later in the timeline, so the
windowed counts and amounts stay exactly those of an in-order arrival.

Partials (keys `metric|label|...`, each the exported series itself): `revmon_customers`
and `revmon_mrr_amount` at now; `revmon_customers_new|<window>`,
`revmon_customers_churned|<window>`; `revmon_mrr_movement_amount|<movement>|<window>`
(every movement a positive amount). The ratios are computed from these in `samples()`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from revmon.events import (
    EVENT_ADAPTER,
    ActivityLogged,
    Event,
    InvoicePaid,
    RefundIssued,
    SubscriptionCanceled,
    SubscriptionChanged,
    SubscriptionStarted,
)
from revmon.kpi.finance import MONEY_DIGITS
from revmon.kpi.ledger import Records, Sample, Windows, component
from revmon.settings import Settings, Window

SubscriptionEvent = SubscriptionStarted | SubscriptionChanged | SubscriptionCanceled
#: Events the account stage needs every one of (besides subscription events).
_ACCOUNT_EVENTS = (InvoicePaid, RefundIssued, ActivityLogged)

MOVEMENTS = ("new", "expansion", "contraction", "churn")
NEW, EXPANSION, CONTRACTION, CHURN = MOVEMENTS

# Partial (summable component) names: the exported metric names.
CUSTOMERS = "revmon_customers"
MRR = "revmon_mrr_amount"
CUSTOMERS_NEW = "revmon_customers_new"  # |window
CUSTOMERS_CHURNED = "revmon_customers_churned"  # |window
MRR_MOVEMENT = "revmon_mrr_movement_amount"  # |movement|window

# Event-time series of the account book's windows.
BECAME = "customers|new"
STOPPED = "customers|churned"
MOVEMENT_SERIES = {movement: f"mrr|{movement}" for movement in MOVEMENTS}

# An account's subscription events, flat in its record: [at, code, subscription_id, mrr]
# per event (mrr a decimal string, None for a cancel), in `occurred_at` order.
START, CHANGE, CANCEL = 0, 1, 2
STRIDE = 4


@dataclass(frozen=True, slots=True)
class AccountFact:
    """An event about one account, as the account stage receives it (keyed by `account_id`).

    `subscription.changed`/`canceled` carry no account id of their own: the router adds it.
    """

    account_id: str
    event: Event
    #: Where it came from: input topic, partition, offset, and its ordinal among the
    #: facts of that message. The account stage drops a fact at or before the last
    #: position it applied from the same input partition (a re-route after a restart).
    source: tuple[str, int, int, int] | None = None

    def to_json(self) -> bytes:
        """The fact as the internal account topic carries it: `{"account_id", "event", "src"}`."""
        account = json.dumps(self.account_id).encode()
        source = b"" if self.source is None else b',"src":' + json.dumps(self.source).encode()
        return (
            b'{"account_id":'
            + account
            + b',"event":'
            + EVENT_ADAPTER.dump_json(self.event)
            + source
            + b"}"
        )

    def at(self, source: tuple[str, int, int, int]) -> AccountFact:
        """This fact, sent from `source`."""
        return AccountFact(self.account_id, self.event, source)

    @classmethod
    def from_json(cls, raw: bytes) -> AccountFact:
        """The fact of `to_json()` bytes (written by revmon itself, so trusted)."""
        return cls.from_data(json.loads(raw))

    @classmethod
    def from_data(cls, data: Any) -> AccountFact:
        """The fact of one decoded `to_json()` object."""
        src = data.get("src")
        source = None if src is None else (str(src[0]), int(src[1]), int(src[2]), int(src[3]))
        return cls(data["account_id"], EVENT_ADAPTER.validate_python(data["event"]), source)

    @classmethod
    def many_from_json(cls, raw: bytes) -> list[AccountFact]:
        """The facts of a JSON array of `to_json()` objects (one pydantic pass over it)."""
        return [cls(item.account_id, item.event, item.src) for item in _FACTS.validate_json(raw)]


@dataclass(frozen=True, slots=True)
class _FactPayload:
    account_id: str
    event: Annotated[Event, Field(discriminator="type")]
    src: tuple[str, int, int, int] | None = None


_FACTS: TypeAdapter[list[_FactPayload]] = TypeAdapter(list[_FactPayload])


def account_of(event: Event) -> str | None:
    """The account an event names itself, or None."""
    account_id = getattr(event, "account_id", None)
    return account_id if isinstance(account_id, str) else None


@dataclass(slots=True)
class SubscriptionRouter:
    """Turns events into account facts; entity stage, keyed by `subscription_id`.

    `records` maps a subscription id to its account id (a string) once its `started` has
    arrived, or, until then, to the changes and cancels that came first (a list of their
    JSON texts, in arrival order), released right after the start. The mapping is kept
    after a cancel, so a late event of the subscription still finds its account; the
    first start routes the subscription (a repeated start is forwarded by its own
    `account_id` but does not re-route).
    """

    records: Records = field(default_factory=Records)
    #: Subscription id → `[start event id, held events (JSON texts)]`: what its (first)
    #: start released, for `reroute`.
    released: Records = field(default_factory=Records)
    #: Account id → the id of the first event here that named it without being about
    #: money or activity (a lead or an opportunity): the one such fact the account stage
    #: needs, since that only makes the account known (SPEC §3.7).
    announced: Records = field(default_factory=Records)

    def reroute(self, event: Event) -> list[AccountFact]:
        """The facts `event` gave when it was routed, again, without changing anything.

        After a restart the worker re-routes input it had applied but whose facts may not
        have reached the account stage, which drops what it already has by the facts'
        source positions; so this gives exactly what `route` gave, in the same order.
        """
        if isinstance(event, SubscriptionStarted):
            release = self.released.get(event.subscription_id)
            if (
                self.records.get(event.subscription_id) != event.account_id
                or release is None
                or release[0] != event.event_id
            ):
                return [AccountFact(event.account_id, event)]  # released nothing
            held = [EVENT_ADAPTER.validate_json(text) for text in release[1]]
            return [AccountFact(event.account_id, e) for e in [*held, event]]
        if isinstance(event, SubscriptionChanged | SubscriptionCanceled):
            known = self.records.get(event.subscription_id)
            if not isinstance(known, str):
                return []  # still held
            release = self.released.get(event.subscription_id)
            if release is not None and EVENT_ADAPTER.dump_json(event).decode() in release[1]:
                return []  # it was held: its fact went out with the start
            return [AccountFact(known, event)]
        account_id = account_of(event)
        if account_id is None:
            return []
        if isinstance(event, _ACCOUNT_EVENTS) or self.announced.get(account_id) == event.event_id:
            return [AccountFact(account_id, event)]
        return []

    def route(self, event: Event) -> list[AccountFact]:
        """The facts `event` gives the account stage, in the order to send them."""
        if isinstance(event, SubscriptionStarted):
            return self._started(event)
        if isinstance(event, SubscriptionChanged | SubscriptionCanceled):
            known = self.records.get(event.subscription_id)
            if isinstance(known, str):
                return [AccountFact(known, event)]
            held = [*(known or ()), EVENT_ADAPTER.dump_json(event).decode()]
            self.records.put(event.subscription_id, held)
            return []
        account_id = account_of(event)
        if account_id is None:
            return []
        if not isinstance(event, _ACCOUNT_EVENTS):
            if account_id in self.announced:
                return []  # the account stage knows the account already
            self.announced.put(account_id, event.event_id)
        return [AccountFact(account_id, event)]

    def _started(self, event: SubscriptionStarted) -> list[AccountFact]:
        facts = [AccountFact(event.account_id, event)]
        known = self.records.get(event.subscription_id)
        if isinstance(known, str):
            return facts
        self.records.put(event.subscription_id, event.account_id)
        if known:
            self.released.put(event.subscription_id, [event.event_id, list(known)])
        # Held events go out first: they arrived first, and the account book breaks ties
        # of `occurred_at` by the order facts reach it (SPEC §3.6: ties in arrival order).
        held = [AccountFact(event.account_id, EVENT_ADAPTER.validate_json(t)) for t in known or ()]
        return [*held, *facts]

    def rebuild(self) -> None:
        """Nothing is derived: the records are the whole state."""


def subscription_entry(event: SubscriptionEvent) -> list[Any]:
    """The flat entry an account record keeps for a subscription event."""
    if isinstance(event, SubscriptionStarted):
        return [event.at, START, event.subscription_id, str(event.mrr)]
    if isinstance(event, SubscriptionChanged):
        return [event.at, CHANGE, event.subscription_id, str(event.mrr)]
    return [event.at, CANCEL, event.subscription_id, None]


def insert_in_time_order(flat: list[Any], entry: Sequence[Any], stride: int) -> None:
    """Insert `entry` (time first) into `flat` (entries of `stride` items, in time order).

    It goes after every entry at the same time: ties keep their arrival order. Scanning
    from the end makes the usual in-order arrival O(1).
    """
    at = entry[0]
    i = len(flat)
    while i and flat[i - stride] > at:
        i -= stride
    flat[i:i] = entry


@dataclass(slots=True)
class Timeline:
    """An account's subscription history replayed: its points, and where it ends."""

    points: dict[tuple[str, float], Decimal]  # (series, at) -> summed value
    customer: bool
    mrr: Decimal


def replay(subs: Sequence[Any]) -> Timeline:
    """SPEC §3.6 over an account's subscription events (flat, in `occurred_at` order).

    A start with no active subscription is `new` (the account becomes a customer), any
    other start `expansion`; a change is `expansion`/`contraction` by the difference; a
    cancel leaving none active is `churn` (the account stops being a customer), any
    other `contraction`. Events of a subscription that is unknown or canceled at that
    point change nothing; so does a start of one already active.
    """
    active: dict[str, Decimal] = {}
    ended: set[str] = set()
    points: dict[tuple[str, float], Decimal] = {}

    def add(series: str, at: float, value: Decimal) -> None:
        points[series, at] = points.get((series, at), Decimal(0)) + value

    for i in range(0, len(subs), STRIDE):
        at, code, subscription_id, mrr = subs[i : i + STRIDE]
        if code == START:
            if subscription_id in active or subscription_id in ended:
                continue
            amount = Decimal(mrr)
            if not active:
                add(BECAME, at, Decimal(1))
            add(MOVEMENT_SERIES[EXPANSION if active else NEW], at, amount)
            active[subscription_id] = amount
        elif subscription_id not in active:
            continue
        elif code == CHANGE:
            amount = Decimal(mrr)
            difference = amount - active[subscription_id]
            active[subscription_id] = amount
            if difference:
                movement = EXPANSION if difference > 0 else CONTRACTION
                add(MOVEMENT_SERIES[movement], at, abs(difference))
        else:
            amount = active.pop(subscription_id)
            ended.add(subscription_id)
            if not active:
                add(STOPPED, at, Decimal(1))
            add(MOVEMENT_SERIES[CONTRACTION if active else CHURN], at, amount)
    return Timeline(points, bool(active), sum(active.values(), Decimal(0)))


def corrections(old: Timeline, new: Timeline) -> Iterator[tuple[str, float, float]]:
    """The points that turn `old`'s series into `new`'s: (series, at, value), none zero."""
    for key in sorted(old.points.keys() | new.points.keys()):
        difference = new.points.get(key, Decimal(0)) - old.points.get(key, Decimal(0))
        if difference:
            yield key[0], key[1], float(difference)


def customer_partials(
    windows: Windows, window_list: Sequence[Window], now: float, customers: int, mrr: Decimal
) -> dict[str, float]:
    """The §3.6 components at `now`, given the account book's windows and its totals.

    `customers` and `mrr` are where every account's timeline ends; what is dated after
    `now` has not happened yet (SPEC §4 wall clock) and is taken away.
    """
    out = {
        CUSTOMERS: customers - (_after(windows, BECAME, now) - _after(windows, STOPPED, now)),
        MRR: float(mrr)
        - math.fsum(
            sign * _after(windows, MOVEMENT_SERIES[movement], now)
            for movement, sign in zip(MOVEMENTS, (1, 1, -1, -1), strict=True)
        ),
    }
    for window in window_list:
        out[component(CUSTOMERS_NEW, window.label)] = windows.sum(BECAME, now, window.seconds)
        out[component(CUSTOMERS_CHURNED, window.label)] = windows.sum(STOPPED, now, window.seconds)
        for movement in MOVEMENTS:
            out[component(MRR_MOVEMENT, movement, window.label)] = windows.sum(
                MOVEMENT_SERIES[movement], now, window.seconds
            )
    return out


def _after(windows: Windows, key: str, now: float) -> float:
    """Σ of series `key` dated after `now`, up to 2·now (2·now − now is exact in floats)."""
    return windows.sum(key, 2 * now, now)


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The §3.6 series from partials summed over partitions; ratios only where defined."""
    del now  # every component is already taken at `now`

    def get(*key: str) -> float:
        return partials.get(component(*key), 0.0)

    customers, mrr = get(CUSTOMERS), get(MRR)
    became: list[Sample] = []
    stopped: list[Sample] = []
    movements: list[Sample] = []
    ratios: list[Sample] = []
    nrr: list[Sample] = []
    for window in settings.window_list:
        label = ("window", window.label)
        new, churned = get(CUSTOMERS_NEW, window.label), get(CUSTOMERS_CHURNED, window.label)
        became.append(Sample(CUSTOMERS_NEW, (label,), new))
        stopped.append(Sample(CUSTOMERS_CHURNED, (label,), churned))
        moved = {m: get(MRR_MOVEMENT, m, window.label) for m in MOVEMENTS}
        for movement, value in moved.items():
            movements.append(Sample(MRR_MOVEMENT, (("movement", movement), label), value))
        before = customers - new + churned
        if before > 0:
            ratios.append(Sample("revmon_customer_churn_ratio", (label,), churned / before))
        kept = moved[EXPANSION] - moved[CONTRACTION] - moved[CHURN]
        start = round(mrr - moved[NEW] - kept, MONEY_DIGITS)
        if start > 0:
            nrr.append(
                Sample("revmon_net_revenue_retention_ratio", (label,), (start + kept) / start)
            )
    return [
        Sample(CUSTOMERS, (), customers),
        Sample(MRR, (), mrr),
        *became,
        *stopped,
        *movements,
        *ratios,
        *nrr,
    ]

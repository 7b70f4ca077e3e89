"""A plain batch computation of revmon's metrics from a JSON-lines file, written from SPEC.

The end-to-end cross-check compares `revmon replay` with this module, so it shares no code
with the engine: it imports nothing from `revmon.kpi`, `revmon.engine` or `revmon.events`
(only the configuration, `revmon.settings.Settings`), parses the lines itself and keeps
the simplest state there is: entities as small records, every flow as a list of
(time, value) facts, summed over `now - W < t <= now` at the end.

SPEC §1 is applied line by line in file order. Where SPEC leaves a choice, this follows
the reading documented in the revmon.kpi docstrings:

- an opportunity's close counts once, at its latest close: re-opening takes the earlier
  close back (kpi/pipeline.py), and a closed opportunity keeps the amount it closed at;
- `revmon_stage_win_ratio` counts, per open stage, the opportunities whose latest close
  lies in the last 365 days and that were ever in that stage (kpi/forecast.py);
- only `lead.stage_changed`, `opportunity.stage_changed` and `opportunity.amount_changed`
  can be late (an activity names an opportunity but is about an account);
- §3.6: an account's subscription events (`changed`/`canceled` belong to the account of
  the subscription's first `started` in the file) are walked in `occurred_at` order, ties
  in file order; a start of a subscription that is active or canceled at that point
  changes nothing (kpi/customers.py); churn movements are positive amounts; the churn
  ratio needs a denominator > 0 and the retention ratio a start > 0 at 6 decimals;
- §3.7: the known accounts are those named by any applied event (`account_id`) plus the
  accounts of started subscriptions; `email` is not a touch, undercovered is age >
  cadence, and a never-touched account is undercovered only in a segment with a
  cadence (kpi/accounts.py); events dated after now have not happened yet.
- §2 expiry (v2): the events "about" an entity are its stage changes and amount
  changes; one that moves nothing and is dated inside `(e, e + expire]` holds the entity
  in its stage for good (until it moves). Expiries still due at the end are applied at
  now, the newest event, as if an event had arrived. `entered_at` of a snapshot must
  not be after `occurred_at`; without `snapshot` it is not checked.

Duplicates are judged with one memory of event ids in file order; revmon keeps one per
input partition, which agrees as long as every repeat is a copy of a line of the same
entity within the dedupe horizon (what the cross-check injects).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.utils import floatToGoString

from revmon.settings import Funnel, Settings

DAY = 86_400.0
YEAR = 365 * DAY
AGE_BOUNDS = (*(d * DAY for d in (1, 3, 7, 14, 30, 60, 90, 180, 365)), math.inf)
OPPORTUNITY_KINDS = ("new_business", "expansion", "renewal")
ACTIVITY_KINDS = ("call", "email", "meeting", "visit")
DEFAULT_MINUTES = {"call": 15.0, "email": 5.0, "meeting": 45.0, "visit": 120.0}
TOUCHES = ("call", "meeting", "visit")
MOVEMENTS = ("new", "expansion", "contraction", "churn")
MONEY_PLACES = Decimal("0.000001")
INVOICE_KINDS = ("new_business", "expansion", "renewal", "recurring", "one_time")
REVENUE_KINDS = (*INVOICE_KINDS, "refund")
CATEGORIES = ("sales", "marketing", "customer_success", "analytics", "tools", "other")
OUTCOMES = ("advanced", "dropped", "regressed")
REASONS = (
    "malformed_json",
    "not_an_event",
    "unknown_type",
    "invalid_field",
    "currency_mismatch",
    "too_large",
)

# SPEC §1, field by field: `name` required, `name?` optional (absent or null),
# `name=default` optional but not null.
SCHEMAS = {
    "lead.created": "lead_id account_id? channel? campaign_id? stage? snapshot? entered_at?",
    "lead.stage_changed": "lead_id stage account_id?",
    "opportunity.created": (
        "opportunity_id account_id? amount kind stage? expected_close_date? channel? snapshot?"
        " entered_at?"
    ),
    "opportunity.stage_changed": "opportunity_id stage amount?",
    "opportunity.amount_changed": "opportunity_id amount",
    "activity.logged": "account_id kind opportunity_id? minutes?",
    "campaign.spend": "campaign_id amount channel?",
    "expense.recorded": "category amount",
    "invoice.paid": "account_id amount kind=recurring invoice_id?",
    "refund.issued": "account_id amount invoice_id?",
    "subscription.started": "subscription_id account_id mrr",
    "subscription.changed": "subscription_id mrr",
    "subscription.canceled": "subscription_id",
}
EVENT_TYPES = tuple(SCHEMAS)
KIND_CHOICES = {
    "opportunity.created": OPPORTUNITY_KINDS,
    "activity.logged": ACTIVITY_KINDS,
    "invoice.paid": INVOICE_KINDS,
}

Key = tuple[str, frozenset[tuple[str, str]]]


class InvalidFieldError(ValueError):
    """A field breaks its rule: the event is rejected as `invalid_field`."""


def text(value: Any, shortest: int = 1, longest: int = 200) -> str:
    """A string of `shortest` to `longest` characters (ids, stages, channels)."""
    if not isinstance(value, str) or not shortest <= len(value) <= longest:
        raise InvalidFieldError(f"not a string of {shortest}-{longest} characters")
    return value


def money(value: Any) -> Decimal:
    """A decimal number or decimal string, finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidFieldError("not a number")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise InvalidFieldError("not a decimal") from exc
    if not amount.is_finite() or amount < 0:
        raise InvalidFieldError("not a finite amount >= 0")
    return amount


def minutes(value: Any) -> float:
    """Minutes of an activity: a number (or numeric string) > 0."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        raise InvalidFieldError("not a number")
    try:
        number = float(value)
    except ValueError as exc:
        raise InvalidFieldError("not a number") from exc
    if not 0 < number <= 100_000:  # also false for NaN
        raise InvalidFieldError("not a positive number of minutes")
    return number


def one_of(choices: tuple[str, ...], value: Any) -> str:
    """One of a fixed set of strings."""
    if value not in choices:
        raise InvalidFieldError(f"not one of {choices}")
    return str(value)


def calendar_date(value: Any) -> date:
    """An ISO date `YYYY-MM-DD`."""
    try:
        return date.fromisoformat(text(value, 10, 10))
    except ValueError as exc:
        raise InvalidFieldError("not a date") from exc


def timestamp(value: Any) -> float:
    """An RFC 3339 timestamp with an offset, as unix seconds; a naive one is invalid."""
    try:
        parsed = datetime.fromisoformat(text(value))
    except ValueError as exc:
        raise InvalidFieldError("not a timestamp") from exc
    if parsed.utcoffset() is None:
        raise InvalidFieldError("naive timestamp")
    return parsed.timestamp()


def boolean(value: Any) -> bool:
    """A JSON true or false."""
    if not isinstance(value, bool):
        raise InvalidFieldError("not a boolean")
    return value


RULES: dict[str, Callable[[Any], Any]] = {
    "event_id": text,
    "occurred_at": timestamp,
    "source": lambda v: text(v, 0, 200),
    "currency": lambda v: text(v, 0, 10),
    "amount": money,
    "mrr": money,
    "minutes": minutes,
    "expected_close_date": calendar_date,
    "category": partial(one_of, CATEGORIES),
    "entered_at": timestamp,
    "snapshot": lambda v: boolean(v),
}


@dataclass(frozen=True)
class Event:
    """A valid event: its type, id, time (unix seconds) and checked fields."""

    type: str
    at: float
    fields: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.fields.get(name)


def decode_line(line: bytes, settings: Settings) -> list[Event | str]:
    """The events of one non-blank line (an object or an array of them), or why each is rejected."""
    if len(line) > 1024 * 1024:
        return ["too_large"]
    try:
        data = json.loads(line, parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return ["malformed_json"]
    if not isinstance(data, list):
        return [judge(data, settings)]
    if not data:
        return ["not_an_event"]
    if len(data) > 10_000:
        return ["too_large"]
    return [judge(element, settings) for element in data]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def judge(data: Any, settings: Settings) -> Event | str:
    """One JSON value as an event, or the reason it is rejected (SPEC §1 checks, in order)."""
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return "not_an_event"
    kind = data["type"]
    if kind not in SCHEMAS:
        return "unknown_type"
    fields: dict[str, Any] = {}
    for spec in ("event_id", "occurred_at", "source?", "currency?", *SCHEMAS[kind].split()):
        name, default = spec.rstrip("?").partition("=")[::2]
        value = data.get(name)
        if name not in data and default:
            value = default
        elif value is None:
            if spec.endswith("?"):
                continue
            return "invalid_field"
        rule = partial(one_of, KIND_CHOICES[kind]) if name == "kind" else RULES.get(name, text)
        try:
            fields[name] = rule(value)
        except InvalidFieldError:
            return "invalid_field"
    if fields.get("currency") not in (None, settings.currency):
        return "currency_mismatch"
    if "stage" in fields and fields["stage"] not in every_stage(funnel_of(kind, settings)):
        return "invalid_field"
    if fields.get("snapshot"):
        if "stage" in fields and fields["stage"] not in funnel_of(kind, settings).stages:
            return "invalid_field"  # a snapshot loads into an open stage
        if fields.get("entered_at", fields["occurred_at"]) > fields["occurred_at"]:
            return "invalid_field"
    return Event(kind, fields["occurred_at"], fields)


def funnel_of(kind: str, settings: Settings) -> Funnel:
    """The funnel of an event type (`lead.*` or `opportunity.*`) or of a funnel name."""
    return settings.funnels.lead if kind.startswith("lead") else settings.funnels.opportunity


def every_stage(funnel: Funnel) -> tuple[str, ...]:
    """Open stages in order, then converted, then dropped."""
    return (*funnel.stages, funnel.converted, *funnel.dropped)


@dataclass
class Entity:
    """A lead or an opportunity: its stage and when it entered it, and the pipeline's view."""

    stage: str
    entered: float
    kind: str = "new_business"
    amount: Decimal = Decimal(0)
    created_at: float = 0.0
    close_date: date | None = None
    reached: set[str] = field(default_factory=set)
    channel: str | None = None  # an opportunity's lead source, as a label
    held: bool = False  # an event inside the expiry period held it in its stage


def _facts() -> defaultdict[Any, list[Any]]:
    return defaultdict(list)


@dataclass
class Batch:
    """Everything the file said, in file order: entities, facts and counters."""

    settings: Settings
    entities: dict[str, dict[str, Entity]] = field(
        default_factory=lambda: {"lead": {}, "opportunity": {}}
    )
    seen: dict[str, float] = field(default_factory=dict)  # event id -> occurred_at
    newest: float | None = None
    applied: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    late: int = 0
    # Facts, by their labels: [time] or [(time, value)].
    entries: defaultdict[tuple[str, str], list[float]] = field(default_factory=_facts)
    exits: defaultdict[tuple[str, str, str], list[tuple[float, float]]] = field(
        default_factory=_facts
    )
    new_names: defaultdict[str, list[float]] = field(default_factory=_facts)
    spend: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    created: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    channel_created: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    revenue: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    expense: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    # §3.6/§3.7: subscription events in file order, known accounts, per-account facts.
    subscriptions: list[Event] = field(default_factory=list)
    accounts: set[str] = field(default_factory=set)
    paid: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    activities: defaultdict[str, list[tuple[float, str, float]]] = field(default_factory=_facts)

    @property
    def leads(self) -> dict[str, Entity]:
        """Leads by id."""
        return self.entities["lead"]

    @property
    def opportunities(self) -> dict[str, Entity]:
        """Opportunities by id."""
        return self.entities["opportunity"]

    def feed(self, lines: Iterable[bytes]) -> Batch:
        """Judge and apply every line in order (blank lines are ignored)."""
        for raw in lines:
            if not raw.strip():
                continue
            for item in decode_line(raw.strip(), self.settings):
                if isinstance(item, str):
                    self.rejected[item] += 1
                elif self.is_duplicate(item):
                    self.duplicates += 1
                else:
                    self.seen[item["event_id"]] = item.at
                    self.newest = item.at if self.newest is None else max(self.newest, item.at)
                    self.applied[item.type] += 1
                    self.apply(item)
        return self

    def is_duplicate(self, event: Event) -> bool:
        """A repeat of an applied id that lies within the horizon of the newest event."""
        at = self.seen.get(event["event_id"])
        return at is not None and self.newest is not None and at >= self.newest - self.horizon

    @property
    def horizon(self) -> float:
        """The dedupe horizon in seconds."""
        return float(self.settings.dedupe_horizon)

    # -- SPEC §1 and §2 ----------------------------------------------------------------
    def apply(self, event: Event) -> None:
        """Apply one valid, non-duplicate event."""
        kind, at = event.type, event.at
        account = event["account_id"]
        if account is not None:
            self.accounts.add(account)
        if kind.startswith("subscription."):
            self.subscriptions.append(event)
        if kind == "activity.logged":
            spent = event["minutes"] or DEFAULT_MINUTES[event["kind"]]
            self.activities[account].append((at, event["kind"], spent))
        if kind.startswith(("lead.", "opportunity.")):
            self.apply_entity(event)
        elif kind == "campaign.spend":
            self.spend[self.channel(event["channel"])].append((at, event["amount"]))
            self.expense["marketing"].append((at, event["amount"]))
        elif kind == "expense.recorded":
            self.expense[event["category"]].append((at, event["amount"]))
        elif kind == "invoice.paid":
            self.revenue[event["kind"]].append((at, event["amount"]))
            self.paid[account].append((at, event["amount"]))
        elif kind == "refund.issued":
            self.revenue["refund"].append((at, -event["amount"]))
            self.paid[account].append((at, -event["amount"]))

    def channel(self, name: str | None) -> str:
        """A channel label: the channel when configured, else `other`."""
        return name if name in self.settings.marketing.channels else "other"

    def apply_entity(self, event: Event) -> None:
        """A lead or opportunity event, by the rules of SPEC §1 and §2 in their order."""
        funnel_name, action = event.type.split(".")
        funnel = funnel_of(event.type, self.settings)
        entity_id = event[f"{funnel_name}_id"]
        entity = self.entities[funnel_name].get(entity_id)
        stage, at = event["stage"], event.at
        if action == "created":
            if entity is None:
                self.create(funnel_name, funnel, entity_id, event)
            return
        if entity is None:
            if action == "stage_changed":  # creates it there, not as a creation
                entity = Entity(stage, at, amount=event["amount"] or Decimal(0), created_at=at)
                self.enter(funnel_name, entity_id, entity, stage, at)
            return
        if at < entity.entered:
            self.late += 1
            return
        deadline = self.deadline(funnel, entity)
        if deadline is not None and at > deadline:
            self.expire(funnel_name, funnel, entity_id, entity, deadline)
        elif deadline is not None and at > entity.entered and stage in (None, entity.stage):
            entity.held = True  # an event inside the period that moves nothing
        is_open = entity.stage in funnel.stages
        if action == "amount_changed":
            if is_open:
                entity.amount = event["amount"]
            return
        if stage == entity.stage:
            return
        if not is_open and (funnel_name == "lead" or stage not in funnel.stages):
            return  # closed: only an opportunity re-opens, and only to an open stage
        if event["amount"] is not None:
            entity.amount = event["amount"]
        if is_open:
            outcome = self.outcome(funnel, entity.stage, stage)
            self.exits[(funnel_name, entity.stage, outcome)].append((at, at - entity.entered))
        self.enter(funnel_name, entity_id, entity, stage, at)

    def create(self, funnel_name: str, funnel: Funnel, entity_id: str, event: Event) -> None:
        """A `*.created` of a new entity: a creation, or a snapshot load (SPEC §1, v2)."""
        at, stage = event.at, event["stage"] or funnel.stages[0]
        if event["snapshot"]:
            since = event["entered_at"] if event["entered_at"] is not None else at
            entity = Entity(stage, since, created_at=since)
            if funnel_name == "opportunity":
                entity.kind, entity.amount = event["kind"], event["amount"]
                entity.close_date = event["expected_close_date"]
                entity.channel = self.channel_of(event["channel"])
            entity.reached.add(stage)
            self.entities[funnel_name][entity_id] = entity
            return
        entity = Entity(stage, at, created_at=at)
        if funnel_name == "lead":
            self.new_names[self.channel(event["channel"])].append(at)
        else:
            entity.kind, entity.amount = event["kind"], event["amount"]
            entity.close_date = event["expected_close_date"]
            entity.channel = self.channel_of(event["channel"])
            self.created[entity.kind].append((at, entity.amount))
            if entity.channel is not None:
                self.channel_created[entity.channel].append((at, entity.amount))
        self.enter(funnel_name, entity_id, entity, entity.stage, at)

    def channel_of(self, name: str | None) -> str | None:
        """An opportunity's channel label, or None when it carries none."""
        return None if name is None else self.channel(name)

    @staticmethod
    def deadline(funnel: Funnel, entity: Entity) -> float | None:
        """When the entity expires from its open stage (SPEC §2), or None."""
        seconds = funnel.expire.get(entity.stage)
        if seconds is None or entity.held:
            return None
        return entity.entered + seconds

    def expire(
        self, funnel_name: str, funnel: Funnel, entity_id: str, entity: Entity, deadline: float
    ) -> None:
        """The entity leaves its stage at `deadline` for the first dropped stage."""
        self.exits[(funnel_name, entity.stage, "dropped")].append(
            (deadline, deadline - entity.entered)
        )
        self.enter(funnel_name, entity_id, entity, funnel.dropped[0], deadline)

    def expire_due(self, now: float) -> None:
        """Apply every expiry due at `now` that no event has applied yet."""
        for funnel_name, entities in self.entities.items():
            funnel = funnel_of(funnel_name, self.settings)
            for entity_id, entity in entities.items():
                deadline = self.deadline(funnel, entity)
                if deadline is not None and deadline <= now:
                    self.expire(funnel_name, funnel, entity_id, entity, deadline)

    def enter(
        self, funnel_name: str, entity_id: str, entity: Entity, stage: str, at: float
    ) -> None:
        """The entity enters `stage` at `at` (an entry of SPEC §3.2)."""
        entity.stage, entity.entered, entity.held = stage, at, False
        self.entities[funnel_name][entity_id] = entity
        self.entries[(funnel_name, stage)].append(at)
        if stage in funnel_of(funnel_name, self.settings).stages:
            entity.reached.add(stage)

    @staticmethod
    def outcome(funnel: Funnel, source: str, target: str) -> str:
        """How leaving open stage `source` for `target` ends (SPEC §2)."""
        if target in funnel.stages:
            later = funnel.stages.index(target) > funnel.stages.index(source)
            return "advanced" if later else "regressed"
        return "advanced" if target == funnel.converted else "dropped"

    # -- SPEC §3 -----------------------------------------------------------------------
    def metrics(self) -> dict[Key, float]:
        """Every series of §3.1–§3.8 and the §3.9 counters, by (name, labels)."""
        out = Series()
        for kind in EVENT_TYPES:
            out.add("revmon_events_total", self.applied[kind], type=kind)
        for reason in REASONS:
            out.add("revmon_events_rejected_total", self.rejected[reason], reason=reason)
        out.add("revmon_events_duplicate_total", self.duplicates)
        out.add("revmon_events_late_total", self.late)
        if self.newest is not None:
            self.expire_due(self.newest)
            view = View(self, self.newest)
            for part in (view.funnels, view.marketing, view.pipeline, view.targets, view.finance):
                part(out)
            view.customers(out)
            view.segments(out)
            view.forecast(out)
        return out.values


class Series:
    """Series values by (name, labels)."""

    def __init__(self) -> None:
        self.values: dict[Key, float] = {}

    def add(self, name: str, value: float | Decimal, **labels: str) -> None:
        """Set one series."""
        self.values[(name, frozenset(labels.items()))] = float(value)


@dataclass(frozen=True)
class Close:
    """An opportunity's latest close."""

    kind: str
    won: bool
    at: float
    amount: Decimal
    cycle: float
    reached: frozenset[str]
    channel: str | None = None


def histogram(out: Series, name: str, values: list[float], **labels: str) -> None:
    """A gauge histogram of `values` with the age bounds: `_bucket{le}`, `_gcount`, `_gsum`."""
    for bound in AGE_BOUNDS:
        count = sum(1 for value in values if value <= bound)
        out.add(f"{name}_bucket", count, le=floatToGoString(bound), **labels)
    out.add(f"{name}_gcount", len(values), **labels)
    out.add(f"{name}_gsum", math.fsum(values), **labels)


def inside(at: float, now: float, seconds: float) -> bool:
    """True for an event time in the window `(now - W, now]`."""
    return now - seconds < at <= now


def total(facts: Iterable[tuple[float, Decimal]], now: float, seconds: float) -> Decimal:
    """The exact sum of the facts in the window."""
    return sum((value for at, value in facts if inside(at, now, seconds)), Decimal(0))


class View:
    """The metrics of a batch at `now`, the newest `occurred_at` applied (event clock)."""

    def __init__(self, batch: Batch, now: float) -> None:
        self.batch, self.now, self.settings = batch, now, batch.settings
        self.windows = [(w.label, w.seconds) for w in self.settings.window_list]
        opportunity = self.settings.funnels.opportunity
        self.open = [o for o in batch.opportunities.values() if o.stage in opportunity.stages]
        self.closes = [  # the latest close of each closed opportunity
            Close(
                o.kind,
                o.stage == opportunity.converted,
                o.entered,
                o.amount,
                o.entered - o.created_at,
                frozenset(o.reached),
                o.channel,
            )
            for o in batch.opportunities.values()
            if o.stage not in opportunity.stages
        ]

    def funnels(self, out: Series) -> None:
        """§3.1 and §3.2 for both funnels."""
        for name in ("lead", "opportunity"):
            funnel = funnel_of(name, self.settings)
            for stage in funnel.stages:
                self.inventory(out, name, funnel, stage)
            for label, seconds in self.windows:
                self.flows(out, name, funnel, label, seconds)

    def inventory(self, out: Series, name: str, funnel: Funnel, stage: str) -> None:
        """§3.1: open entities of a stage, their ages, the stale ones."""
        now = self.now
        ages = [now - e.entered for e in self.batch.entities[name].values() if e.stage == stage]
        labels = {"funnel": name, "stage": stage}
        out.add("revmon_funnel_open", len(ages), **labels)
        for bound in AGE_BOUNDS:
            count = sum(1 for age in ages if age <= bound)
            out.add("revmon_funnel_age_seconds_bucket", count, le=floatToGoString(bound), **labels)
        out.add("revmon_funnel_age_seconds_gcount", len(ages), **labels)
        out.add("revmon_funnel_age_seconds_gsum", math.fsum(ages), **labels)
        sla = funnel.sla.get(stage)
        stale = 0 if sla is None else sum(1 for age in ages if age > sla)
        out.add("revmon_funnel_stale", stale, **labels)
        if ages:
            out.add("revmon_funnel_stale_ratio", stale / len(ages), **labels)

    def flows(self, out: Series, name: str, funnel: Funnel, label: str, seconds: float) -> None:
        """§3.2 in one window: entries, exits by outcome, conversion, time in stage."""
        now, batch = self.now, self.batch
        for stage in every_stage(funnel):
            count = sum(1 for at in batch.entries[(name, stage)] if inside(at, now, seconds))
            out.add("revmon_funnel_entries", count, funnel=name, stage=stage, window=label)
        for stage in funnel.stages:
            labels = {"funnel": name, "stage": stage, "window": label}
            exits = {o: batch.exits[(name, stage, o)] for o in OUTCOMES}
            exits = {
                o: [s for at, s in facts if inside(at, now, seconds)] for o, facts in exits.items()
            }
            for outcome, spent in exits.items():
                out.add("revmon_funnel_exits", len(spent), outcome=outcome, **labels)
            judged = len(exits["advanced"]) + len(exits["dropped"])
            if judged:
                out.add("revmon_funnel_conversion_ratio", len(exits["advanced"]) / judged, **labels)
            spent = [s for outcome in OUTCOMES for s in exits[outcome]]
            histogram(out, "revmon_funnel_dwell_seconds", spent, **labels)

    def marketing(self, out: Series) -> None:
        """§3.3: new names, spend and cost per name by channel and window."""
        now, batch = self.now, self.batch
        for label, seconds in self.windows:
            for channel in (*self.settings.marketing.channels, "other"):
                names = sum(1 for at in batch.new_names[channel] if inside(at, now, seconds))
                spend = total(batch.spend[channel], now, seconds)
                labels = {"channel": channel, "window": label}
                out.add("revmon_marketing_new_names", names, **labels)
                out.add("revmon_marketing_spend_amount", spend, **labels)
                if names:
                    out.add("revmon_marketing_cost_per_name_amount", spend / names, **labels)
                created = total(batch.channel_created[channel], now, seconds)
                won = sum(
                    (
                        c.amount
                        for c in self.closes
                        if c.won and c.channel == channel and inside(c.at, now, seconds)
                    ),
                    Decimal(0),
                )
                out.add("revmon_channel_pipeline_created_amount", created, **labels)
                out.add("revmon_channel_won_amount", won, **labels)
                if spend > 0:
                    out.add("revmon_channel_pipeline_to_spend_ratio", created / spend, **labels)

    def pipeline(self, out: Series) -> None:
        """§3.4 without targets: open, created, closed, ratios, velocity, pace."""
        now, created = self.now, self.batch.created
        for kind in OPPORTUNITY_KINDS:
            for stage in self.settings.funnels.opportunity.stages:
                amounts = [o.amount for o in self.open if o.kind == kind and o.stage == stage]
                out.add("revmon_pipeline_open", len(amounts), kind=kind, stage=stage)
                out.add("revmon_pipeline_open_amount", sum(amounts), kind=kind, stage=stage)
            for label, seconds in self.windows:
                self.closed(out, kind, label, seconds)
                made = [amount for at, amount in created[kind] if inside(at, now, seconds)]
                out.add("revmon_pipeline_created", len(made), kind=kind, window=label)
                out.add("revmon_pipeline_created_amount", sum(made), kind=kind, window=label)
            recent = total(created[kind], now, 30 * DAY)
            quarter = total(created[kind], now, 90 * DAY)
            if quarter > 0:
                out.add("revmon_pipeline_creation_pace_ratio", recent / (quarter / 3), kind=kind)

    def closed(self, out: Series, kind: str, label: str, seconds: float) -> None:
        """§3.4 closes of one kind in one window, with win ratio and velocity."""
        mine = [c for c in self.closes if c.kind == kind and inside(c.at, self.now, seconds)]
        won = [c for c in mine if c.won]
        lost = [c for c in mine if not c.won]
        won_amount = float(sum(c.amount for c in won))
        cycle = math.fsum(c.cycle for c in won)
        labels = {"kind": kind, "window": label}
        out.add("revmon_pipeline_won", len(won), **labels)
        out.add("revmon_pipeline_won_amount", won_amount, **labels)
        out.add("revmon_pipeline_lost", len(lost), **labels)
        out.add("revmon_pipeline_lost_amount", sum(c.amount for c in lost), **labels)
        histogram(out, "revmon_pipeline_cycle_seconds", [c.cycle for c in won], **labels)
        if mine:
            win_ratio = len(won) / len(mine)
            out.add("revmon_pipeline_win_ratio", win_ratio, **labels)
            if cycle > 0:
                open_count = sum(1 for o in self.open if o.kind == kind)
                mean_cycle_days = cycle / len(won) / DAY
                velocity = open_count * win_ratio * (won_amount / len(won)) / mean_cycle_days
                out.add("revmon_pipeline_velocity_amount_per_day", velocity, **labels)

    def targets(self, out: Series) -> None:
        """§3.4 targets of the quarter and month containing now: won, coverage, gap."""
        zone = ZoneInfo(self.settings.timezone)
        today = datetime.fromtimestamp(self.now, tz=zone).date()
        month = today.replace(day=1)
        quarter = month.replace(month=month.month - (month.month - 1) % 3)
        periods = {
            f"{today.year}-Q{(today.month - 1) // 3 + 1}": (quarter, months_after(quarter, 3)),
            f"{today.year}-{today.month:02d}": (month, months_after(month, 1)),
        }
        coverage = Decimal(self.settings.pipeline.required_coverage)
        for target in self.settings.targets:
            if target.period not in periods:
                continue
            first, after = periods[target.period]
            start = datetime.combine(first, time(), tzinfo=zone).timestamp()
            kinds = OPPORTUNITY_KINDS if target.kind == "all" else (target.kind,)
            won = sum(
                (c.amount for c in self.closes if c.won and c.kind in kinds and start <= c.at),
                Decimal(0),
            )
            open_amount = sum(
                (
                    o.amount
                    for o in self.open
                    if o.kind in kinds and (o.close_date is None or first <= o.close_date < after)
                ),
                Decimal(0),
            )
            remainder = target.amount - won
            labels = {"period": target.period, "kind": target.kind}
            out.add("revmon_target_amount", target.amount, **labels)
            out.add("revmon_period_won_amount", won, **labels)
            if remainder > 0:
                out.add("revmon_pipeline_coverage_ratio", open_amount / remainder, **labels)
            gap = max(Decimal(0), coverage * remainder - open_amount)
            out.add("revmon_pipeline_gap_amount", gap, **labels)

    def finance(self, out: Series) -> None:
        """§3.5: revenue by kind, expense by category, E:R, per window."""
        now, batch = self.now, self.batch
        for label, seconds in self.windows:
            revenue = {kind: total(batch.revenue[kind], now, seconds) for kind in REVENUE_KINDS}
            expense = {c: total(batch.expense[c], now, seconds) for c in CATEGORIES}
            for kind, amount in revenue.items():
                out.add("revmon_revenue_amount", amount, kind=kind, window=label)
            for category, amount in expense.items():
                out.add("revmon_expense_amount", amount, category=category, window=label)
            if sum(revenue.values()) > 0:
                ratio = sum(expense.values()) / sum(revenue.values())
                out.add("revmon_er_ratio", ratio, window=label)

    def customers(self, out: Series) -> None:
        """§3.6: customers, MRR, new and churned customers, movements, churn and NRR."""
        now = self.now
        facts = walk_subscriptions(self.batch.subscriptions, now)
        out.add("revmon_customers", facts.customers)
        out.add("revmon_mrr_amount", facts.mrr)
        for label, seconds in self.windows:
            new = sum(1 for at in facts.became if inside(at, now, seconds))
            churned = sum(1 for at in facts.stopped if inside(at, now, seconds))
            out.add("revmon_customers_new", new, window=label)
            out.add("revmon_customers_churned", churned, window=label)
            moved = {m: total(facts.movements[m], now, seconds) for m in MOVEMENTS}
            for movement, amount in moved.items():
                out.add("revmon_mrr_movement_amount", amount, movement=movement, window=label)
            before = facts.customers - new + churned
            if before > 0:
                out.add("revmon_customer_churn_ratio", churned / before, window=label)
            kept = moved["expansion"] - moved["contraction"] - moved["churn"]
            start = facts.mrr - moved["new"] - kept
            if start.quantize(MONEY_PLACES) > 0:
                out.add("revmon_net_revenue_retention_ratio", (start + kept) / start, window=label)
            self.unit_economics(out, label, seconds, moved)

    def unit_economics(
        self, out: Series, label: str, seconds: float, moved: dict[str, Decimal]
    ) -> None:
        """§3.6 v2: quick ratio, CAC payback and magic number of one window."""
        gained = moved["new"] + moved["expansion"]
        lost = moved["contraction"] + moved["churn"]
        spend = sum(
            (total(self.batch.expense[c], self.now, seconds) for c in ("sales", "marketing")),
            Decimal(0),
        )
        if lost > 0:
            out.add("revmon_quick_ratio", gained / lost, window=label)
        if gained > 0:
            out.add("revmon_cac_payback_months", spend / gained, window=label)
        if spend > 0:
            out.add("revmon_magic_number", (gained - lost) * 12 / spend, window=label)

    def segments(self, out: Series) -> None:
        """§3.7: accounts, revenue, activities, minutes and undercovered, by segment now."""
        now, batch, segments = self.now, self.batch, self.settings.segments
        names = tuple(segments.names)
        accounts: Counter[str] = Counter()
        revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
        undercovered: Counter[str] = Counter()
        done: Counter[tuple[str, str, str]] = Counter()
        spent: defaultdict[tuple[str, str], float] = defaultdict(float)
        for account in batch.accounts:
            paid = total(batch.paid[account], now, YEAR)
            segment = segment_of(paid, segments.boundaries, names)
            accounts[segment] += 1
            revenue[segment] += paid
            activities = batch.activities.get(account, [])
            for label, seconds in self.windows:
                for at, kind, minutes_ in activities:
                    if inside(at, now, seconds):
                        done[(segment, kind, label)] += 1
                        spent[(segment, label)] += minutes_
            cadence = segments.cadence.get(segment)
            touches = [at for at, kind, _ in activities if kind in TOUCHES and at <= now]
            if cadence is not None and (not touches or now - max(touches) > cadence):
                undercovered[segment] += 1
        for segment in names:
            out.add("revmon_accounts", accounts[segment], segment=segment)
            out.add("revmon_segment_revenue_amount", revenue[segment], segment=segment)
            out.add("revmon_accounts_undercovered", undercovered[segment], segment=segment)
            for label, _ in self.windows:
                seconds_spent = spent[(segment, label)] * 60
                out.add(
                    "revmon_sales_activity_seconds", seconds_spent, segment=segment, window=label
                )
                for kind in ACTIVITY_KINDS:
                    count = done[(segment, kind, label)]
                    out.add(
                        "revmon_sales_activities", count, segment=segment, kind=kind, window=label
                    )

    def forecast(self, out: Series) -> None:
        """§3.8: stage win ratios of the last 365 days' closes; the expected pipeline."""
        recent = [c for c in self.closes if inside(c.at, self.now, YEAR)]
        for kind in OPPORTUNITY_KINDS:
            expected = 0.0
            for stage in self.settings.funnels.opportunity.stages:
                reached = [c for c in recent if c.kind == kind and stage in c.reached]
                if reached:
                    ratio = sum(1 for c in reached if c.won) / len(reached)
                    out.add("revmon_stage_win_ratio", ratio, kind=kind, stage=stage)
                    amount = sum(o.amount for o in self.open if o.kind == kind and o.stage == stage)
                    expected += float(amount) * ratio
            out.add("revmon_pipeline_expected_amount", expected, kind=kind)


@dataclass
class Customers:
    """§3.6 facts of every account: movements and customer changes, and where they end."""

    movements: defaultdict[str, list[tuple[float, Decimal]]] = field(default_factory=_facts)
    became: list[float] = field(default_factory=list)
    stopped: list[float] = field(default_factory=list)
    customers: int = 0
    mrr: Decimal = Decimal(0)


def walk_subscriptions(events: list[Event], now: float) -> Customers:
    """SPEC §3.6: each account's subscription events in `occurred_at` order (stable)."""
    owner: dict[str, str] = {}
    for event in events:
        if event.type == "subscription.started":
            owner.setdefault(event["subscription_id"], event["account_id"])
    by_account: defaultdict[str, list[Event]] = defaultdict(list)
    for event in events:
        account = event["account_id"] or owner.get(event["subscription_id"])
        if account is not None and event.at <= now:  # after now: not yet
            by_account[account].append(event)
    out = Customers()
    for account_events in by_account.values():
        active: dict[str, Decimal] = {}
        ended: set[str] = set()
        for event in sorted(account_events, key=lambda e: e.at):
            sub, at = event["subscription_id"], event.at
            if event.type == "subscription.started":
                if sub in active or sub in ended:
                    continue
                if not active:
                    out.became.append(at)
                out.movements["expansion" if active else "new"].append((at, event["mrr"]))
                active[sub] = event["mrr"]
            elif sub not in active:
                continue
            elif event.type == "subscription.changed":
                difference = event["mrr"] - active[sub]
                active[sub] = event["mrr"]
                if difference:
                    movement = "expansion" if difference > 0 else "contraction"
                    out.movements[movement].append((at, abs(difference)))
            else:
                amount = active.pop(sub)
                ended.add(sub)
                if not active:
                    out.stopped.append(at)
                out.movements["contraction" if active else "churn"].append((at, amount))
        out.customers += bool(active)
        out.mrr += sum(active.values(), Decimal(0))
    return out


def segment_of(revenue: Decimal, boundaries: Iterable[Decimal], names: tuple[str, ...]) -> str:
    """`zero` for revenue <= 0, else the segment whose lower bound is the largest <= revenue."""
    if revenue <= 0:
        return names[0]
    return names[sum(1 for bound in boundaries if bound <= revenue)]


def months_after(first: date, months: int) -> date:
    """The first day of the month `months` after the month of `first`."""
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def compute(lines: Iterable[bytes], settings: Settings) -> Batch:
    """Judge and apply the lines of a JSON-lines file, in order."""
    return Batch(settings).feed(lines)

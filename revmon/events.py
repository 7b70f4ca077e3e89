"""Input events (SPEC §1): raw message bytes in, typed frozen events or rejections out.

This is the only place that turns bytes into objects. It imports no stream framework.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    model_validator,
)

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_BATCH_ELEMENTS = 10_000
DEFAULT_ACTIVITY_MINUTES = {"call": 15, "email": 5, "meeting": 45, "visit": 120}


class Reason(StrEnum):
    """Why a message or batch element was rejected: the fixed label set of SPEC §1."""

    MALFORMED_JSON = "malformed_json"
    NOT_AN_EVENT = "not_an_event"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_FIELD = "invalid_field"
    CURRENCY_MISMATCH = "currency_mismatch"
    TOO_LARGE = "too_large"


def _utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("timestamp out of range once converted to UTC") from exc


def _rfc3339_text(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp string with an offset")
    return value


Id = Annotated[str, Field(min_length=1, max_length=200)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_utc)]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=30)]
OpportunityKind = Literal["new_business", "expansion", "renewal"]
_CONFIG = ConfigDict(extra="ignore", str_strip_whitespace=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Event:
    __pydantic_config__ = _CONFIG

    event_id: Id
    occurred_at: Timestamp
    source: Annotated[str, Field(max_length=200)] | None = None
    # Any event may name its currency; one that is not the reporting currency is rejected.
    currency: Annotated[str, Field(max_length=10)] | None = None

    @property
    def at(self) -> float:
        """`occurred_at` as unix seconds, the form the metric math works in."""
        return self.occurred_at.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Loadable(_Event):
    """A `*.created` event, which may load an existing entity as a snapshot (SPEC §1, v2).

    `snapshot` must be a JSON boolean; `entered_at` must carry an offset and, for a
    snapshot, must not be after `occurred_at`. Without `snapshot`, `entered_at` is ignored.
    """

    snapshot: StrictBool | None = None
    entered_at: Timestamp | None = None

    @model_validator(mode="after")
    def _entered_before_occurred(self) -> _Loadable:
        if self.snapshot and self.entered_at is not None and self.entered_at > self.occurred_at:
            raise ValueError("entered_at is after occurred_at")
        return self

    @property
    def is_snapshot(self) -> bool:
        """True for a snapshot load: not an entry, a creation, a new name or pipeline created."""
        return self.snapshot is True

    @property
    def since(self) -> float:
        """When the entity entered its stage: `entered_at` for a snapshot, else `occurred_at`."""
        if self.snapshot and self.entered_at is not None:
            return self.entered_at.timestamp()
        return self.occurred_at.timestamp()


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadCreated(_Loadable):
    """A new name enters the lead funnel at its first stage (or at `stage`)."""

    type: Literal["lead.created"]
    lead_id: Id
    account_id: Id | None = None
    channel: Text | None = None
    campaign_id: Id | None = None
    stage: Text | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LeadStageChanged(_Event):
    """The lead moves to `stage`."""

    type: Literal["lead.stage_changed"]
    lead_id: Id
    stage: Text
    account_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityCreated(_Loadable):
    """A new opportunity enters the pipeline (an open deal may have no account yet)."""

    type: Literal["opportunity.created"]
    opportunity_id: Id
    amount: Money
    kind: OpportunityKind
    account_id: Id | None = None
    stage: Text | None = None
    expected_close_date: date | None = None
    channel: Text | None = None  # the source of the lead it came from


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityStageChanged(_Event):
    """Moves the opportunity; `won`/`lost` close it; `amount` re-values it first."""

    type: Literal["opportunity.stage_changed"]
    opportunity_id: Id
    stage: Text
    amount: Money | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityAmountChanged(_Event):
    """Re-values an open opportunity."""

    type: Literal["opportunity.amount_changed"]
    opportunity_id: Id
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivityLogged(_Event):
    """A sales touch on an account."""

    type: Literal["activity.logged"]
    account_id: Id
    kind: Literal["call", "email", "meeting", "visit"]
    opportunity_id: Id | None = None
    minutes: Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)] | None = None

    @property
    def effective_minutes(self) -> float:
        """`minutes`, or the default for the activity's kind."""
        return self.minutes if self.minutes is not None else DEFAULT_ACTIVITY_MINUTES[self.kind]


@dataclass(frozen=True, slots=True, kw_only=True)
class CampaignSpend(_Event):
    """Marketing spend (expense category `marketing`)."""

    type: Literal["campaign.spend"]
    campaign_id: Id
    amount: Money
    channel: Text | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpenseRecorded(_Event):
    """Cost of the revenue engine."""

    type: Literal["expense.recorded"]
    category: Literal["sales", "marketing", "customer_success", "analytics", "tools", "other"]
    amount: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class InvoicePaid(_Event):
    """Revenue, dated by `occurred_at`."""

    type: Literal["invoice.paid"]
    account_id: Id
    amount: Money
    kind: Literal["new_business", "expansion", "renewal", "recurring", "one_time"] = "recurring"
    invoice_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefundIssued(_Event):
    """Negative revenue."""

    type: Literal["refund.issued"]
    account_id: Id
    amount: Money
    invoice_id: Id | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionStarted(_Event):
    """A subscription starts."""

    type: Literal["subscription.started"]
    subscription_id: Id
    account_id: Id
    mrr: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionChanged(_Event):
    """Expansion or contraction of a subscription."""

    type: Literal["subscription.changed"]
    subscription_id: Id
    mrr: Money


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionCanceled(_Event):
    """A subscription ends."""

    type: Literal["subscription.canceled"]
    subscription_id: Id


Event: TypeAlias = (
    LeadCreated
    | LeadStageChanged
    | OpportunityCreated
    | OpportunityStageChanged
    | OpportunityAmountChanged
    | ActivityLogged
    | CampaignSpend
    | ExpenseRecorded
    | InvoicePaid
    | RefundIssued
    | SubscriptionStarted
    | SubscriptionChanged
    | SubscriptionCanceled
)
EVENT_CLASSES: tuple[type[_Event], ...] = (
    LeadCreated,
    LeadStageChanged,
    OpportunityCreated,
    OpportunityStageChanged,
    OpportunityAmountChanged,
    ActivityLogged,
    CampaignSpend,
    ExpenseRecorded,
    InvoicePaid,
    RefundIssued,
    SubscriptionStarted,
    SubscriptionChanged,
    SubscriptionCanceled,
)
EVENT_TYPES: tuple[str, ...] = (
    "lead.created",
    "lead.stage_changed",
    "opportunity.created",
    "opportunity.stage_changed",
    "opportunity.amount_changed",
    "activity.logged",
    "campaign.spend",
    "expense.recorded",
    "invoice.paid",
    "refund.issued",
    "subscription.started",
    "subscription.changed",
    "subscription.canceled",
)

_One = Annotated[Event, Field(discriminator="type")]
# Built once: validating JSON bytes directly is pydantic's fast path.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(_One)
_MESSAGE_ADAPTER: TypeAdapter[Event | list[Event]] = TypeAdapter(
    _One | Annotated[list[_One], Field(min_length=1, max_length=MAX_BATCH_ELEMENTS)]
)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message or batch element that changes no metric: why, and the bytes to dead-letter."""

    reason: Reason
    detail: str
    payload: bytes
    index: int | None = None


Decoded: TypeAlias = Event | Rejection


def entity_key(event: Event) -> str | None:
    """The entity id a producer keys this event by (SPEC §7), or None."""
    for name in ("lead_id", "opportunity_id", "subscription_id", "account_id", "campaign_id"):
        value = getattr(event, name, None)
        if value is not None:
            return str(value)
    category = getattr(event, "category", None)
    return None if category is None else str(category)


class Decoder:
    """Judges raw messages against SPEC §1 and the configured stages and currency."""

    def __init__(
        self,
        *,
        currency: str,
        lead_stages: Iterable[str],
        opportunity_stages: Iterable[str],
        lead_open: Iterable[str] | None = None,
        opportunity_open: Iterable[str] | None = None,
    ) -> None:
        self._currency = currency
        self._lead_stages = frozenset(lead_stages)
        self._opportunity_stages = frozenset(opportunity_stages)
        # A snapshot loads an entity into an open stage only; unset: every stage is open.
        self._lead_open = self._lead_stages if lead_open is None else frozenset(lead_open)
        self._opportunity_open = (
            self._opportunity_stages if opportunity_open is None else frozenset(opportunity_open)
        )

    def decode(self, raw: bytes) -> list[Decoded]:
        """Every event of a message (one object or a batch) in order, or why it was rejected.

        Never raises for any input: a rejection is data.
        """
        if len(raw) > MAX_MESSAGE_BYTES:
            return [Rejection(Reason.TOO_LARGE, f"message of {len(raw)} bytes", raw)]
        if _LONG_NUMBER.search(raw) is None:
            try:
                value = _MESSAGE_ADAPTER.validate_json(raw)
            except (ValidationError, RecursionError):
                pass
            else:
                if not isinstance(value, list):
                    return [self._check(value, raw, None)]
                checked = [self._check(event, b"", i) for i, event in enumerate(value)]
                if not any(isinstance(item, Rejection) for item in checked):
                    return checked
        return self._decode_slowly(raw)

    def _decode_slowly(self, raw: bytes) -> list[Decoded]:
        """Element by element, each judged on its own with its exact bytes (the rare path).

        pydantic reads JSON numbers as floats, which is exact only up to 15 digits; this
        path reads them as decimals, so it also takes messages with longer numbers.
        """
        elements = split_array(raw)
        if elements is None:
            return [self._one(raw, None)]
        if not elements:
            return [Rejection(Reason.NOT_AN_EVENT, "empty batch", raw)]
        if len(elements) > MAX_BATCH_ELEMENTS:
            return [Rejection(Reason.TOO_LARGE, f"batch of {len(elements)} elements", raw)]
        return [self._one(element, i) for i, element in enumerate(elements)]

    def _one(self, raw: bytes, index: int | None) -> Decoded:
        try:
            data = json.loads(
                raw, parse_float=Decimal, parse_int=Decimal, parse_constant=_no_constants
            )
        except (ValueError, RecursionError, ArithmeticError) as exc:
            return Rejection(Reason.MALFORMED_JSON, _short(exc), raw, index)
        if not isinstance(data, dict):
            return Rejection(Reason.NOT_AN_EVENT, "not a JSON object", raw, index)
        kind = data.get("type")
        if not isinstance(kind, str):
            return Rejection(Reason.NOT_AN_EVENT, "no `type`", raw, index)
        if kind not in EVENT_TYPES:
            return Rejection(Reason.UNKNOWN_TYPE, f"unknown type {kind[:60]!r}", raw, index)
        try:
            event = EVENT_ADAPTER.validate_python(data)
        except ValidationError as exc:
            return Rejection(Reason.INVALID_FIELD, _fields(exc), raw, index)
        except (RecursionError, ArithmeticError) as exc:  # pragma: no cover - defensive
            return Rejection(Reason.INVALID_FIELD, _short(exc), raw, index)
        return self._check(event, raw, index)

    def _check(self, event: Event, raw: bytes, index: int | None) -> Decoded:
        """The rules that depend on the configuration: stage names and the currency."""
        currency = event.currency
        if currency is not None and currency != self._currency:
            detail = f"currency {currency[:10]!r} is not {self._currency}"
            return Rejection(Reason.CURRENCY_MISMATCH, detail, raw, index)
        stage = getattr(event, "stage", None)
        if stage is not None:
            allowed = (
                self._lead_stages if event.type.startswith("lead.") else self._opportunity_stages
            )
            if stage not in allowed:
                detail = f"stage: {stage[:60]!r} is not a stage of its funnel"
                return Rejection(Reason.INVALID_FIELD, detail, raw, index)
        if isinstance(event, _Loadable) and event.is_snapshot and stage is not None:
            lead = event.type.startswith("lead.")
            if stage not in (self._lead_open if lead else self._opportunity_open):
                detail = f"stage: a snapshot loads into an open stage, not {stage[:60]!r}"
                return Rejection(Reason.INVALID_FIELD, detail, raw, index)
        return event


# Take the exact path for a JSON number of 16 or more characters (it may not survive a
# float), and for NaN or Infinity, which pydantic's JSON parser accepts but JSON is not.
_LONG_NUMBER = re.compile(rb"[:,\[]\s*-?(?:[0-9][0-9.eE+-]{15,}|NaN|Infinity)")
_WHITESPACE = b" \t\r\n"


def split_array(raw: bytes) -> list[bytes] | None:
    """The exact bytes of each element of a top-level JSON array, or None if `raw` is not one.

    A linear scan that tracks strings and nesting without recursion; elements are not
    validated here (each is parsed on its own afterwards).
    """
    text = raw.strip(_WHITESPACE)
    if not text.startswith(b"[") or not text.endswith(b"]"):
        return None
    elements: list[bytes] = []
    depth, start, in_string, escaped = 0, 1, False, False
    for i in range(1, len(text) - 1):
        char = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif char == 0x5C:  # backslash
                escaped = True
            elif char == 0x22:  # quote
                in_string = False
        elif char == 0x22:
            in_string = True
        elif char in b"[{":
            depth += 1
        elif char in b"]}":
            depth -= 1
            if depth < 0:
                return None
        elif char == 0x2C and depth == 0:  # comma
            elements.append(text[start:i].strip(_WHITESPACE))
            start = i + 1
    if in_string or depth != 0:
        return None
    last = text[start:-1].strip(_WHITESPACE)
    if last:
        elements.append(last)
    elif elements:
        return None  # a trailing comma
    if any(not element for element in elements):
        return None
    return elements


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _fields(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(p) for p in error["loc"][1:]) or "(event)"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)[:500]

"""The event decoder (SPEC §1, §9): bytes in, typed frozen events or rejections out."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from revmon.events import (
    EVENT_CLASSES,
    EVENT_TYPES,
    MAX_BATCH_ELEMENTS,
    MAX_MESSAGE_BYTES,
    ActivityLogged,
    Decoded,
    Decoder,
    InvoicePaid,
    LeadCreated,
    OpportunityCreated,
    Reason,
    Rejection,
    entity_key,
)
from revmon.settings import load_settings

AT = "2026-01-05T10:00:00Z"
AT_UTC = datetime(2026, 1, 5, 10, tzinfo=UTC)
LEAD_STAGES = ("name", "mql", "sql", "opportunity", "disqualified")
OPPORTUNITY_STAGES = ("qualification", "discovery", "proposal", "negotiation", "won", "lost")
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    """A decoder for the default funnels and currency, as the worker builds it."""
    with pytest.MonkeyPatch.context() as patch:  # module scope: before the per-test env reset
        for name in [n for n in os.environ if n.upper().startswith("REVMON_")]:
            patch.delenv(name)
        config = load_settings(None)
    assert config.funnels.lead.all_stages == LEAD_STAGES
    assert config.funnels.opportunity.all_stages == OPPORTUNITY_STAGES
    return Decoder(
        currency=config.currency,
        lead_stages=config.funnels.lead.all_stages,
        opportunity_stages=config.funnels.opportunity.all_stages,
        lead_open=config.funnels.lead.stages,
        opportunity_open=config.funnels.opportunity.stages,
    )


def ev(type_: str, event_id: str = "e1", **fields: Any) -> dict[str, Any]:
    """An event object with the common fields filled in."""
    return {"type": type_, "event_id": event_id, "occurred_at": AT, **fields}


def raw(value: Any) -> bytes:
    """JSON bytes of a value, as a producer would send them."""
    return json.dumps(value).encode()


def one(decoder: Decoder, message: bytes) -> Decoded:
    """The single result of a one-event message."""
    result = decoder.decode(message)
    assert len(result) == 1
    return result[0]


MINIMAL: dict[str, dict[str, Any]] = {
    "lead.created": {"lead_id": "l1"},
    "lead.stage_changed": {"lead_id": "l1", "stage": "mql"},
    "opportunity.created": {
        "opportunity_id": "o1",
        "account_id": "a1",
        "amount": "1000",
        "kind": "new_business",
    },
    "opportunity.stage_changed": {"opportunity_id": "o1", "stage": "won"},
    "opportunity.amount_changed": {"opportunity_id": "o1", "amount": 0},
    "activity.logged": {"account_id": "a1", "kind": "call"},
    "campaign.spend": {"campaign_id": "c1", "amount": "250.50"},
    "expense.recorded": {"category": "tools", "amount": 99},
    "invoice.paid": {"account_id": "a1", "amount": "1200"},
    "refund.issued": {"account_id": "a1", "amount": "100"},
    "subscription.started": {"subscription_id": "s1", "account_id": "a1", "mrr": "500"},
    "subscription.changed": {"subscription_id": "s1", "mrr": "700"},
    "subscription.canceled": {"subscription_id": "s1"},
}
OPTIONAL: dict[str, dict[str, Any]] = {
    "lead.created": {"account_id": "a1", "channel": "webinar", "campaign_id": "c1", "stage": "mql"},
    "lead.stage_changed": {"account_id": "a1"},
    "opportunity.created": {
        "stage": "proposal",
        "expected_close_date": "2026-03-31",
        "channel": "webinar",
    },
    "opportunity.stage_changed": {"amount": "1500.25"},
    "opportunity.amount_changed": {},
    "activity.logged": {"opportunity_id": "o1", "minutes": 30},
    "campaign.spend": {"channel": "paid_search", "currency": "USD"},
    "expense.recorded": {"currency": "USD"},
    "invoice.paid": {"kind": "new_business", "invoice_id": "i1", "currency": "USD"},
    "refund.issued": {"invoice_id": "i1"},
    "subscription.started": {"currency": "USD"},
    "subscription.changed": {},
    "subscription.canceled": {},
}
ENTITY: dict[str, str] = {
    "lead.created": "l1",
    "lead.stage_changed": "l1",
    "opportunity.created": "o1",
    "opportunity.stage_changed": "o1",
    "opportunity.amount_changed": "o1",
    "activity.logged": "a1",
    "campaign.spend": "c1",
    "expense.recorded": "tools",
    "invoice.paid": "a1",
    "refund.issued": "a1",
    "subscription.started": "s1",
    "subscription.changed": "s1",
    "subscription.canceled": "s1",
}


def _expected(value: Any) -> Any:
    """What a field of the event object becomes: money as Decimal, dates as dates."""
    if isinstance(value, str) and value[:1].isdigit() and "-" in value:
        return date.fromisoformat(value)
    if isinstance(value, str) and value.replace(".", "").isdigit():
        return Decimal(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


# -- accepted --------------------------------------------------------------------------


def test_every_type_is_tabled() -> None:
    """The accept tables cover exactly the 13 event types of SPEC §1."""
    assert set(MINIMAL) == set(OPTIONAL) == set(EVENT_TYPES)
    assert len(EVENT_TYPES) == len(EVENT_CLASSES) == 13


@pytest.mark.parametrize(
    ("type_", "optional"),
    [
        pytest.param(t, extra, id=f"{t}-{variant}")
        for t in EVENT_TYPES
        for variant, extra in (("minimal", {}), ("optional", OPTIONAL[t]))
    ],
)
def test_accepts_each_type(decoder: Decoder, type_: str, optional: dict[str, Any]) -> None:
    """Each type is accepted with its required fields, alone or with its optional ones."""
    fields = {**MINIMAL[type_], **optional}

    event = one(decoder, raw(ev(type_, source="salesforce", **fields)))

    assert not isinstance(event, Rejection)
    assert type(event) is EVENT_CLASSES[EVENT_TYPES.index(type_)]
    assert event.type == type_
    assert event.event_id == "e1"
    assert event.occurred_at == AT_UTC
    assert event.source == "salesforce"
    assert event.at == AT_UTC.timestamp()
    for name, value in fields.items():
        assert getattr(event, name) == _expected(value), name


@pytest.mark.parametrize("type_", [pytest.param(t, id=t) for t in EVENT_TYPES])
def test_entity_key(decoder: Decoder, type_: str) -> None:
    """entity_key() is the producer's key: lead, opportunity, subscription, account, campaign..."""
    event = one(decoder, raw(ev(type_, **MINIMAL[type_])))

    assert not isinstance(event, Rejection)
    assert entity_key(event) == ENTITY[type_]


def test_entity_key_prefers_opportunity_over_account(decoder: Decoder) -> None:
    """An activity about an opportunity is keyed by the opportunity (SPEC §7 order)."""
    event = one(
        decoder, raw(ev("activity.logged", account_id="a1", kind="visit", opportunity_id="o9"))
    )

    assert not isinstance(event, Rejection)
    assert entity_key(event) == "o9"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        pytest.param('"0.1"', Decimal("0.1"), id="string-0.1"),
        pytest.param("0.1", Decimal("0.1"), id="number-0.1"),
        pytest.param('"12345678901234567.89"', Decimal("12345678901234567.89"), id="string-long"),
        pytest.param("0", Decimal(0), id="zero"),
        pytest.param("1200", Decimal(1200), id="int"),
        pytest.param('"1e3"', Decimal("1e3"), id="string-exponent"),
        pytest.param("2.50", Decimal("2.50"), id="number-trailing-zero"),
        pytest.param('"' + "9" * 30 + '"', Decimal("9" * 30), id="30-digits"),
    ],
)
def test_amount_kept_exactly_as_decimal(decoder: Decoder, amount: str, expected: Decimal) -> None:
    """Money given as a decimal string or number is kept exactly as a Decimal."""
    message = (
        f'{{"type":"invoice.paid","event_id":"e1","occurred_at":"{AT}","account_id":"a",'
        f'"amount":{amount}}}'
    ).encode()

    event = one(decoder, message)

    assert isinstance(event, InvoicePaid)
    assert event.amount == expected


@pytest.mark.parametrize(
    "wrap",
    [pytest.param(False, id="alone"), pytest.param(True, id="in-valid-batch")],
)
def test_long_number_amount_kept_exactly(decoder: Decoder, wrap: bool) -> None:
    """A JSON number with more digits than a float holds is kept exactly."""
    element = (
        f'{{"type":"invoice.paid","event_id":"e1","occurred_at":"{AT}","account_id":"a",'
        '"amount":12345678901234567.89}'
    )
    message = f"[{element}]" if wrap else element

    event = decoder.decode(message.encode())[0]

    assert isinstance(event, InvoicePaid)
    assert event.amount == Decimal("12345678901234567.89")


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        pytest.param("2026-01-05T10:00:00Z", AT_UTC, id="Z"),
        pytest.param("2026-01-05T12:00:00+02:00", AT_UTC, id="plus-2"),
        pytest.param("2026-01-05T04:30:00-05:30", AT_UTC, id="minus-5h30"),
        pytest.param("2026-01-05T10:00:00+00:00", AT_UTC, id="plus-0"),
        pytest.param("2026-01-05T10:00:00.250Z", AT_UTC + timedelta(milliseconds=250), id="millis"),
        pytest.param("2026-01-04T23:00:00-11:00", AT_UTC, id="previous-day"),
    ],
)
def test_occurred_at_normalised_to_utc(
    decoder: Decoder, occurred_at: str, expected: datetime
) -> None:
    """Timestamps with any offset become the same instant in UTC."""
    event = one(
        decoder,
        raw({**ev("subscription.canceled", subscription_id="s"), "occurred_at": occurred_at}),
    )

    assert not isinstance(event, Rejection)
    assert event.occurred_at == expected
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.occurred_at.tzinfo is UTC


def test_unknown_fields_are_ignored(decoder: Decoder) -> None:
    """Extra fields of any shape are ignored (tolerant reader)."""
    message = raw(
        ev(
            "lead.created",
            lead_id="l1",
            hubspot={"portal": 1, "props": [1, "x", None]},
            score=0.5,
            tags=[],
            nothing=None,
        )
    )

    event = one(decoder, message)

    assert not isinstance(event, Rejection)
    assert event.type == "lead.created"
    assert not hasattr(event, "hubspot")


@pytest.mark.parametrize(
    ("kind", "minutes"),
    [
        pytest.param("call", 15, id="call"),
        pytest.param("email", 5, id="email"),
        pytest.param("meeting", 45, id="meeting"),
        pytest.param("visit", 120, id="visit"),
    ],
)
def test_activity_default_minutes(decoder: Decoder, kind: str, minutes: int) -> None:
    """An activity without `minutes` takes its kind's default (SPEC §1)."""
    event = one(decoder, raw(ev("activity.logged", account_id="a1", kind=kind)))

    assert isinstance(event, ActivityLogged)
    assert event.minutes is None
    assert event.effective_minutes == minutes


def test_activity_explicit_minutes_win(decoder: Decoder) -> None:
    """An activity's own `minutes` replaces the default."""
    event = one(decoder, raw(ev("activity.logged", account_id="a1", kind="visit", minutes=7.5)))

    assert isinstance(event, ActivityLogged)
    assert event.effective_minutes == 7.5


def test_invoice_kind_defaults_to_recurring(decoder: Decoder) -> None:
    """An invoice without `kind` is `recurring`."""
    event = one(decoder, raw(ev("invoice.paid", account_id="a1", amount="1")))

    assert isinstance(event, InvoicePaid)
    assert event.kind == "recurring"


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        pytest.param("lead.stage_changed", {"lead_id": "l", "stage": s}, id=f"lead-{s}")
        for s in LEAD_STAGES
    ]
    + [
        pytest.param(
            "opportunity.stage_changed", {"opportunity_id": "o", "stage": s}, id=f"opportunity-{s}"
        )
        for s in OPPORTUNITY_STAGES
    ],
)
def test_every_configured_stage_is_accepted(
    decoder: Decoder, type_: str, fields: dict[str, Any]
) -> None:
    """Open, converted and dropped stages of the event's own funnel are all valid."""
    assert not isinstance(one(decoder, raw(ev(type_, **fields))), Rejection)


@pytest.mark.parametrize(
    "event_id",
    [
        pytest.param("x", id="1-char"),
        pytest.param("x" * 200, id="200-chars"),
        pytest.param("é" * 200, id="200-non-ascii"),
    ],
)
def test_event_id_length_limits_accept(decoder: Decoder, event_id: str) -> None:
    """An event_id of 1 to 200 characters is accepted and kept."""
    event = one(decoder, raw(ev("subscription.canceled", event_id=event_id, subscription_id="s")))

    assert not isinstance(event, Rejection)
    assert event.event_id == event_id


def test_events_are_frozen(decoder: Decoder) -> None:
    """A decoded event cannot be changed."""
    event = one(decoder, raw(ev("subscription.canceled", subscription_id="s")))
    assert not isinstance(event, Rejection)

    with pytest.raises(AttributeError):
        event.event_id = "other"  # type: ignore[misc]


# -- rejected --------------------------------------------------------------------------

R = Reason


def _sub(**fields: Any) -> bytes:
    return raw({**ev("subscription.canceled", subscription_id="s"), **fields})


REJECTS = [
    pytest.param(b"{not json", R.MALFORMED_JSON, id="not-json"),
    pytest.param(b"", R.MALFORMED_JSON, id="empty-message"),
    pytest.param(b"\xff\xfe\x00", R.MALFORMED_JSON, id="not-utf8"),
    pytest.param(b'{"type":"lead.created"', R.MALFORMED_JSON, id="truncated"),
    pytest.param(
        b'{"type":"invoice.paid","event_id":"e","occurred_at":"2026-01-05T10:00:00Z",'
        b'"account_id":"a","amount":NaN}',
        R.MALFORMED_JSON,
        id="NaN",
    ),
    pytest.param(
        b'{"type":"invoice.paid","event_id":"e","occurred_at":"2026-01-05T10:00:00Z",'
        b'"account_id":"a","amount":Infinity}',
        R.MALFORMED_JSON,
        id="Infinity",
    ),
    pytest.param(b"42", R.NOT_AN_EVENT, id="scalar-number"),
    pytest.param(b'"lead.created"', R.NOT_AN_EVENT, id="scalar-string"),
    pytest.param(b"null", R.NOT_AN_EVENT, id="scalar-null"),
    pytest.param(b"true", R.NOT_AN_EVENT, id="scalar-bool"),
    pytest.param(b"[]", R.NOT_AN_EVENT, id="empty-array"),
    pytest.param(b"[1, 2]", R.NOT_AN_EVENT, id="array-of-scalars"),
    pytest.param(b"[[]]", R.NOT_AN_EVENT, id="array-of-arrays"),
    pytest.param(raw({"event_id": "e", "occurred_at": AT}), R.NOT_AN_EVENT, id="missing-type"),
    pytest.param(
        raw(ev("lead.created", lead_id="l") | {"type": None}), R.NOT_AN_EVENT, id="null-type"
    ),
    pytest.param(
        raw(ev("lead.created", lead_id="l") | {"type": 7}), R.NOT_AN_EVENT, id="number-type"
    ),
    pytest.param(raw(ev("lead.deleted", lead_id="l")), R.UNKNOWN_TYPE, id="unknown-type"),
    pytest.param(raw(ev("Lead.Created", lead_id="l")), R.UNKNOWN_TYPE, id="type-case"),
    pytest.param(raw(ev("", lead_id="l")), R.UNKNOWN_TYPE, id="empty-type"),
    pytest.param(_sub(occurred_at="2026-01-05T10:00:00"), R.INVALID_FIELD, id="naive-timestamp"),
    pytest.param(_sub(occurred_at="2026-01-05"), R.INVALID_FIELD, id="date-only"),
    pytest.param(_sub(occurred_at="yesterday"), R.INVALID_FIELD, id="not-a-timestamp"),
    pytest.param(_sub(occurred_at="2026-02-30T10:00:00Z"), R.INVALID_FIELD, id="no-such-day"),
    pytest.param(_sub(occurred_at=None), R.INVALID_FIELD, id="null-timestamp"),
    pytest.param(
        raw({"type": "subscription.canceled", "event_id": "e", "subscription_id": "s"}),
        R.INVALID_FIELD,
        id="missing-occurred-at",
    ),
    pytest.param(
        raw({"type": "subscription.canceled", "occurred_at": AT, "subscription_id": "s"}),
        R.INVALID_FIELD,
        id="missing-event-id",
    ),
    pytest.param(_sub(event_id=""), R.INVALID_FIELD, id="event-id-empty"),
    pytest.param(_sub(event_id="x" * 201), R.INVALID_FIELD, id="event-id-201"),
    pytest.param(_sub(event_id=17), R.INVALID_FIELD, id="event-id-number"),
    pytest.param(_sub(source="s" * 201), R.INVALID_FIELD, id="source-201"),
    pytest.param(raw(ev("lead.created")), R.INVALID_FIELD, id="missing-lead-id"),
    pytest.param(raw(ev("lead.created", lead_id="x" * 201)), R.INVALID_FIELD, id="lead-id-201"),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="-0.01")),
        R.INVALID_FIELD,
        id="negative-amount",
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount=-5)), R.INVALID_FIELD, id="negative-number"
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="12 USD")), R.INVALID_FIELD, id="amount-text"
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="Infinity")),
        R.INVALID_FIELD,
        id="amount-inf-string",
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="NaN")),
        R.INVALID_FIELD,
        id="amount-nan-string",
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount=True)), R.INVALID_FIELD, id="amount-bool"
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="1" * 31)),
        R.INVALID_FIELD,
        id="amount-31-digits",
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="1", kind="upsell")),
        R.INVALID_FIELD,
        id="invoice-kind",
    ),
    pytest.param(
        raw(ev("subscription.started", subscription_id="s", account_id="a", mrr="-1")),
        R.INVALID_FIELD,
        id="negative-mrr",
    ),
    pytest.param(
        raw(ev("opportunity.created", opportunity_id="o", account_id="a", amount=1, kind="upsell")),
        R.INVALID_FIELD,
        id="opportunity-kind",
    ),
    pytest.param(
        raw(ev("opportunity.created", opportunity_id="o", account_id="a", amount=1)),
        R.INVALID_FIELD,
        id="opportunity-no-kind",
    ),
    pytest.param(
        raw(
            ev(
                "opportunity.created",
                opportunity_id="o",
                account_id="a",
                amount=1,
                kind="renewal",
                expected_close_date="soon",
            )
        ),
        R.INVALID_FIELD,
        id="close-date",
    ),
    pytest.param(
        raw(ev("activity.logged", account_id="a", kind="sms")), R.INVALID_FIELD, id="activity-kind"
    ),
    pytest.param(
        raw(ev("activity.logged", account_id="a", kind="call", minutes=0)),
        R.INVALID_FIELD,
        id="minutes-zero",
    ),
    pytest.param(
        raw(ev("activity.logged", account_id="a", kind="call", minutes=-3)),
        R.INVALID_FIELD,
        id="minutes-negative",
    ),
    pytest.param(
        raw(ev("expense.recorded", category="coffee", amount=1)),
        R.INVALID_FIELD,
        id="expense-category",
    ),
    pytest.param(
        raw(ev("lead.stage_changed", lead_id="l", stage="bogus")),
        R.INVALID_FIELD,
        id="lead-stage-unknown",
    ),
    pytest.param(
        raw(ev("lead.created", lead_id="l", stage="proposal")),
        R.INVALID_FIELD,
        id="lead-stage-of-other-funnel",
    ),
    pytest.param(
        raw(ev("opportunity.stage_changed", opportunity_id="o", stage="mql")),
        R.INVALID_FIELD,
        id="opportunity-stage-of-lead-funnel",
    ),
    pytest.param(
        raw(ev("opportunity.stage_changed", opportunity_id="o", stage="Won")),
        R.INVALID_FIELD,
        id="stage-case",
    ),
    pytest.param(
        raw(
            ev(
                "opportunity.created",
                opportunity_id="o",
                account_id="a",
                amount=1,
                kind="renewal",
                stage="nope",
            )
        ),
        R.INVALID_FIELD,
        id="created-stage-unknown",
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="1", currency="EUR")),
        R.CURRENCY_MISMATCH,
        id="currency-EUR",
    ),
    pytest.param(
        raw(ev("invoice.paid", account_id="a", amount="1", currency="usd")),
        R.CURRENCY_MISMATCH,
        id="currency-lowercase",
    ),
    pytest.param(
        raw(ev("campaign.spend", campaign_id="c", amount="1", currency="GBP")),
        R.CURRENCY_MISMATCH,
        id="spend-currency",
    ),
    pytest.param(
        raw(
            ev(
                "opportunity.stage_changed",
                opportunity_id="o",
                stage="won",
                amount="5",
                currency="EUR",
            )
        ),
        R.CURRENCY_MISMATCH,
        id="stage-change-currency",
    ),
    pytest.param(b" " * (MAX_MESSAGE_BYTES + 1), R.TOO_LARGE, id="message-over-1MiB"),
    pytest.param(
        raw(ev("lead.created", lead_id="l", pad="x" * MAX_MESSAGE_BYTES)),
        R.TOO_LARGE,
        id="valid-event-over-1MiB",
    ),
    pytest.param(
        b"[" + b",".join([b"{}"] * (MAX_BATCH_ELEMENTS + 1)) + b"]", R.TOO_LARGE, id="batch-10001"
    ),
]


@pytest.mark.parametrize(("message", "reason"), REJECTS)
def test_rejects_with_reason(decoder: Decoder, message: bytes, reason: Reason) -> None:
    """Bad input is rejected (never raised) with the SPEC §1 reason for it."""
    result = decoder.decode(message)

    assert result
    assert all(isinstance(item, Rejection) for item in result)
    assert [item.reason for item in result if isinstance(item, Rejection)] == [reason] * len(result)


@pytest.mark.parametrize(("message", "reason"), REJECTS)
def test_rejection_payload_is_what_was_sent(
    decoder: Decoder, message: bytes, reason: Reason
) -> None:
    """A rejected message carries its exact bytes; a rejected batch element, its own JSON."""
    for rejection in decoder.decode(message):
        assert isinstance(rejection, Rejection)
        assert rejection.detail
        if rejection.index is None:
            assert rejection.payload == message
        else:
            assert json.loads(rejection.payload) == json.loads(message)[rejection.index]


def test_message_of_exactly_1MiB_is_not_too_large(decoder: Decoder) -> None:
    """A message of exactly 1 MiB is judged on its content."""
    message = raw(ev("lead.created", lead_id="l"))
    message += b" " * (MAX_MESSAGE_BYTES - len(message))

    assert len(message) == MAX_MESSAGE_BYTES
    assert not isinstance(one(decoder, message), Rejection)


def test_batch_of_exactly_10000_elements_is_not_too_large(decoder: Decoder) -> None:
    """A batch of exactly 10,000 elements is judged element by element."""
    message = b"[" + b",".join([b"{}"] * MAX_BATCH_ELEMENTS) + b"]"

    result = decoder.decode(message)

    assert len(result) == MAX_BATCH_ELEMENTS
    assert {r.reason for r in result if isinstance(r, Rejection)} == {Reason.NOT_AN_EVENT}
    assert [r.index for r in result if isinstance(r, Rejection)] == list(range(MAX_BATCH_ELEMENTS))


def test_rejection_details_stay_short_for_huge_values(decoder: Decoder) -> None:
    """A rejection's detail never echoes a long field value back in full."""
    result = one(decoder, raw(ev("x" * 5000, lead_id="l")))

    assert isinstance(result, Rejection)
    assert len(result.detail) < 200


# -- crashes on input (SPEC §1: the daemon never crashes on input) ----------------------


@pytest.mark.parametrize(
    "occurred_at",
    [
        pytest.param("0001-01-01T00:00:00+01:00", id="year-1"),
        pytest.param("9999-12-31T23:59:59-01:00", id="year-9999"),
    ],
)
def test_out_of_range_utc_instant_is_rejected(decoder: Decoder, occurred_at: str) -> None:
    """A timestamp whose UTC instant is outside datetime's range is invalid_field."""
    result = decoder.decode(_sub(occurred_at=occurred_at))

    assert [r.reason for r in result if isinstance(r, Rejection)] == [Reason.INVALID_FIELD]


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(b'{"x":1e99999999999999999999}', id="no-type"),
        pytest.param(b"[1e99999999999999999999]", id="batch"),
        pytest.param(
            b'{"type":"invoice.paid","event_id":"e","occurred_at":"2026-01-05T10:00:00Z",'
            b'"account_id":"a","amount":1e99999999999999999999}',
            id="amount",
        ),
    ],
)
def test_huge_exponent_number_is_rejected(decoder: Decoder, message: bytes) -> None:
    """A number too large for a Decimal is a rejection, not an exception."""
    result = decoder.decode(message)

    assert result
    assert all(isinstance(item, Rejection) for item in result)


def test_deeply_nested_batch_element_never_raises(decoder: Decoder) -> None:
    """A batch element nested near the recursion limit is rejected, never raised."""
    for depth in range(600, 1100):
        message = ('[{"x":' + "[" * depth + "]" * depth + "}]").encode()

        result = decoder.decode(message)

        assert all(isinstance(item, Rejection) for item in result), depth


def test_numeric_occurred_at_is_rejected(decoder: Decoder) -> None:
    """`occurred_at` given as a number (not an RFC 3339 string) is invalid_field."""
    result = decoder.decode(_sub(occurred_at=1_700_000_000))

    assert [r.reason for r in result if isinstance(r, Rejection)] == [Reason.INVALID_FIELD]


# -- batches ---------------------------------------------------------------------------


def test_batch_of_valid_events_keeps_order(decoder: Decoder) -> None:
    """A batch of valid events gives every event, in the order sent."""
    batch = [ev(t, event_id=f"e{i}", **MINIMAL[t]) for i, t in enumerate(EVENT_TYPES)]

    result = decoder.decode(raw(batch))

    assert [getattr(r, "event_id", None) for r in result] == [f"e{i}" for i in range(13)]
    assert [getattr(r, "type", None) for r in result] == list(EVENT_TYPES)


def test_batch_judges_each_element_on_its_own(decoder: Decoder) -> None:
    """In a batch, bad elements are rejected with their index and the others still decode."""
    batch: list[Any] = [
        ev("lead.created", event_id="ok0", lead_id="l0"),
        ev("lead.deleted", event_id="bad1", lead_id="l1"),
        ev("lead.created", event_id="ok2", lead_id="l2"),
        "not an object",
        ev("invoice.paid", event_id="bad4", account_id="a", amount="1", currency="EUR"),
        ev("lead.stage_changed", event_id="bad5", lead_id="l", stage="nowhere"),
        ev("invoice.paid", event_id="ok6", account_id="a", amount=0.1),
    ]

    result = decoder.decode(raw(batch))

    assert [(r.index, r.reason) if isinstance(r, Rejection) else r.event_id for r in result] == [
        "ok0",
        (1, Reason.UNKNOWN_TYPE),
        "ok2",
        (3, Reason.NOT_AN_EVENT),
        (4, Reason.CURRENCY_MISMATCH),
        (5, Reason.INVALID_FIELD),
        "ok6",
    ]
    last = result[-1]
    assert isinstance(last, InvoicePaid)
    assert last.amount == Decimal("0.1")


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("not an object", id="string"),
        pytest.param(None, id="null"),
        pytest.param([1, {"a": "b"}], id="list"),
        pytest.param({"type": "nope", "lead_id": "l", "note": "ünïcode ✓"}, id="unknown-type"),
        pytest.param(ev("invoice.paid", account_id="a", amount="1", currency="EUR"), id="currency"),
        pytest.param(
            ev("lead.stage_changed", lead_id="l", stage="x", n=12345678901234567890), id="stage"
        ),
    ],
)
def test_batch_element_dead_letter_payload_is_its_json(decoder: Decoder, bad: Any) -> None:
    """A rejected batch element's payload is that element as JSON, not the whole batch."""
    batch = [ev("lead.created", lead_id="l"), bad]

    rejection = decoder.decode(raw(batch))[1]

    assert isinstance(rejection, Rejection)
    assert rejection.index == 1
    assert json.loads(rejection.payload) == bad


def test_batch_element_dead_letter_keeps_numbers(decoder: Decoder) -> None:
    """A rejected batch element's numbers stay numbers in its dead-letter payload."""
    rejection = decoder.decode(b'[{"type":"x","amount":0.1}]')[0]

    assert isinstance(rejection, Rejection)
    assert json.loads(rejection.payload) == {"type": "x", "amount": 0.1}


def test_batch_element_with_huge_integer_does_not_sink_the_batch(decoder: Decoder) -> None:
    """A bad element holding a 4301-digit integer is rejected alone; the others decode."""
    good = raw(ev("subscription.canceled", subscription_id="s"))
    bad = b'{"type":"nope","n":' + b"1" * 4301 + b"}"

    result = decoder.decode(b"[" + good + b"," + bad + b"]")

    assert [r.reason if isinstance(r, Rejection) else r.type for r in result] == [
        "subscription.canceled",
        Reason.UNKNOWN_TYPE,
    ]


@pytest.mark.parametrize(
    "element",
    [pytest.param(ev(t, **MINIMAL[t], **OPTIONAL[t]), id=t) for t in EVENT_TYPES]
    + [
        pytest.param(ev("invoice.paid", account_id="a", amount=0.1), id="float-amount"),
        pytest.param(
            ev("activity.logged", account_id="a", kind="call", minutes=2.5), id="float-minutes"
        ),
        pytest.param(
            ev("subscription.canceled", subscription_id="s", extra={"x": [1.5]}), id="extra"
        ),
    ],
)
def test_element_is_judged_alike_alone_and_next_to_a_bad_one(
    decoder: Decoder, element: dict[str, Any]
) -> None:
    """A valid element decodes to the same event alone and inside a batch with a bad element."""
    alone = one(decoder, raw(element))
    in_batch = decoder.decode(raw([element, 5]))

    assert not isinstance(alone, Rejection)
    assert in_batch[0] == alone
    assert isinstance(in_batch[1], Rejection)


# -- properties ------------------------------------------------------------------------

REASONS = set(Reason)


def _assert_judged(result: list[Decoded]) -> None:
    assert isinstance(result, list)
    assert result
    for item in result:
        if isinstance(item, Rejection):
            assert item.reason in REASONS
            assert isinstance(item.payload, bytes)
        else:
            assert isinstance(item, EVENT_CLASSES)


def _json(floats: st.SearchStrategy[float]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(min_value=-(10**30), max_value=10**30)
        | floats
        | st.text(max_size=30),
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=10), children, max_size=5)
        ),
        max_leaves=20,
    )


# json.dumps writes NaN and Infinity, which are not JSON: the whole message is malformed.
json_values = _json(st.floats())
finite_json_values = _json(st.floats(allow_nan=False, allow_infinity=False))


@FUZZ
@given(message=st.binary(max_size=2048))
def test_any_bytes_never_raise(decoder: Decoder, message: bytes) -> None:
    """Arbitrary bytes give events or rejections with a known reason, never an exception."""
    _assert_judged(decoder.decode(message))


@FUZZ
@given(value=json_values)
def test_any_json_value_never_raises(decoder: Decoder, value: Any) -> None:
    """Any JSON value (objects, arrays, scalars, NaN) is judged, never raised."""
    _assert_judged(decoder.decode(json.dumps(value).encode()))


FIELD_NAMES = sorted(
    {name for fields in (*MINIMAL.values(), *OPTIONAL.values()) for name in fields}
    | {"event_id", "occurred_at", "source", "currency", "stage", "kind", "amount"}
)
field_values = (
    finite_json_values
    | st.sampled_from([*LEAD_STAGES, *OPPORTUNITY_STAGES, "USD", "EUR", "call", "renewal"])
    | st.datetimes(
        min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - bounds of naive and aware values
        max_value=datetime(2200, 1, 1),  # noqa: DTZ001
        timezones=st.sampled_from([None, UTC]),
    ).map(datetime.isoformat)
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
)


@FUZZ
@given(
    type_=st.sampled_from(EVENT_TYPES),
    fields=st.dictionaries(
        st.sampled_from(FIELD_NAMES) | st.text(max_size=8), field_values, max_size=8
    ),
    batched=st.booleans(),
)
def test_any_fields_with_valid_type_never_raise(
    decoder: Decoder, type_: str, fields: dict[str, Any], batched: bool
) -> None:
    """An object with a valid `type` and random fields is judged, never raised, alone or batched."""
    element = {**fields, "type": type_}
    message = raw([element, element] if batched else element)

    result = decoder.decode(message)

    _assert_judged(result)
    assert len(result) == (2 if batched else 1)


ids = st.text(min_size=1, max_size=200)
money = st.decimals(min_value=0, max_value=10**12, places=2).map(str) | st.integers(0, 10**15)
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Years stay away from 1 and 9999: converting those to UTC can leave datetime's range
# (a known bug, pinned by test_out_of_range_utc_instant_is_rejected).
instants = st.datetimes(
    min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - Hypothesis bounds are naive
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=offsets,
)


def _optional(**strategies: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=strategies)


BODIES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "lead.created": st.tuples(
        st.fixed_dictionaries({"lead_id": ids}),
        _optional(
            account_id=ids,
            channel=st.text(min_size=1, max_size=200),
            campaign_id=ids,
            stage=st.sampled_from(LEAD_STAGES),
        ),
    ).map(lambda p: p[0] | p[1]),
    "lead.stage_changed": st.tuples(
        st.fixed_dictionaries({"lead_id": ids, "stage": st.sampled_from(LEAD_STAGES)}),
        _optional(account_id=ids),
    ).map(lambda p: p[0] | p[1]),
    "opportunity.created": st.tuples(
        st.fixed_dictionaries(
            {
                "opportunity_id": ids,
                "amount": money,
                "kind": st.sampled_from(["new_business", "expansion", "renewal"]),
            }
        ),
        _optional(
            account_id=ids,
            stage=st.sampled_from(OPPORTUNITY_STAGES),
            expected_close_date=st.dates().map(date.isoformat),
            currency=st.just("USD"),
            channel=st.text(min_size=1, max_size=200),
        ),
    ).map(lambda p: p[0] | p[1]),
    "opportunity.stage_changed": st.tuples(
        st.fixed_dictionaries(
            {"opportunity_id": ids, "stage": st.sampled_from(OPPORTUNITY_STAGES)}
        ),
        _optional(amount=money),
    ).map(lambda p: p[0] | p[1]),
    "opportunity.amount_changed": st.fixed_dictionaries({"opportunity_id": ids, "amount": money}),
    "activity.logged": st.tuples(
        st.fixed_dictionaries(
            {"account_id": ids, "kind": st.sampled_from(["call", "email", "meeting", "visit"])}
        ),
        _optional(
            opportunity_id=ids,
            minutes=st.floats(min_value=0.01, max_value=100_000) | st.integers(1, 100_000),
        ),
    ).map(lambda p: p[0] | p[1]),
    "campaign.spend": st.tuples(
        st.fixed_dictionaries({"campaign_id": ids, "amount": money}),
        _optional(channel=st.text(min_size=1, max_size=200)),
    ).map(lambda p: p[0] | p[1]),
    "expense.recorded": st.fixed_dictionaries(
        {
            "category": st.sampled_from(
                ["sales", "marketing", "customer_success", "analytics", "tools", "other"]
            ),
            "amount": money,
        }
    ),
    "invoice.paid": st.tuples(
        st.fixed_dictionaries({"account_id": ids, "amount": money}),
        _optional(
            kind=st.sampled_from(["new_business", "expansion", "renewal", "recurring", "one_time"]),
            invoice_id=ids,
        ),
    ).map(lambda p: p[0] | p[1]),
    "refund.issued": st.tuples(
        st.fixed_dictionaries({"account_id": ids, "amount": money}),
        _optional(invoice_id=ids),
    ).map(lambda p: p[0] | p[1]),
    "subscription.started": st.fixed_dictionaries(
        {"subscription_id": ids, "account_id": ids, "mrr": money}
    ),
    "subscription.changed": st.fixed_dictionaries({"subscription_id": ids, "mrr": money}),
    "subscription.canceled": st.fixed_dictionaries({"subscription_id": ids}),
}
ENTITY_FIELDS = ("lead_id", "opportunity_id", "subscription_id", "account_id", "campaign_id")


@st.composite
def valid_events(draw: st.DrawFn) -> tuple[dict[str, Any], datetime]:
    """A valid event object of any type, and its instant."""
    type_ = draw(st.sampled_from(EVENT_TYPES))
    at = draw(instants)
    body = draw(BODIES[type_])
    common = {"type": type_, "event_id": draw(ids), "occurred_at": at.isoformat()}
    if draw(st.booleans()):
        common["source"] = draw(st.text(max_size=200))
    return body | common, at


def test_valid_event_strategy_covers_every_type() -> None:
    """The valid-event strategy has a body for each of the 13 types."""
    assert set(BODIES) == set(EVENT_TYPES)


@FUZZ
@given(generated=valid_events())
def test_valid_events_are_accepted_and_roundtrip(
    decoder: Decoder, generated: tuple[dict[str, Any], datetime]
) -> None:
    """Every valid event of every type is accepted and keeps its ids, type and instant."""
    element, at = generated

    event = one(decoder, raw(element))

    assert not isinstance(event, Rejection), event
    assert event.type == element["type"]
    assert event.event_id == element["event_id"]
    assert event.occurred_at == at
    assert event.occurred_at.tzinfo is UTC
    for name in ENTITY_FIELDS:
        if name in element:
            assert getattr(event, name) == element[name]
    for name in ("amount", "mrr"):
        if name in element:
            assert getattr(event, name) == Decimal(str(element[name]))


@FUZZ
@given(
    generated=st.lists(valid_events(), min_size=1, max_size=8), bad_at=st.none() | st.integers(0, 8)
)
def test_valid_batches_keep_order_around_a_bad_element(
    decoder: Decoder, generated: list[tuple[dict[str, Any], datetime]], bad_at: int | None
) -> None:
    """A batch of valid events, with or without one bad element, gives every event in order."""
    batch: list[Any] = [element for element, _ in generated]
    if bad_at is not None:
        batch.insert(min(bad_at, len(batch)), {"type": "nope"})

    result = decoder.decode(raw(batch))

    assert len(result) == len(batch)
    expected = [e.get("event_id") if e.get("type") != "nope" else None for e in batch]
    assert [None if isinstance(r, Rejection) else r.event_id for r in result] == expected
    for item in result:
        if isinstance(item, Rejection):
            assert item.reason is Reason.UNKNOWN_TYPE
            assert item.index == batch.index({"type": "nope"})


# -- snapshot loads (SPEC §1, v2) ------------------------------------------------------

BEFORE = "2025-11-01T08:00:00+02:00"


@pytest.mark.parametrize(
    ("type_", "fields", "reason"),
    [
        pytest.param(
            "lead.created", {"snapshot": True, "entered_at": BEFORE}, None, id="lead-snapshot"
        ),
        pytest.param(
            "opportunity.created",
            {"snapshot": True, "entered_at": BEFORE, "stage": "negotiation"},
            None,
            id="opportunity-snapshot-in-an-open-stage",
        ),
        pytest.param(
            "lead.created", {"snapshot": True, "entered_at": AT}, None, id="entered-at-occurred-at"
        ),
        pytest.param("lead.created", {"snapshot": False}, None, id="snapshot-false"),
        pytest.param(
            "lead.created",
            {"entered_at": "2027-01-01T00:00:00Z"},
            None,
            id="entered-at-without-snapshot-is-ignored",
        ),
        pytest.param(
            "lead.created",
            {"snapshot": True, "stage": "opportunity"},
            Reason.INVALID_FIELD,
            id="snapshot-into-the-converted-stage",
        ),
        pytest.param(
            "opportunity.created",
            {"snapshot": True, "stage": "lost"},
            Reason.INVALID_FIELD,
            id="snapshot-into-a-dropped-stage",
        ),
        pytest.param(
            "lead.created", {"snapshot": "true"}, Reason.INVALID_FIELD, id="snapshot-a-string"
        ),
        pytest.param("lead.created", {"snapshot": 1}, Reason.INVALID_FIELD, id="snapshot-a-number"),
        pytest.param(
            "lead.created",
            {"snapshot": True, "entered_at": "2026-01-05T10:00:01Z"},
            Reason.INVALID_FIELD,
            id="entered-at-after-occurred-at",
        ),
        pytest.param(
            "lead.created",
            {"snapshot": True, "entered_at": "2025-11-01T08:00:00"},
            Reason.INVALID_FIELD,
            id="entered-at-without-offset",
        ),
    ],
)
def test_snapshot_fields(
    decoder: Decoder, type_: str, fields: dict[str, Any], reason: Reason | None
) -> None:
    """`snapshot` is a boolean, `entered_at` an offset timestamp not after `occurred_at`."""
    result = one(decoder, raw(ev(type_, **MINIMAL[type_], **fields)))

    if reason is None:
        assert not isinstance(result, Rejection), result
    else:
        assert isinstance(result, Rejection)
        assert result.reason is reason


def test_opportunity_without_account_is_accepted(decoder: Decoder) -> None:
    """SPEC v2: `account_id` is optional on `opportunity.created`."""
    body = {k: v for k, v in MINIMAL["opportunity.created"].items() if k != "account_id"}
    result = one(decoder, raw(ev("opportunity.created", **body)))

    assert isinstance(result, OpportunityCreated)
    assert result.account_id is None


@FUZZ
@given(occurred=instants, entered=instants)
def test_snapshot_since_is_entered_at_unless_after_occurred_at(
    decoder: Decoder, occurred: datetime, entered: datetime
) -> None:
    """A snapshot is accepted exactly when `entered_at` <= `occurred_at`, and dates from it."""
    message = raw(
        ev(
            "lead.created",
            lead_id="l1",
            occurred_at=occurred.isoformat(),
            snapshot=True,
            entered_at=entered.isoformat(),
        )
    )
    result = one(decoder, message)

    if entered > occurred:
        assert isinstance(result, Rejection)
        assert result.reason is Reason.INVALID_FIELD
    else:
        assert isinstance(result, LeadCreated)
        assert result.is_snapshot
        assert result.since == entered.timestamp()

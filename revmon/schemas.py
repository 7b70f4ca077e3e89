"""JSON Schemas of what revmon reads and writes (SPEC §6): input events, metric and alert messages.

The schemas are generated from the code and committed under `schemas/`; a test keeps
the two equal, so a consumer can pin the files.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from revmon.events import EVENT_ADAPTER, MAX_BATCH_ELEMENTS

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


class MetricMessage(BaseModel):
    """A value on the metrics topic, keyed by name and sorted labels: `name{a="1",b="2"}`."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="revmon metric message")

    name: str = Field(pattern=r"^revmon_[a-z0-9_]+$")
    labels: dict[str, str]
    type: Literal["gauge", "counter"]
    value: float | None = Field(
        description="null once, when the series disappears; a tombstone (null message) follows"
    )
    as_of: datetime = Field(description="the evaluation instant `now` (RFC 3339, UTC)")
    emitted_at: datetime = Field(description="wall clock when sent (RFC 3339, UTC)")
    # `schema` would shadow a BaseModel attribute: the field has another name in Python.
    schema_version: Literal[1] = Field(alias="schema", description="version of this message format")


class AlertMessage(BaseModel):
    """A state change of one alert instance on the alerts topic; key = the alert fingerprint."""

    model_config = ConfigDict(frozen=True, extra="forbid", title="revmon alert message")

    alertname: str
    fingerprint: str = Field(
        pattern=r"^[0-9a-f]{16}$",
        description="first 16 hex digits of the SHA-256 of the sorted labels (the message key)",
    )
    labels: dict[str, str] = Field(description="alertname, severity and the series' labels")
    annotations: dict[str, str]
    status: Literal["firing", "resolved"]
    value: float | None = Field(description="the series' value; null when it disappeared")
    threshold: float
    starts_at: datetime = Field(description="when it began firing (RFC 3339, UTC)")
    ends_at: datetime | None = Field(description="when it resolved; null while firing")
    as_of: datetime = Field(description="the evaluation instant of the change (RFC 3339, UTC)")
    schema_version: Literal[1] = Field(alias="schema", description="version of this schema")


def _with_dialect(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, "title": title, **schema}


def event_message_schema() -> dict[str, Any]:
    """An input message: one event object, or a batch (array) of them."""
    one = EVENT_ADAPTER.json_schema()
    defs = one.pop("$defs", {})
    return _with_dialect(
        {
            "description": "A Kafka message value on an input topic: one event or a batch.",
            "oneOf": [
                one,
                {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ELEMENTS, "items": one},
            ],
            "$defs": defs,
        },
        "revmon input event message",
    )


def all_schemas() -> dict[str, dict[str, Any]]:
    """Every schema by file stem: `events`, `metric-message`, `alert-message`."""
    return {
        "events": event_message_schema(),
        "metric-message": _with_dialect(
            TypeAdapter(MetricMessage).json_schema(), "revmon metric message"
        ),
        "alert-message": _with_dialect(
            TypeAdapter(AlertMessage).json_schema(), "revmon alert message"
        ),
    }

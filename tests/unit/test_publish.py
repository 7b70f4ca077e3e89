"""The metrics topic's pure half: keys, message values, and what a round sends."""

from __future__ import annotations

import orjson
import pytest

from revmon.kpi.ledger import Sample
from revmon.publish import (
    MAX_RECORD_BYTES,
    Evaluation,
    Series,
    current_series,
    decode,
    encode,
    plan,
    rfc3339,
    series_key,
)
from revmon.schemas import MetricMessage


@pytest.mark.parametrize(
    ("name", "labels", "key"),
    [
        pytest.param("revmon_customers", (), "revmon_customers", id="no-labels"),
        pytest.param(
            "revmon_er_ratio", (("window", "90d"),), 'revmon_er_ratio{window="90d"}', id="one"
        ),
        pytest.param(
            "revmon_funnel_age_seconds_bucket",
            (("stage", "mql"), ("funnel", "lead"), ("le", "+Inf")),
            'revmon_funnel_age_seconds_bucket{funnel="lead",le="+Inf",stage="mql"}',
            id="sorted",
        ),
        pytest.param(
            "revmon_x", (("a", 'q"b\\c\nd'),), 'revmon_x{a="q\\"b\\\\c\\nd"}', id="escaped"
        ),
    ],
)
def test_series_key_is_the_series_as_prometheus_writes_it(
    name: str, labels: tuple[tuple[str, str], ...], key: str
) -> None:
    """Keys are `name{labels}` with labels sorted and escaped as in the text format."""
    assert series_key(name, labels) == key


@pytest.mark.parametrize(
    ("timestamp", "text"),
    [
        pytest.param(0.0, "1970-01-01T00:00:00Z", id="epoch"),
        pytest.param(1_790_000_000.5, "2026-09-21T14:13:20.500000Z", id="fraction"),
    ],
)
def test_rfc3339_is_utc_with_a_z(timestamp: float, text: str) -> None:
    """Times are RFC 3339 in UTC."""
    assert rfc3339(timestamp) == text


@pytest.mark.parametrize(
    "series",
    [
        pytest.param(Series("revmon_er_ratio", (("window", "90d"),), 0.42), id="value"),
        pytest.param(Series("revmon_er_ratio", (("window", "7d"),), None), id="null"),
        pytest.param(Series("revmon_customers", (), 12.0), id="no-labels"),
    ],
)
def test_message_value_is_valid_and_round_trips(series: Series) -> None:
    """A message value matches the published schema and decodes to the same series."""
    raw = encode(series, as_of=1_790_000_000.0, emitted_at=1_790_000_001.0)

    message = MetricMessage.model_validate_json(raw)
    assert orjson.loads(raw)["schema"] == 1
    assert (message.name, message.value, message.type) == (series.name, series.value, "gauge")
    assert decode(series.key.encode(), raw) == series
    assert len(raw) < MAX_RECORD_BYTES


def test_an_unreadable_message_decodes_to_a_key_to_delete() -> None:
    """A value revmon cannot read is treated as a deleted series (tombstoned, never kept)."""
    assert decode(b"revmon_x", b"not json").value is None


def test_current_series_adds_the_watermark() -> None:
    """A round publishes the samples and the watermark, whose value is `now`."""
    evaluation = Evaluation(100.0, [Sample("revmon_customers", (), 3.0)])

    current = current_series(evaluation)

    assert {k: s.value for k, s in current.items()} == {
        "revmon_customers": 3.0,
        "revmon_watermark_seconds": 100.0,
    }


def _s(key: str, value: float | None) -> Series:
    return Series(key, (), value)


@pytest.mark.parametrize(
    ("current", "published", "full", "send", "delete", "tombstone"),
    [
        pytest.param({"a": 1.0}, {}, False, ["a"], [], [], id="new-series"),
        pytest.param({"a": 1.0}, {"a": 1.0}, False, [], [], [], id="unchanged-not-sent"),
        pytest.param({"a": 2.0}, {"a": 1.0}, False, ["a"], [], [], id="changed"),
        pytest.param({"a": 1.0}, {"a": 1.0}, True, ["a"], [], [], id="full-after-takeover"),
        pytest.param({}, {"a": 1.0}, False, [], ["a"], [], id="gone-null-then-tombstone"),
        pytest.param({}, {"a": None}, False, [], [], ["a"], id="null-sent-tombstone-only"),
        pytest.param({"a": 0.0}, {"a": None}, False, ["a"], [], [], id="back-after-null"),
        pytest.param(
            {"a": 1.0, "b": 2.0},
            {"b": 3.0, "c": 4.0},
            True,
            ["a", "b"],
            ["c"],
            [],
            id="mixed-full",
        ),
    ],
)
def test_plan_sends_changes_and_deletes_what_disappeared(
    current: dict[str, float],
    published: dict[str, float | None],
    full: bool,
    send: list[str],
    delete: list[str],
    tombstone: list[str],
) -> None:
    """Changed series are sent, unchanged only on a full send, gone ones nulled+tombstoned."""
    todo = plan(
        {k: _s(k, v) for k, v in current.items()},
        {k: _s(k, v) for k, v in published.items()},
        full=full,
    )

    assert [s.key for s in todo.send] == send
    assert [s.key for s in todo.delete] == delete
    assert todo.tombstone == tombstone
    assert len(todo) == len(send) + 2 * len(delete) + len(tombstone)

"""Ingest and the operations metrics (SPEC §1, §3.9): counting, dedupe, dead letters, redelivery."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from revmon import __version__
from revmon.engine import MetricEngine
from revmon.events import EVENT_ADAPTER, EVENT_TYPES, Decoder, Event, Reason, Rejection
from revmon.exposition import OperationsMetrics, render
from revmon.kpi.customers import AccountFact
from revmon.kpi.ledger import Records, Windows
from revmon.processors import (
    REJECTION_LOG_BURST,
    REJECTION_LOG_PERIOD,
    AccountIngest,
    Ingest,
    Message,
    NoEngine,
    dead_letter_headers,
    dead_letter_value,
)
from revmon.settings import Settings, load_settings
from revmon.state import PartitionState

AT = "2026-01-05T10:00:00Z"
CRM = "revmon.crm.events"
BILLING = "revmon.billing.events"
HORIZON = 30 * 86400.0
NOW = 1_800_000_000.0


class DictTable:
    """A StateTable over a dict (what the worker's Faust table does, in memory)."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, bytes]] = {}
        self.puts = 0

    def records(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Every (key, value) of the partition."""
        return list(self.data.get(partition, {}).items())

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Store a record."""
        self.data.setdefault(partition, {})[key] = value
        self.puts += 1

    def delete(self, partition: int, key: str) -> None:
        """Remove a record."""
        del self.data[partition][key]


class ListDeadLetters:
    """Dead letters collected in a list, with the headers the worker would send."""

    def __init__(self) -> None:
        self.sent: list[tuple[Message, Rejection]] = []

    def send(self, message: Message, rejection: Rejection) -> None:
        """Keep the rejected message."""
        self.sent.append((message, rejection))

    @property
    def headers(self) -> list[dict[str, bytes]]:
        """The headers of each dead letter, as a dict."""
        return [dict(dead_letter_headers(m, r)) for m, r in self.sent]


class FakeEngine(NoEngine):
    """Records applied events; reports the ids in `late` as late."""

    def __init__(self, late: Iterable[str] = ()) -> None:
        self.late = set(late)
        self.applied: list[tuple[str, int]] = []

    def apply(self, event: Event, partition: int, newest: float | None = None) -> bool:
        """Record the event; True when its id was declared late."""
        self.applied.append((event.event_id, partition))
        return event.event_id in self.late


class Clock:
    """Fixed clocks for the collector: watermark, newest event, wall."""

    def __init__(self) -> None:
        self.watermark: float | None = None
        self.newest: float | None = None
        self.wall = NOW


@pytest.fixture(scope="module")
def config() -> Settings:
    """The packaged default settings."""
    with pytest.MonkeyPatch.context() as patch:  # module scope: before the per-test env reset
        for name in [n for n in os.environ if n.upper().startswith("REVMON_")]:
            patch.delenv(name)
        return load_settings(None)


@pytest.fixture
def registry() -> CollectorRegistry:
    """A fresh registry per test."""
    return CollectorRegistry()


@pytest.fixture
def clock() -> Clock:
    """Clocks the test sets by hand."""
    return Clock()


@pytest.fixture
def metrics(registry: CollectorRegistry, config: Settings, clock: Clock) -> OperationsMetrics:
    """The operations metrics on the fresh registry, with the hand-set clocks."""
    return OperationsMetrics(
        registry,
        config,
        watermark=lambda: clock.watermark,
        newest_event=lambda: clock.newest,
        wall_clock=lambda: clock.wall,
    )


@pytest.fixture
def table() -> DictTable:
    """An empty state table."""
    return DictTable()


@pytest.fixture
def dead() -> ListDeadLetters:
    """Collected dead letters."""
    return ListDeadLetters()


@pytest.fixture
def make_ingest(
    config: Settings, metrics: OperationsMetrics, table: DictTable, dead: ListDeadLetters
) -> Callable[..., Ingest]:
    """Build an Ingest on the shared table, metrics and dead letters (engine optional)."""

    def build(
        engine: Any = None,
        wall_clock: Callable[[], float] = time.time,
        snapshot_every: int | None = None,
    ) -> Ingest:
        return Ingest(
            decoder=Decoder(
                currency=config.currency,
                lead_stages=config.funnels.lead.all_stages,
                opportunity_stages=config.funnels.opportunity.all_stages,
            ),
            metrics=metrics,
            table=table,
            dead_letters=dead,
            engine=engine if engine is not None else NoEngine(),
            dedupe_horizon=HORIZON,
            wall_clock=wall_clock,
            snapshot_every=snapshot_every,
        )

    return build


@pytest.fixture
def ingest(make_ingest: Callable[..., Ingest]) -> Ingest:
    """An Ingest with the engine that keeps nothing."""
    return make_ingest()


def ev(type_: str, event_id: str, at: str = AT, **fields: Any) -> dict[str, Any]:
    """An event object."""
    return {"type": type_, "event_id": event_id, "occurred_at": at, **fields}


def lead(event_id: str, at: str = AT) -> dict[str, Any]:
    """A valid lead.created."""
    return ev("lead.created", event_id, at, lead_id=f"l-{event_id}")


def msg(value: Any, offset: int, *, topic: str = CRM, partition: int = 0) -> Message:
    """An input message; `value` is JSON-encoded unless it is bytes already."""
    body = value if isinstance(value, bytes) else json.dumps(value).encode()
    return Message(topic=topic, partition=partition, offset=offset, key=None, value=body)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    """One sample's value, or None when the series does not exist."""
    return registry.get_sample_value(name, labels)


def total(registry: CollectorRegistry, name: str, label: str, values: Iterable[str]) -> float:
    """The sum of a labelled counter over the given label values."""
    return sum(sample(registry, name, **{label: v}) or 0.0 for v in values)


def events(registry: CollectorRegistry, type_: str) -> float | None:
    """revmon_events_total for one type."""
    return sample(registry, "revmon_events_total", type=type_)


def rejected(registry: CollectorRegistry, reason: str) -> float | None:
    """revmon_events_rejected_total for one reason."""
    return sample(registry, "revmon_events_rejected_total", reason=reason)


# -- series from the start --------------------------------------------------------------


@pytest.mark.parametrize("type_", [pytest.param(t, id=t) for t in EVENT_TYPES])
def test_events_series_exist_at_zero(
    registry: CollectorRegistry, metrics: OperationsMetrics, type_: str
) -> None:
    """revmon_events_total{type} exists at 0 for every type before any event."""
    assert events(registry, type_) == 0.0


@pytest.mark.parametrize("reason", [pytest.param(r.value, id=r.value) for r in Reason])
def test_rejected_series_exist_at_zero(
    registry: CollectorRegistry, metrics: OperationsMetrics, reason: str
) -> None:
    """revmon_events_rejected_total{reason} exists at 0 for every reason before any input."""
    assert rejected(registry, reason) == 0.0


def test_unlabelled_counters_exist_at_zero(
    registry: CollectorRegistry, metrics: OperationsMetrics
) -> None:
    """The duplicate and late counters exist at 0 from the start."""
    assert sample(registry, "revmon_events_duplicate_total") == 0.0
    assert sample(registry, "revmon_events_late_total") == 0.0


def test_alert_series_exist_at_zero(
    registry: CollectorRegistry, metrics: OperationsMetrics, config: Settings
) -> None:
    """revmon_alerts_firing{alertname,severity} exists at 0 for every configured rule."""
    for rule in config.alerts:
        assert (
            sample(registry, "revmon_alerts_firing", alertname=rule.name, severity=rule.severity)
            == 0.0
        )


def test_build_info(registry: CollectorRegistry, metrics: OperationsMetrics) -> None:
    """revmon_build_info{version} is 1 with the package version."""
    assert sample(registry, "revmon_build_info", version=__version__) == 1.0


def test_exposition_text_shows_zero_series(
    registry: CollectorRegistry, metrics: OperationsMetrics
) -> None:
    """/metrics text carries the zero series with `_total` names and no `_created` series."""
    text = render(registry).decode()

    assert 'revmon_events_total{type="lead.created"} 0.0' in text
    assert 'revmon_events_rejected_total{reason="too_large"} 0.0' in text
    assert "# TYPE revmon_events_total counter" in text
    assert "_created" not in text


# -- clocks ----------------------------------------------------------------------------


def test_clock_series_absent_until_known(
    registry: CollectorRegistry, metrics: OperationsMetrics
) -> None:
    """Without a watermark or an applied event, neither clock series is exported."""
    assert sample(registry, "revmon_watermark_seconds") is None
    assert sample(registry, "revmon_event_lag_seconds") is None


def test_clock_series_from_injected_callables(
    registry: CollectorRegistry, metrics: OperationsMetrics, clock: Clock
) -> None:
    """Watermark is the injected now; lag is wall clock − newest occurred_at, read at scrape."""
    clock.watermark = NOW - 60
    clock.newest = NOW - 1100

    assert sample(registry, "revmon_watermark_seconds") == NOW - 60
    assert sample(registry, "revmon_event_lag_seconds") == 1100.0

    clock.wall = NOW + 100

    assert sample(registry, "revmon_event_lag_seconds") == 1200.0


# -- counting --------------------------------------------------------------------------


def test_counts_applied_events_per_type(registry: CollectorRegistry, ingest: Ingest) -> None:
    """Every valid event counts once under its type; the other types stay at 0."""
    ingest.handle(
        [
            msg(lead("e1"), 0),
            msg(lead("e2"), 1),
            msg(ev("invoice.paid", "e3", account_id="a", amount="10"), 0, topic=BILLING),
        ]
    )

    assert events(registry, "lead.created") == 2.0
    assert events(registry, "invoice.paid") == 1.0
    assert total(registry, "revmon_events_total", "type", EVENT_TYPES) == 3.0


def test_engine_sees_each_applied_event_once_with_its_partition(
    make_ingest: Callable[..., Ingest],
) -> None:
    """The engine gets every valid, new event in order, with its partition number."""
    engine = FakeEngine()
    ingest = make_ingest(engine)

    ingest.handle(
        [
            msg(lead("e1"), 0, partition=2),
            msg(b"not json", 1, partition=2),
            msg(lead("e1"), 2, partition=2),
            msg([lead("e2"), lead("e3")], 0, partition=3),
        ]
    )

    assert engine.applied == [("e1", 2), ("e2", 3), ("e3", 3)]


def test_duplicate_is_counted_and_changes_nothing(
    registry: CollectorRegistry, make_ingest: Callable[..., Ingest]
) -> None:
    """A repeat of an applied event_id counts as a duplicate, not as an event; it is not applied."""
    engine = FakeEngine()
    ingest = make_ingest(engine)

    ingest.handle([msg(lead("e1"), 0), msg(lead("e1"), 1), msg([lead("e2"), lead("e2")], 2)])

    assert events(registry, "lead.created") == 2.0
    assert sample(registry, "revmon_events_duplicate_total") == 2.0
    assert [event_id for event_id, _ in engine.applied] == ["e1", "e2"]


def test_duplicate_of_other_type_same_id_is_a_duplicate(
    registry: CollectorRegistry, ingest: Ingest
) -> None:
    """Dedupe is by event_id alone: a different event reusing an applied id is ignored."""
    ingest.handle(
        [msg(lead("e1"), 0), msg(ev("invoice.paid", "e1", account_id="a", amount="1"), 1)]
    )

    assert events(registry, "invoice.paid") == 0.0
    assert sample(registry, "revmon_events_duplicate_total") == 1.0


def test_late_events_are_counted_and_still_applied(
    registry: CollectorRegistry, make_ingest: Callable[..., Ingest]
) -> None:
    """Events the engine reports late count in revmon_events_late_total and revmon_events_total."""
    ingest = make_ingest(FakeEngine(late={"e2", "e3"}))

    ingest.handle([msg(lead("e1"), 0), msg(lead("e2"), 1), msg([lead("e3"), lead("e4")], 2)])

    assert sample(registry, "revmon_events_late_total") == 2.0
    assert events(registry, "lead.created") == 4.0


def test_late_duplicate_is_only_a_duplicate(
    registry: CollectorRegistry, make_ingest: Callable[..., Ingest]
) -> None:
    """A duplicate never reaches the engine, so it is never also counted late."""
    ingest = make_ingest(FakeEngine(late={"e1"}))

    ingest.handle([msg(lead("e1"), 0), msg(lead("e1"), 1)])

    assert sample(registry, "revmon_events_late_total") == 1.0
    assert sample(registry, "revmon_events_duplicate_total") == 1.0


# -- rejections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param(b"{oops", Reason.MALFORMED_JSON, id="malformed_json"),
        pytest.param(b'"hello"', Reason.NOT_AN_EVENT, id="not_an_event"),
        pytest.param(
            json.dumps(ev("lead.merged", "e1")).encode(), Reason.UNKNOWN_TYPE, id="unknown_type"
        ),
        pytest.param(
            json.dumps(ev("lead.stage_changed", "e1", lead_id="l", stage="nowhere")).encode(),
            Reason.INVALID_FIELD,
            id="invalid_field",
        ),
        pytest.param(
            json.dumps(
                ev("invoice.paid", "e1", account_id="a", amount="1", currency="EUR")
            ).encode(),
            Reason.CURRENCY_MISMATCH,
            id="currency_mismatch",
        ),
        pytest.param(b"[" + b"{}," * 10_000 + b"{}]", Reason.TOO_LARGE, id="too_large"),
    ],
)
def test_rejection_is_counted_and_dead_lettered_unchanged(
    registry: CollectorRegistry,
    ingest: Ingest,
    dead: ListDeadLetters,
    value: bytes,
    reason: Reason,
) -> None:
    """A rejected message counts under its reason and is dead-lettered as sent, with 4 headers."""
    message = Message(topic=BILLING, partition=3, offset=41, key=b"acct-1", value=value)

    ingest.handle([message])

    assert rejected(registry, reason.value) == 1.0
    assert (
        total(registry, "revmon_events_rejected_total", "reason", [r.value for r in Reason]) == 1.0
    )
    assert total(registry, "revmon_events_total", "type", EVENT_TYPES) == 0.0
    [(sent, rejection)] = dead.sent
    assert sent == message
    assert rejection.reason is reason
    assert rejection.payload == value
    assert dead_letter_headers(sent, rejection) == [
        ("revmon-reason", reason.value.encode()),
        ("revmon-source-topic", BILLING.encode()),
        ("revmon-source-partition", b"3"),
        ("revmon-source-offset", b"41"),
    ]


def test_a_flood_of_bad_messages_cannot_flood_the_log(
    registry: CollectorRegistry, make_ingest: Callable[..., Ingest], dead: ListDeadLetters
) -> None:
    """5,000 rejections in a minute: all counted and dead-lettered, 10 lines per reason logged."""
    now = [1000.0]
    ingest = make_ingest(wall_clock=lambda: now[0])
    bad = [msg(b"nope", i) for i in range(2500)] + [
        msg(ev("no.such.type", f"u{i}"), 2500 + i) for i in range(2500)
    ]

    with structlog.testing.capture_logs() as logs:
        ingest.handle(bad)
        now[0] += REJECTION_LOG_PERIOD
        ingest.handle([msg(b"nope", 5000)])

    lines = [entry for entry in logs if entry["event"] == "event_rejected"]
    assert rejected(registry, "malformed_json") == 2501
    assert rejected(registry, "unknown_type") == 2500
    assert len(dead.sent) == 5001
    assert len(lines) == 2 * REJECTION_LOG_BURST + 1
    assert [
        (entry["reason"], entry["suppressed"])
        for entry in logs
        if entry["event"] == "event_rejected_suppressed"
    ] == [("malformed_json", 2500 - REJECTION_LOG_BURST)]


def test_rejected_message_still_advances_the_offset(ingest: Ingest, table: DictTable) -> None:
    """A message of only rejections is handled: its offset is applied and journaled."""
    ingest.handle([msg(b"nope", 5)])
    ingest.flush()

    assert PartitionState.recover(0, HORIZON, table).offsets == {CRM: 5}


def test_batch_with_one_bad_element_applies_the_others(
    registry: CollectorRegistry, ingest: Ingest, dead: ListDeadLetters
) -> None:
    """In a batch, the bad element is rejected and dead-lettered alone; the others apply."""
    bad = ev("lead.created", "e2", lead_id="l", stage="nowhere")
    ingest.handle([msg([lead("e1"), bad, lead("e3")], 7)])

    assert events(registry, "lead.created") == 2.0
    assert rejected(registry, "invalid_field") == 1.0
    [(sent, rejection)] = dead.sent
    assert sent.offset == 7
    assert rejection.index == 1
    assert json.loads(rejection.payload) == bad
    assert dead.headers == [
        {
            "revmon-reason": b"invalid_field",
            "revmon-source-topic": CRM.encode(),
            "revmon-source-partition": b"0",
            "revmon-source-offset": b"7",
            "revmon-batch-index": b"1",
        }
    ]


# -- redelivery and recovery -----------------------------------------------------------


def _batch() -> list[Message]:
    return [
        msg(lead("e1"), 0),
        msg(b"garbage", 1),
        msg([lead("e2"), lead("e1")], 2),
        msg(ev("invoice.paid", "e3", account_id="a", amount="5"), 0, topic=BILLING),
    ]


def _counters(registry: CollectorRegistry) -> dict[str, float]:
    names = {
        "events": ("revmon_events_total", "type", EVENT_TYPES),
        "rejected": ("revmon_events_rejected_total", "reason", [r.value for r in Reason]),
    }
    counts = {key: total(registry, *spec) for key, spec in names.items()}
    for name in ("revmon_events_duplicate_total", "revmon_events_late_total"):
        counts[name] = sample(registry, name) or 0.0
    return counts


def test_redelivery_before_flush_changes_nothing(
    registry: CollectorRegistry, ingest: Ingest, dead: ListDeadLetters
) -> None:
    """Messages at or below the applied offsets are skipped: no counter moves, no dead letter."""
    ingest.handle(_batch())
    before = _counters(registry)

    ingest.handle(_batch())

    assert _counters(registry) == before
    assert len(dead.sent) == 1


def test_redelivery_after_recovery_changes_nothing(
    registry: CollectorRegistry,
    make_ingest: Callable[..., Ingest],
    table: DictTable,
    dead: ListDeadLetters,
) -> None:
    """After a flush, forget() and recovery from the table, redelivered messages change nothing."""
    engine = FakeEngine()
    ingest = make_ingest(engine)
    ingest.handle(_batch())
    ingest.flush()
    before = _counters(registry)
    ingest.forget()

    ingest.handle(_batch())

    assert _counters(registry) == before
    assert len(dead.sent) == 1
    assert [event_id for event_id, _ in engine.applied] == ["e1", "e2", "e3"]


def test_new_ingest_on_same_table_skips_redelivery_and_dedupes(
    registry: CollectorRegistry,
    make_ingest: Callable[..., Ingest],
) -> None:
    """A restarted worker recovers offsets and ids: old offsets skip, old ids are duplicates."""
    first = make_ingest()
    first.handle(_batch())
    first.flush()
    before = _counters(registry)

    second = make_ingest()
    second.handle([*_batch(), msg(lead("e1"), 3), msg(lead("e9"), 4)])

    after = _counters(registry)
    assert after["events"] == before["events"] + 1
    assert after["revmon_events_duplicate_total"] == before["revmon_events_duplicate_total"] + 1
    assert second.positions() == {(CRM, 0): 5, (BILLING, 0): 1}


def test_forget_some_partitions_keeps_the_others(
    make_ingest: Callable[..., Ingest], table: DictTable
) -> None:
    """forget({p}) drops only p's state; unflushed state of p is re-read from the table."""
    ingest = make_ingest()
    ingest.handle([msg(lead("e1"), 0, partition=0), msg(lead("e2"), 0, partition=1)])
    ingest.flush([0])

    ingest.forget([0, 1])

    assert ingest.state(0).offsets == {CRM: 0}
    assert ingest.state(1).offsets == {}


# -- flush and positions ---------------------------------------------------------------


def test_flush_writes_one_record_per_dirty_partition(ingest: Ingest, table: DictTable) -> None:
    """A batch over two partitions is journaled as one record each, then nothing more."""
    ingest.handle(
        [
            msg(lead("e1"), 0, partition=0),
            msg(lead("e2"), 1, partition=0),
            msg(lead("e3"), 0, partition=1),
        ]
    )

    assert sorted(ingest.dirty_partitions()) == [0, 1]

    ingest.flush()

    assert table.puts == 2
    assert ingest.dirty_partitions() == []

    ingest.flush()

    assert table.puts == 2


def test_flush_of_chosen_partitions_only(ingest: Ingest, table: DictTable) -> None:
    """flush([p]) writes only p's record and leaves the others dirty."""
    ingest.handle([msg(lead("e1"), 0, partition=0), msg(lead("e2"), 0, partition=1)])

    ingest.flush([1, 9])

    assert list(table.data) == [1]
    assert ingest.dirty_partitions() == [0]


def test_positions_and_newest_event(ingest: Ingest) -> None:
    """positions() is the next offset per (topic, partition); newest_event() the max occurred_at."""
    ingest.handle(
        [
            msg(lead("e1", "2026-01-05T10:00:00Z"), 4, partition=0),
            msg(lead("e2", "2026-01-06T10:00:00Z"), 9, partition=1),
            msg(lead("e3", "2026-01-01T10:00:00Z"), 10, partition=1),
            msg(b"bad", 2, topic=BILLING, partition=1),
        ]
    )

    assert ingest.positions() == {(CRM, 0): 5, (CRM, 1): 11, (BILLING, 1): 3}
    assert ingest.newest_event() == 1767693600.0


def test_newest_event_is_none_before_any_event(ingest: Ingest) -> None:
    """With nothing applied, there is no newest event."""
    ingest.handle([msg(b"bad", 0)])

    assert ingest.newest_event() is None


# -- property --------------------------------------------------------------------------

values = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            json.dumps(lead("p1")).encode(),
            json.dumps(lead("p2")).encode(),
            json.dumps([lead("p1"), {"type": "x"}, lead("p3")]).encode(),
            json.dumps(
                ev("invoice.paid", "p4", account_id="a", amount="1", currency="EUR")
            ).encode(),
            b"[]",
        ]
    ),
)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.lists(
        st.tuples(st.sampled_from([CRM, BILLING]), st.integers(0, 2), st.integers(0, 6), values),
        max_size=12,
    )
)
def test_every_decoded_item_is_counted_exactly_once(config: Settings, batch: list[Any]) -> None:
    """Across any messages, applied + duplicate + rejected equals the items of new messages."""
    registry = CollectorRegistry()
    clock = Clock()
    metrics = OperationsMetrics(
        registry,
        config,
        watermark=lambda: clock.watermark,
        newest_event=lambda: clock.newest,
        wall_clock=lambda: clock.wall,
    )
    decoder = Decoder(currency="USD", lead_stages=["name"], opportunity_stages=["won"])
    ingest = Ingest(
        decoder=decoder,
        metrics=metrics,
        table=DictTable(),
        dead_letters=ListDeadLetters(),
        engine=NoEngine(),
        dedupe_horizon=HORIZON,
    )
    messages = [msg(v, o, topic=t, partition=p) for t, p, o, v in batch]
    seen: dict[tuple[str, int], int] = {}
    expected = 0
    for m in messages:
        if m.offset > seen.get((m.topic, m.partition), -1):
            seen[(m.topic, m.partition)] = m.offset
            expected += len(decoder.decode(m.value))

    ingest.handle(messages)
    ingest.flush()

    counts = _counters(registry)
    assert (
        counts["events"] + counts["rejected"] + counts["revmon_events_duplicate_total"] == expected
    )


class RoutingEngine(NoEngine):
    """Records what an engine would send onwards: (source, event id) per apply or reroute."""

    def __init__(self) -> None:
        self.source: tuple[str, int, int] = ("", -1, -1)
        self.sent: list[tuple[tuple[str, int, int], str]] = []

    def begin(self, topic: str, partition: int, offset: int) -> None:
        """Remember the message the next events come from."""
        self.source = (topic, partition, offset)

    def apply(self, event: Event, partition: int, newest: float | None = None) -> bool:
        """Send the event onwards."""
        self.sent.append((self.source, event.event_id))
        return False

    def reroute(self, event: Event, partition: int) -> None:
        """Send the event onwards again."""
        self.sent.append((self.source, event.event_id))


def test_a_reroute_after_restart_sends_exactly_what_the_first_pass_did(
    make_ingest: Callable[..., Ingest],
) -> None:
    """Duplicates and rejections in a batch were not applied: a restarted worker that skips
    the applied messages re-sends the applied events only, from the same source message."""
    first = RoutingEngine()
    worker = make_ingest(first)
    batch = [
        msg([lead("a"), lead("b")], 0),
        msg([lead("b"), {"type": "nope"}, lead("c"), lead("a")], 1),  # b and a: duplicates
        msg(lead("c"), 2),  # a duplicate message
    ]
    worker.handle(batch)
    worker.flush()

    restarted = RoutingEngine()
    again = make_ingest(restarted)
    again.handle(batch)  # redelivered: all applied before

    assert (
        restarted.sent
        == first.sent
        == [
            ((CRM, 0, 0), "a"),
            ((CRM, 0, 0), "b"),
            ((CRM, 0, 1), "c"),
        ]
    )


def fact(event_id: str, source: tuple[str, int, int, int], at: str = AT) -> bytes:
    """One account fact (an activity) as the accounts topic carries it."""
    account = "acc-1"
    event = EVENT_ADAPTER.validate_python(
        ev("activity.logged", event_id, at, account_id=account, kind="call", minutes=5)
    )
    return AccountFact(account, event, source).to_json()


class FactEngine:
    """The account stage's engine side: records the facts applied."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def account_ledgers(self, partition: int) -> dict[str, Records | Windows]:
        """No book containers."""
        return {}

    def account_recovered(self, partition: int) -> None:
        """Nothing to rebuild."""

    def account_forget(self, partitions: Iterable[int] | None = None) -> None:
        """Nothing to drop."""

    def account_apply(self, fact: AccountFact, partition: int) -> None:
        """Record the fact's event id."""
        self.applied.append(fact.event.event_id)


def test_the_account_stage_drops_re_sent_facts_by_source_position_whatever_their_age(
    table: DictTable,
) -> None:
    """A fact at or before the last position applied from its input partition was applied
    already (a re-route after a restart), even one far outside the dedupe horizon; other
    input partitions have positions of their own."""
    engine = FactEngine()
    stage = AccountIngest(table=table, engine=engine, dedupe_horizon=HORIZON)
    billing0, billing1 = ("billing", 0), ("billing", 1)

    def facts(offset: int, *items: bytes) -> Message:
        return Message("revmon-accounts", 0, offset, None, b"[" + b",".join(items) + b"]")

    stage.handle(
        [
            facts(0, fact("x1", (*billing0, 5, 0)), fact("x2", (*billing0, 5, 1))),
            # far later: the first facts fall out of the dedupe horizon
            facts(1, fact("y1", (*billing1, 3, 0), at="2030-01-01T00:00:00Z")),
        ]
    )
    stage.flush()
    restarted = AccountIngest(table=table, engine=engine, dedupe_horizon=HORIZON)
    restarted.handle(
        [
            # the re-route: the same facts again, then what came next
            facts(2, fact("x1", (*billing0, 5, 0)), fact("x2", (*billing0, 5, 1))),
            facts(3, fact("x3", (*billing0, 6, 0)), fact("y2", (*billing1, 2, 0))),
        ]
    )

    assert engine.applied == ["x1", "x2", "y1", "x3"]


@pytest.mark.parametrize(
    ("value", "kept", "truncated"),
    [
        pytest.param(b"[" + b" " * (2 * 1024 * 1024) + b"]", 64 * 1024, True, id="2-mib-message"),
        pytest.param(
            b"[" + b'{"x":"0123456789"},' * 10_000 + b"{}]", 64 * 1024, True, id="10001-elements"
        ),
        pytest.param(b"[" + b"{}," * 10_001 + b"{}]", 30_007, False, id="10001-small-elements"),
        pytest.param(b"{" * 1000, 1000, False, id="small-malformed"),
        pytest.param(b"{" * (1024 * 1024), 64 * 1024, True, id="1-mib-malformed"),
    ],
)
def test_dead_letter_of_a_large_message_keeps_its_first_64_kib(
    ingest: Ingest, dead: ListDeadLetters, value: bytes, kept: int, truncated: bool
) -> None:
    """A dead letter stays within 1 MiB: a too-large rejection carries 64 KiB and its size."""
    ingest.handle([msg(value, 7)])

    [(sent, rejection)] = dead.sent
    carried = dead_letter_value(rejection)
    headers = dict(dead_letter_headers(sent, rejection))
    assert carried == value[:kept]
    assert len(carried) + sum(len(k) + len(v) for k, v in headers.items()) < 1024 * 1024
    assert headers.get("revmon-truncated") == (str(len(value)).encode() if truncated else None)


class KeptEngine(MetricEngine):
    """The metric engine, keeping the containers of the last partition it was given."""

    kept: dict[str, Any]

    def ledgers(self, partition: int) -> dict[str, Any]:
        """Fresh books; their containers are kept for the test to read."""
        self.kept = super().ledgers(partition)
        return self.kept


def test_a_snapshot_forgets_closed_entities_and_a_recovered_worker_agrees(
    make_ingest: Callable[..., Ingest],
) -> None:
    """Closed leads `closed_retention` behind every topic's newest event are dropped at the
    snapshot, and what the snapshot holds is what a restarted worker recovers."""
    config = load_settings(None, closed_retention="365d")
    worker_engine = KeptEngine(config)
    worker = make_ingest(worker_engine, snapshot_every=1)
    old = "2025-01-01T00:00:00Z"
    year_later = "2026-01-05T00:00:00Z"  # 369 days after the close
    worker.handle(
        [
            msg(ev("lead.created", "e1", old, lead_id="closed"), 0),
            msg(ev("lead.stage_changed", "e2", "2025-01-02T00:00:00Z", lead_id="closed",
                   stage="disqualified"), 1),
            msg(ev("lead.created", "e3", old, lead_id="open"), 2),
            msg(ev("lead.created", "e4", year_later, lead_id="new"), 3),
        ]
    )  # fmt: skip
    worker.flush()
    leads = worker_engine.kept["funnel.lead"]
    assert {key for key, _ in leads.items()} == {"open", "new"}

    restarted_engine = KeptEngine(config)
    make_ingest(restarted_engine).state(0)
    recovered = restarted_engine.kept["funnel.lead"]
    assert dict(recovered.items()) == dict(leads.items())


def test_a_snapshot_waits_for_the_slowest_topic_before_forgetting(
    make_ingest: Callable[..., Ingest],
) -> None:
    """An event on a topic that is behind could still find the entity: it is kept until
    every topic's newest event is past the retention."""
    config = load_settings(None, closed_retention="365d")
    engine = KeptEngine(config)
    worker = make_ingest(engine, snapshot_every=1)
    worker.handle(
        [
            msg(ev("lead.created", "e1", "2025-01-01T00:00:00Z", lead_id="closed",
                   stage="sql"), 0),
            msg(ev("lead.stage_changed", "e2", "2025-01-02T00:00:00Z", lead_id="closed",
                   stage="opportunity"), 1),
            msg(ev("expense.recorded", "e3", "2025-06-01T00:00:00Z", category="tools",
                   amount=5), 0, topic=BILLING),
            msg(ev("lead.created", "e4", "2026-06-01T00:00:00Z", lead_id="new"), 2),
        ]
    )  # fmt: skip
    worker.flush()
    assert {key for key, _ in engine.kept["funnel.lead"].items()} == {"closed", "new"}

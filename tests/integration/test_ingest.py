"""Ingest against the real broker: dead letters, batches, duplicates across a worker restart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from revmon import app as app_module
from revmon.app import Revmon
from revmon.broker import Connection, EmbeddedBroker, ensure_topics
from revmon.settings import Settings
from revmon.worker import run_until
from tests.conftest import isolated_settings

pytestmark = pytest.mark.integration


def event(event_id: str, **fields: Any) -> dict[str, Any]:
    """A valid lead.created event unless `fields` say otherwise."""
    base = {
        "event_id": event_id,
        "type": "lead.created",
        "occurred_at": "2026-03-01T10:00:00Z",
        "lead_id": f"lead-{event_id}",
    }
    return {**base, **fields}


async def setup_topics(settings: Settings) -> Connection:
    """Create the test's topics up front (Tansu would auto-create them with 4 partitions)."""
    connection = Connection(settings.bootstrap_servers or "", settings.kafka)
    topics = settings.topics
    await ensure_topics(connection, [*topics.inputs, topics.dead_letter], settings.partitions)
    return connection


async def send(
    connection: Connection, topic: str, values: Sequence[bytes], partition: int = 0
) -> int:
    """Send raw values to one partition; returns the last acknowledged offset."""
    producer = AIOKafkaProducer(**connection.aiokafka_options())
    await producer.start()
    try:
        last = -1
        for value in values:
            meta = await producer.send_and_wait(topic, value=value, key=b"k", partition=partition)
            last = meta.offset
        return last
    finally:
        await producer.stop()


async def read_all(connection: Connection, topic: str, partitions: int, expect: int) -> list[Any]:
    """Read `topic` from the start until `expect` records arrived (bounded)."""
    consumer = AIOKafkaConsumer(**connection.aiokafka_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        for _ in range(100):
            batch = await consumer.getmany(timeout_ms=100)
            records.extend(r for rs in batch.values() for r in rs)
            if len(records) >= expect:
                break
        return records
    finally:
        await consumer.stop()


async def process(settings: Settings, connection: Connection, topic: str, last: int) -> Revmon:
    """Run a fresh worker until it has applied input up to offset `last` of partition 0."""
    revmon = app_module.build(settings, connection)
    done = await run_until(
        revmon, lambda: revmon.ingest.positions().get((topic, 0), 0) > last, limit=60
    )
    assert done, "the worker did not catch up"
    return revmon


def sample(revmon: Revmon, name: str, **labels: str) -> float:
    """A sample's value from the worker's registry (0 when absent)."""
    return revmon.registry.get_sample_value(name, labels) or 0.0


async def test_rejections_are_dead_lettered_unchanged_with_headers(broker: EmbeddedBroker) -> None:
    """Each bad message lands on the dead-letter topic as its original bytes with 4 headers."""
    settings = isolated_settings(broker.bootstrap_servers)
    connection = await setup_topics(settings)
    topic = settings.topics.crm
    bad = [b"not json", b'{"type": "nope"}', orjson.dumps(event("e1", currency="EUR"))]
    last = await send(connection, topic, [*bad, orjson.dumps(event("ok"))])
    revmon = await process(settings, connection, topic, last)

    assert sample(revmon, "revmon_events_total", type="lead.created") == 1
    reasons = ("malformed_json", "unknown_type", "currency_mismatch")
    for reason in reasons:
        assert sample(revmon, "revmon_events_rejected_total", reason=reason) == 1
    records = await read_all(connection, settings.topics.dead_letter, settings.partitions, 3)
    got = sorted((r.value, dict(r.headers)) for r in records)
    want = sorted(
        (
            value,
            {
                "revmon-reason": reason.encode(),
                "revmon-source-topic": topic.encode(),
                "revmon-source-partition": b"0",
                "revmon-source-offset": str(offset).encode(),
            },
        )
        for offset, (value, reason) in enumerate(zip(bad, reasons, strict=True))
    )
    assert got == want


async def test_batch_with_one_bad_element_applies_the_rest(broker: EmbeddedBroker) -> None:
    """In a batch each element is judged alone: the bad one is dead-lettered, the rest apply."""
    settings = isolated_settings(broker.bootstrap_servers)
    connection = await setup_topics(settings)
    topic = settings.topics.crm
    elements = [event("b1"), event("b2", stage="bogus"), event("b3")]
    last = await send(connection, topic, [orjson.dumps(elements)])
    revmon = await process(settings, connection, topic, last)

    assert sample(revmon, "revmon_events_total", type="lead.created") == 2
    assert sample(revmon, "revmon_events_rejected_total", reason="invalid_field") == 1
    [record] = await read_all(connection, settings.topics.dead_letter, settings.partitions, 1)
    assert orjson.loads(record.value) == elements[1]
    headers = dict(record.headers)
    assert headers["revmon-reason"] == b"invalid_field"
    assert headers["revmon-batch-index"] == b"1"


async def test_duplicate_is_recognised_across_a_worker_restart(broker: EmbeddedBroker) -> None:
    """The dedupe memory is state: a new worker on the same group knows the ids already applied."""
    settings = isolated_settings(broker.bootstrap_servers)
    connection = await setup_topics(settings)
    topic = settings.topics.crm
    first = [orjson.dumps(event(f"d{i}")) for i in range(50)]
    last = await send(connection, topic, first)
    before = await process(settings, connection, topic, last)
    assert sample(before, "revmon_events_total", type="lead.created") == 50

    last = await send(connection, topic, [first[7], orjson.dumps(event("new"))])
    after = await process(settings, connection, topic, last)

    assert sample(after, "revmon_events_duplicate_total") == 1
    # Nothing of the first run is applied again by the restarted worker.
    assert sample(after, "revmon_events_total", type="lead.created") == 1

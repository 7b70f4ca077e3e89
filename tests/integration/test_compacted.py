"""Reading a compacted topic as a table, to its true end, on the real broker."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from revmon.broker import Connection, EmbeddedBroker, ensure_topics
from revmon.compacted import read_table
from revmon.settings import KafkaSecurity

pytestmark = pytest.mark.integration


def test_read_table_keeps_the_last_value_per_key_and_drops_tombstones(
    broker: EmbeddedBroker,
) -> None:
    """Every record up to the true end is read: the last batch's tail too; tombstones delete."""
    connection = Connection(broker.bootstrap_servers, KafkaSecurity())
    topic = f"t{uuid.uuid4().hex[:10]}.table"

    async def go() -> dict[bytes, bytes]:
        await ensure_topics(connection, [topic], 2, compacted=[topic])
        producer = AIOKafkaProducer(**connection.aiokafka_options(), linger_ms=50)
        await producer.start()
        try:
            for i in range(30):
                producer_key = f"k{i % 7}".encode()
                await producer.send(topic, f"v{i}".encode(), key=producer_key)
            await producer.send(topic, None, key=b"k0")
            # A batch of several records last: Tansu reports its base offset + 1 as the end.
            futures = [await producer.send(topic, f"w{i}".encode(), key=b"k6") for i in range(5)]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return await read_table(connection, topic)

    table = asyncio.run(go())
    assert b"k0" not in table
    assert table[b"k6"] == b"w4"
    assert table[b"k1"] == b"v29"
    assert set(table) == {f"k{i}".encode() for i in range(1, 7)}


def test_read_table_of_an_empty_topic_is_empty(broker: EmbeddedBroker) -> None:
    """A topic with nothing on it reads as an empty table, at once."""
    connection = Connection(broker.bootstrap_servers, KafkaSecurity())
    topic = f"t{uuid.uuid4().hex[:10]}.empty"

    async def go() -> dict[bytes, bytes]:
        await ensure_topics(connection, [topic], 2, compacted=[topic])
        return await read_table(connection, topic)

    assert asyncio.run(go()) == {}

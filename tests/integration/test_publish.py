"""The metrics publisher on the real broker: changes, deletions, takeover, record size."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError

from revmon.broker import MAX_RECORD_BYTES, Connection, EmbeddedBroker, ensure_topics
from revmon.compacted import read_table
from revmon.endoffsets import true_end_offsets
from revmon.kpi.ledger import Evaluation, Sample
from revmon.publish import Publisher
from revmon.schemas import MetricMessage
from revmon.settings import KafkaSecurity

pytestmark = pytest.mark.integration

Record = tuple[str, float | None] | tuple[str, str]  # (key, value) or (key, "tombstone")


class Source:
    """An evaluation the test changes between rounds (None: not the writer)."""

    def __init__(self) -> None:
        self.evaluation: Evaluation | None = None

    def set(self, now: float, **values: float) -> None:
        """The series `revmon_x{id=<name>}` with these values at `now`."""
        samples = [Sample("revmon_x", (("id", k),), v) for k, v in values.items()]
        self.evaluation = Evaluation(now, samples)

    def __call__(self) -> Evaluation | None:
        return self.evaluation


async def _log(connection: Connection, topic: str) -> list[Record]:
    """Every record on the topic, in order, as (key, value) or (key, "tombstone")."""
    consumer = AIOKafkaConsumer(
        **connection.aiokafka_options(), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    out: list[Record] = []
    try:
        tp = TopicPartition(topic, 0)
        end = (await true_end_offsets(connection.aiokafka_options(), [tp]))[tp]
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        while await consumer.position(tp) < end:
            for records in (await consumer.getmany(tp, timeout_ms=500)).values():
                for record in records:
                    key = record.key.decode()
                    if record.value is None:
                        out.append((key, "tombstone"))
                    else:
                        message = MetricMessage.model_validate_json(record.value)
                        out.append((key, message.value))
    finally:
        await consumer.stop()
    return out


def _publisher(connection: Connection, topic: str, source: Source, counted: list[int]) -> Publisher:
    return Publisher(
        connection,
        topic,
        evaluate=source,
        interval=3600,  # rounds are driven by the test
        sent=counted.append,
        wall_clock=lambda: 1_790_000_000.0,
    )


async def _round(publisher: Publisher) -> int:
    return await publisher.publish()


def _run(connection: Connection, go: Callable[[str], object]) -> object:
    topic = f"t{uuid.uuid4().hex[:10]}.metrics"

    async def main() -> object:
        await ensure_topics(connection, [topic], 1, compacted=[topic])
        return await go(topic)  # type: ignore[misc]

    return asyncio.run(main())


def test_changes_only_then_null_and_tombstone_then_a_full_send_after_takeover(
    broker: EmbeddedBroker,
) -> None:
    """Changes only; gone series nulled then tombstoned; a new owner re-sends all, deletes."""
    connection = Connection(broker.bootstrap_servers, KafkaSecurity())
    counted: list[int] = []

    async def go(topic: str) -> tuple[list[Record], dict[bytes, bytes]]:
        source = Source()
        first = _publisher(connection, topic, source, counted)
        await first.start()
        try:
            source.set(100.0, a=1.0, b=2.0, c=3.0)
            assert await _round(first) == 4  # three series and the watermark
            assert await _round(first) == 0  # nothing changed
            source.set(100.0, a=1.0, b=5.0)
            assert await _round(first) == 3  # b changed; c: null + tombstone
            source.evaluation = None  # ownership moved away
            assert await _round(first) == 0
        finally:
            await first.stop()
        taker = Source()
        taker.set(200.0, a=1.0, d=4.0)
        second = _publisher(connection, topic, taker, counted)
        await second.start()
        try:
            assert await _round(second) == 5  # a, d, watermark; b: null + tombstone
        finally:
            await second.stop()
        return await _log(connection, topic), await read_table(connection, topic)

    log, table = _run(connection, go)  # type: ignore[misc]
    x = 'revmon_x{id="%s"}'
    watermark = "revmon_watermark_seconds"
    assert log == [
        *[(x % "a", 1.0), (x % "b", 2.0), (x % "c", 3.0), (watermark, 100.0)],
        *[(x % "b", 5.0), (x % "c", None), (x % "c", "tombstone")],
        *[(x % "a", 1.0), (x % "d", 4.0), (watermark, 200.0)],
        *[(x % "b", None), (x % "b", "tombstone")],
    ]
    materialized = {k.decode(): orjson.loads(v)["value"] for k, v in table.items()}
    assert materialized == {x % "a": 1.0, x % "d": 4.0, watermark: 200.0}
    assert sum(counted) == len(log)


def test_a_record_over_one_mebibyte_is_refused_by_the_publisher_producer(
    broker: EmbeddedBroker,
) -> None:
    """The publisher's producer refuses records over 1 MiB, the broker default limit."""
    connection = Connection(broker.bootstrap_servers, KafkaSecurity())

    async def go(topic: str) -> None:
        publisher = _publisher(connection, topic, Source(), [])
        await publisher.start()
        try:
            with pytest.raises(MessageSizeTooLargeError):
                await publisher._record("big", b"x" * (MAX_RECORD_BYTES + 1))
        finally:
            await publisher.stop()

    _run(connection, go)

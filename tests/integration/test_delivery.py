"""Batch delivery on the real broker: order, batch bounds, commits, failures, Faust's own path."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from revmon.broker import Connection, EmbeddedBroker, ensure_topics
from revmon.delivery import BatchConsumer, use_batch_delivery
from revmon.settings import load_settings

pytestmark = pytest.mark.integration

PARTITIONS = 2


def unique(prefix: str) -> str:
    """A topic or group name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def make_app(servers: str, group: str) -> faust.App:
    """A Faust app that joins its one-member group quickly."""
    return faust.App(
        group,
        broker=f"kafka://{servers}",
        store="memory://",
        web_enabled=False,
        datadir=tempfile.mkdtemp(),
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        broker_rebalance_timeout=2,
        topic_partitions=PARTITIONS,
        consumer_auto_offset_reset="earliest",
        table_standby_replicas=0,
        autodiscover=False,
    )


async def produce(servers: str, topic: str, count: int, start: int = 0) -> None:
    """`count` messages, values `start`.., spread over the partitions by key."""
    producer = AIOKafkaProducer(bootstrap_servers=servers)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=str(i % 7).encode(), value=str(i).encode())
            for i in range(start, start + count)
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def committed(servers: str, group: str, topic: str) -> dict[int, int | None]:
    """The group's committed offset of each partition of `topic`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)}
    finally:
        await consumer.stop()


async def run_until(app: faust.App, done: Callable[[], bool], limit: float = 60.0) -> None:
    """Start `app`, wait until `done()` (or fail after `limit` seconds), stop it."""
    await app.start()
    try:
        deadline = time.monotonic() + limit
        while not done():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)
    finally:
        await app.stop()


@pytest.fixture
def servers(broker: EmbeddedBroker) -> str:
    """The session broker's address."""
    return broker.bootstrap_servers


async def test_fetched_input_reaches_the_handler_in_order_in_bounded_batches(
    servers: str,
) -> None:
    """Every message once, in partition order, at most `max_batch` per call; offsets committed;
    a topic without a handler still goes through Faust's agent, in the same app."""
    batched, streamed = unique("batched"), unique("streamed")
    connection = Connection(servers, load_settings().kafka)
    await ensure_topics(connection, [batched, streamed], PARTITIONS)
    await produce(servers, batched, 3000)
    await produce(servers, streamed, 50)
    group = unique("delivery")
    app = make_app(servers, group)
    calls: list[list[tuple[int, int, bytes]]] = []
    agent_values: list[bytes] = []

    def handler(messages: Sequence[Any]) -> None:
        calls.append([(m.partition, m.offset, m.value) for m in messages])

    async def agent(stream: Any) -> None:
        async for value in stream:
            agent_values.append(value)

    app.agent(app.topic(streamed, value_serializer="raw"), name="plain")(agent)
    use_batch_delivery(app, [(app.topic(batched), handler)], max_batch=400)
    assert isinstance(app.consumer, BatchConsumer)

    def received() -> int:
        return sum(len(call) for call in calls)

    await run_until(app, lambda: received() >= 3000 and len(agent_values) >= 50)

    assert max(len(call) for call in calls) <= 400
    by_partition: dict[int, list[int]] = {}
    values = []
    for call in calls:
        for partition, offset, value in call:
            by_partition.setdefault(partition, []).append(offset)
            values.append(int(value))
    assert sorted(values) == list(range(3000))
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # in order, none twice, none skipped
    assert sorted(agent_values, key=int) == [str(i).encode() for i in range(50)]
    ends = {p: len(offsets) for p, offsets in by_partition.items()}
    assert await committed(servers, group, batched) == ends

    # The same group again: only what came after the commit.
    await produce(servers, batched, 10, start=3000)
    calls.clear()
    again = make_app(servers, group)
    use_batch_delivery(again, [(again.topic(batched), handler)], max_batch=400)
    await run_until(again, lambda: received() >= 10)
    await asyncio.sleep(1.0)  # anything re-delivered would arrive by now
    assert sorted(int(v) for call in calls for _, _, v in call) == list(range(3000, 3010))


async def test_a_failing_handler_acknowledges_nothing(servers: str) -> None:
    """A handler that raises crashes the consumer with no commit; the input is read again."""
    topic = unique("failing")
    connection = Connection(servers, load_settings().kafka)
    await ensure_topics(connection, [topic], PARTITIONS)
    await produce(servers, topic, 100)
    group = unique("failing")
    app = make_app(servers, group)
    attempts: list[int] = []

    def failing(messages: Sequence[Any]) -> None:
        attempts.append(len(messages))
        raise RuntimeError("engine bug")

    use_batch_delivery(app, [(app.topic(topic), failing)], max_batch=1000)
    await run_until(app, lambda: bool(app.crashed))  # the worker stops, it does not skip
    assert attempts
    assert await committed(servers, group, topic) == dict.fromkeys(range(PARTITIONS))

    seen: list[bytes] = []
    again = make_app(servers, group)
    use_batch_delivery(
        again, [(again.topic(topic), lambda ms: seen.extend(m.value for m in ms))], max_batch=1000
    )
    await run_until(again, lambda: len(seen) >= 100)
    assert sorted(seen, key=int) == [str(i).encode() for i in range(100)]


async def test_a_batch_ends_at_max_bytes(servers: str) -> None:
    """Large messages (a producer's event batches) make smaller batches, none left out."""
    topic = unique("large")
    connection = Connection(servers, load_settings().kafka)
    await ensure_topics(connection, [topic], PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=servers, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        value = b"x" * 100_000
        futures = [await producer.send(topic, value=value, partition=0) for _ in range(20)]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    app = make_app(servers, unique("large"))
    sizes: list[int] = []
    use_batch_delivery(
        app,
        [(app.topic(topic), lambda ms: sizes.append(len(ms)))],
        max_batch=1000,
        max_bytes=250_000,
    )
    await run_until(app, lambda: sum(sizes) >= 20)
    assert sum(sizes) == 20
    assert max(sizes) <= 3  # the third message's bytes reach the bound


def offsets_by_partition(calls: Calls) -> dict[int, list[int]]:
    """The offsets each partition's messages reached the handler with, in order."""
    out: dict[int, list[int]] = {}
    for call in calls:
        for partition, offset, _ in call:
            out.setdefault(partition, []).append(offset)
    return out


Calls = list[list[tuple[int, int, bytes]]]


async def recording_app(
    servers: str, name: str, count: int, max_batch: int
) -> tuple[str, str, faust.App, Calls]:
    """A fresh topic with `count` messages and an app delivering it in batches to a handler
    that records (partition, offset, value) per call: (topic, group, app, calls)."""
    topic, group = unique(name), unique(name)
    connection = Connection(servers, load_settings().kafka)
    await ensure_topics(connection, [topic], PARTITIONS)
    await produce(servers, topic, count)
    app = make_app(servers, group)
    calls: Calls = []

    def record(messages: Sequence[Any]) -> None:
        calls.append([(m.partition, m.offset, m.value) for m in messages])

    use_batch_delivery(app, [(app.topic(topic), record)], max_batch=max_batch)
    return topic, group, app, calls


async def test_records_faust_drops_on_the_way_are_read_again(servers: str) -> None:
    """Faust's `getmany` drops fetched records in places (flow stopped, generation changed);
    here one fetch's records of a partition with nothing committed vanish on the way: the
    handler still gets every offset once, in order, and the commits reach the end."""
    topic, group, app, calls = await recording_app(servers, "dropped", 2000, max_batch=100)
    consumer = app.consumer
    stock_getmany = consumer.getmany
    dropped: list[int] = []

    async def lossy_getmany(**kwargs: Any) -> Any:
        async for tp, message in stock_getmany(**kwargs):
            if (
                tp.partition == 1
                and not calls
                and (not dropped or message.offset == dropped[-1] + 1)
            ):
                dropped.append(message.offset)  # the first fetch of partition 1 never arrives
                continue
            yield tp, message

    consumer.getmany = lossy_getmany

    def received() -> int:
        return sum(len(call) for call in calls)

    await run_until(app, lambda: received() >= 2000, limit=90)
    await asyncio.sleep(1.0)  # anything delivered twice would arrive by now

    assert dropped  # the loss did happen...
    assert dropped[0] == 0  # ...from the partition's start, with nothing committed
    by_partition = offsets_by_partition(calls)
    for offsets in by_partition.values():
        assert offsets == list(range(len(offsets)))  # none skipped, none twice
    assert sum(len(offsets) for offsets in by_partition.values()) == 2000
    ends = {p: len(offsets) for p, offsets in by_partition.items()}
    assert await committed(servers, group, topic) == ends


async def test_the_seek_after_a_rebalance_rereads_every_partition_from_its_commit(
    servers: str,
) -> None:
    """After the seek Faust makes once partitions are assigned (and after dropping a fetch),
    a partition with nothing committed is read again from its beginning, one with a commit
    from the commit; stale commit bookkeeping is replaced by the group's real offsets."""
    topic, group, app, calls = await recording_app(servers, "seek", 400, max_batch=1000)

    def received() -> int:
        return sum(len(call) for call in calls)

    await app.start()
    try:
        deadline = time.monotonic() + 60
        while received() < 400:
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.05)
        ends = {p: len(o) for p, o in offsets_by_partition(calls).items()}
        consumer = app.consumer
        # Commit partition 0 only, at 50; partition 1 has nothing committed.
        tp0 = next(tp for tp in consumer.assignment() if tp.topic == topic and tp.partition == 0)
        tp1 = next(tp for tp in consumer.assignment() if tp.topic == topic and tp.partition == 1)
        await consumer._commit({tp0: 50})
        consumer._committed_offset[tp1] = 10**6  # stale: written back after a revocation
        calls.clear()
        await consumer.perform_seek()
        deadline = time.monotonic() + 30
        while received() < ends[0] - 50 + ends[1]:
            assert time.monotonic() < deadline, f"not read again: {offsets_by_partition(calls)}"
            await asyncio.sleep(0.05)
        again = offsets_by_partition(calls)
        assert again[0] == list(range(50, ends[0]))
        assert again[1] == list(range(ends[1]))
        await consumer.commit()
        assert await committed(servers, group, topic) == ends
    finally:
        await app.stop()

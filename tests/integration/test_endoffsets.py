"""True end offsets on Tansu, and Faust table recovery that reads every changelog record."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.endoffsets import (
    TrueEndConsumer,
    probe_end_offsets,
    true_end_offsets,
    use_true_end_offsets,
)
from revmon.errors import BrokerError
from revmon.settings import load_settings

pytestmark = pytest.mark.integration

PARTITIONS = 4
UPDATES = 20_000


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    """One Tansu broker for the whole module."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture
def connection(broker: EmbeddedBroker) -> Connection:
    """Client settings for the module's broker."""
    return Connection(broker.bootstrap_servers, load_settings().kafka)


@pytest_asyncio.fixture(loop_scope="function")
async def producer(connection: Connection) -> AsyncIterator[AIOKafkaProducer]:
    """A started producer that sends every single message in a batch of its own."""
    started = AIOKafkaProducer(**connection.aiokafka_options(), linger_ms=0)
    await started.start()
    try:
        yield started
    finally:
        await started.stop()


def unique(prefix: str) -> str:
    """A topic or app name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def send_batch(
    producer: AIOKafkaProducer, topic: str, partition: int, records: list[tuple[bytes, bytes]]
) -> int:
    """Send `records` as record batches (as many as needed), wait for them; the count sent."""
    futures = []
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            assert batch.append(key=key, value=value, timestamp=None) is not None
    batch.close()
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    await asyncio.gather(*futures)
    return len(records)


async def read_to_end(connection: Connection, tp: TopicPartition) -> tuple[int, int | None]:
    """Records in `tp`, read from the beginning until a fetch is empty, and the fetch highwater."""
    consumer = AIOKafkaConsumer(
        **connection.aiokafka_options(),
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        count = 0
        while fetched := await consumer.getmany(tp, timeout_ms=500):
            count += sum(len(records) for records in fetched.values())
        return count, consumer.highwater(tp)
    finally:
        await consumer.stop()


async def test_true_end_offsets_counts_what_end_offsets_misses(
    connection: Connection, producer: AIOKafkaProducer
) -> None:
    """`true_end_offsets` counts every record; Tansu's `end_offsets` stops at the last batch."""
    topic = unique("ends")
    await ensure_topics(connection, [topic], PARTITIONS)
    mixed, singles, batches, empty = (TopicPartition(topic, p) for p in range(PARTITIONS))
    for i in range(5):
        await producer.send_and_wait(topic, b"single-%d" % i, partition=mixed.partition)
    await send_batch(producer, topic, mixed.partition, [(b"k", b"v%d" % i) for i in range(10)])
    for i in range(7):
        await producer.send_and_wait(topic, b"single-%d" % i, partition=singles.partition)
    big = [(b"key-%d" % i, b"x" * 200) for i in range(1_000)]  # several batches of 16 kB
    await send_batch(producer, topic, batches.partition, big)
    tps = [mixed, singles, batches, empty]

    reported = await _reported_end_offsets(connection, tps)
    started = time.monotonic()
    true = await true_end_offsets(connection.aiokafka_options(), tps)
    elapsed = time.monotonic() - started

    assert reported[mixed] == 6  # the trap: base offset of the last batch + 1, not 15
    assert reported[batches] < 1_000
    assert true == {mixed: 15, singles: 7, batches: 1_000, empty: 0}
    assert true[singles] == reported[singles]  # where the broker is right, the same answer
    for tp in (mixed, batches):
        # Every record is there; and the highwater of a fetch response, which the probe
        # relies on, is right on Tansu (only ListOffsets is wrong).
        assert await read_to_end(connection, tp) == (true[tp], true[tp])
    assert elapsed < 5.0


async def _reported_end_offsets(
    connection: Connection, tps: list[TopicPartition]
) -> dict[TopicPartition, int]:
    """What ListOffsets(latest) says, through aiokafka's `end_offsets`."""
    consumer = AIOKafkaConsumer(**connection.aiokafka_options(), group_id=None)
    await consumer.start()
    try:
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def test_probe_end_offsets_reuses_a_consumer(
    connection: Connection, producer: AIOKafkaProducer
) -> None:
    """`probe_end_offsets` works on an existing groupless consumer, again after more writes."""
    topic = unique("probe")
    await ensure_topics(connection, [topic], 1)
    tp = TopicPartition(topic, 0)
    consumer = AIOKafkaConsumer(
        **connection.aiokafka_options(), group_id=None, enable_auto_commit=False
    )
    await consumer.start()
    try:
        assert await probe_end_offsets(consumer, [tp]) == {tp: 0}
        await send_batch(producer, topic, 0, [(b"k", b"a%d" % i) for i in range(20)])
        assert await probe_end_offsets(consumer, [tp, tp]) == {tp: 20}
        await producer.send_and_wait(topic, b"one more", partition=0)
        await send_batch(producer, topic, 0, [(b"k", b"b%d" % i) for i in range(30)])
        assert await probe_end_offsets(consumer, [tp]) == {tp: 51}
    finally:
        await consumer.stop()


async def test_true_end_offsets_ends_while_the_partition_is_written_to(
    connection: Connection, producer: AIOKafkaProducer
) -> None:
    """The probe does not chase a partition being written to: it ends with an end in between."""
    topic = unique("busy")
    await ensure_topics(connection, [topic], 1)
    tp = TopicPartition(topic, 0)
    acked = 0
    warm, stop = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        nonlocal acked
        while not stop.is_set():
            acked += await send_batch(producer, topic, 0, [(b"k", b"v")] * 10)
            if acked >= 200:
                warm.set()
            await asyncio.sleep(0.005)

    writer = asyncio.create_task(write())
    try:
        await warm.wait()
        before = acked
        end = (await true_end_offsets(connection.aiokafka_options(), [tp], time_limit=5.0))[tp]
        after = acked
    finally:
        stop.set()
        await writer
    assert before <= end <= after + 10


async def test_true_end_offsets_gives_up_at_its_time_limit(connection: Connection) -> None:
    """A probe that runs out of time raises BrokerError and leaves no open consumer behind."""
    with pytest.raises(BrokerError, match="not found within"):
        await true_end_offsets(
            connection.aiokafka_options(), [TopicPartition("anything", 0)], time_limit=0.001
        )


async def test_true_end_offsets_fails_in_bounded_time_without_a_broker() -> None:
    """With no broker listening, `true_end_offsets` raises BrokerError within its time limit."""
    options = {"bootstrap_servers": f"127.0.0.1:{free_port()}"}
    started = time.monotonic()
    with pytest.raises(BrokerError):
        await true_end_offsets(options, [TopicPartition("nowhere", 0)], time_limit=2.0)
    assert time.monotonic() - started < 5.0


def test_use_true_end_offsets_is_scoped_to_one_app_and_refuses_a_started_one(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """Only the app passed in gets the probing consumer; once it has a consumer it is too late."""
    url = f"kafka://{broker.bootstrap_servers}"
    fixed = faust.App(unique("scoped"), broker=url, datadir=str(tmp_path / "a"))
    other = faust.App(unique("scoped"), broker=url, datadir=str(tmp_path / "b"))
    late = faust.App(unique("scoped"), broker=url, datadir=str(tmp_path / "c"))
    use_true_end_offsets(fixed)
    use_true_end_offsets(fixed)  # idempotent

    assert fixed.transport.Consumer is TrueEndConsumer
    assert not issubclass(other.transport.Consumer, TrueEndConsumer)
    consumer = late.consumer
    try:
        with pytest.raises(RuntimeError, match="before the app starts"):
            use_true_end_offsets(late)
    finally:
        # A consumer that never started still owns its thread's event loop.
        consumer._thread.thread_loop.close()


async def write_changelog(producer: AIOKafkaProducer, topic: str, updates: int) -> None:
    """`updates` table updates ("k<i>" -> i) as Faust writes them, in multi-record batches."""
    for partition in range(PARTITIONS):
        records = [
            (json.dumps(f"k{i}").encode(), json.dumps(i).encode())
            for i in range(partition, updates, PARTITIONS)
        ]
        await send_batch(producer, topic, partition, records)


async def recover_table(servers: str, app_id: str, datadir: Path, *, fix: bool) -> dict[Any, Any]:
    """Start a fresh Faust worker for `app_id`, let it recover table `counts`, stop it."""
    app = faust.App(
        app_id,
        broker=f"kafka://{servers}",
        store="memory://",
        datadir=str(datadir),
        web_enabled=False,
        topic_partitions=PARTITIONS,
        table_standby_replicas=0,
        key_serializer="json",
        value_serializer="json",
        broker_session_timeout=3.0,
        broker_heartbeat_interval=0.5,
        broker_rebalance_timeout=3.0,
    )
    table = app.Table("counts", default=int, partitions=PARTITIONS, key_type=str, value_type=int)
    if fix:
        use_true_end_offsets(app)
        use_true_end_offsets(app)  # a second call changes nothing
    try:
        async with asyncio.timeout(40):
            await app.start()  # returns once table recovery has completed (or crashed)
        assert app.crash_reason is None
        assert isinstance(app.consumer, TrueEndConsumer) is fix
        return dict(table.data)
    finally:
        await app.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def changelog(connection: Connection, producer: AIOKafkaProducer) -> str:
    """A Faust app id whose table `counts` has UPDATES updates in its changelog."""
    app_id = unique("recovery")
    topic = f"{app_id}-counts-changelog"
    await ensure_topics(connection, [topic], PARTITIONS, compacted=[topic])
    await write_changelog(producer, topic, UPDATES)
    return app_id


async def test_faust_recovery_with_true_end_offsets_is_exact(
    broker: EmbeddedBroker, changelog: str, tmp_path: Path
) -> None:
    """A fresh worker with `use_true_end_offsets` recovers every key and value."""
    table = await recover_table(broker.bootstrap_servers, changelog, tmp_path, fix=True)

    assert len(table) == UPDATES
    assert table == {f"k{i}": i for i in range(UPDATES)}


async def test_faust_recovery_without_the_fix_comes_up_short_on_tansu(
    broker: EmbeddedBroker, changelog: str, tmp_path: Path
) -> None:
    """Without the fix, Faust stops at Tansu's short end offsets and loses updates."""
    table = await recover_table(broker.bootstrap_servers, changelog, tmp_path, fix=False)

    assert 0 < len(table) < UPDATES

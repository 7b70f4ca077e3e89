"""Every record a worker writes stays within Kafka's default 1 MiB, whatever its input (SPEC §9).

The test broker (Tansu) accepts records of any size; real Kafka refuses those over
`max.message.bytes`. The worker's producers enforce the 1 MiB limit on the client
(`max_request_size`), so an oversize record crashes the worker here as it would on Kafka,
and the changelog is read back to check every record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.endoffsets import true_end_offsets
from revmon.settings import load_settings
from revmon.state import RECORD_LIMIT
from tests.e2e.workers import (
    Series,
    applied,
    scrape,
    settled,
    start,
    state_metrics,
    write_config,
)

pytestmark = pytest.mark.e2e

BULK = 3_000  # opportunities in one message, as a bulk load sends them (~0.96 MB)


def bulk_message(first: int) -> bytes:
    """One JSON array of `BULK` new opportunities, just under the 1 MiB input limit."""
    events = [
        {
            "event_id": f"bulk-{n:07d}",
            "type": "opportunity.created",
            "occurred_at": f"2025-01-01T{n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}Z",
            "source": "salesforce",
            "opportunity_id": f"opp-bulk-{n:07d}",
            "amount": "19800.00",
            "kind": "new_business",
            "stage": "proposal",
            "expected_close_date": "2025-02-12",
            "channel": "paid_search",
            "account_id": f"acct-bulk-{n % 500:05d}",
        }
        for n in range(first, first + BULK)
    ]
    return orjson.dumps(events)


async def produce(connection: Connection, topic: str, values: list[bytes]) -> None:
    """Send `values` to partition 0 of `topic` with Kafka's default 1 MiB limit enforced."""
    producer = AIOKafkaProducer(
        **connection.aiokafka_options(), max_request_size=RECORD_LIMIT, acks="all"
    )
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, partition=0)
    finally:
        await producer.stop()


async def largest_records(connection: Connection, topics: list[str]) -> dict[str, int]:
    """The largest record (key + value + headers) of each topic, read to its true end."""
    options = connection.aiokafka_options()
    tps = [TopicPartition(t, p) for t in topics for p in range(2)]
    ends = await true_end_offsets(options, tps)
    consumer = AIOKafkaConsumer(
        **options, group_id=None, enable_auto_commit=False, max_partition_fetch_bytes=16 << 20
    )
    await consumer.start()
    largest = dict.fromkeys(topics, 0)
    try:
        wanted = [tp for tp in tps if ends.get(tp, 0) > 0]
        if not wanted:
            return largest
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        deadline = time.monotonic() + 60
        while [tp for tp in wanted if await consumer.position(tp) < ends[tp]]:
            assert time.monotonic() < deadline, "could not read the topics to their end"
            for tp, records in (await consumer.getmany(timeout_ms=500)).items():
                for r in records:
                    size = len(r.key or b"") + len(r.value or b"")
                    size += sum(len(k) + len(v) for k, v in r.headers)
                    largest[tp.topic] = max(largest[tp.topic], size)
    finally:
        await consumer.stop()
    return largest


@pytest.mark.parametrize(
    ("messages", "store"),
    [
        pytest.param(1, "memory", id="one-bulk-load"),
        pytest.param(4, "rocksdb", id="a-batch-of-many-large-messages"),
    ],
)
def test_bulk_loads_write_records_within_1_mib_and_recover_whole(
    messages: int,
    store: str,
    broker: EmbeddedBroker,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Bulk loads near the input limit are applied, every record written is within 1 MiB,
    and a restarted worker recovers the split state whole."""
    tag = uuid.uuid4().hex[:8]
    app_id = f"limits-{tag}"
    config = write_config(tmp_path, broker.bootstrap_servers, tag, app_id, store)
    settings = load_settings(config)
    connection = Connection(broker.bootstrap_servers, settings.kafka)
    topics = settings.topics
    asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 2))
    values = [bulk_message(i * BULK) for i in range(messages)]
    assert all(900_000 < len(v) <= RECORD_LIMIT for v in values)
    asyncio.run(produce(connection, topics.crm, values))

    port = free_port()
    log = tmp_path / "worker.log"
    worker = start(config, port, processes, log)
    deadline = time.monotonic() + 90
    while applied(scrape(port)) < messages * BULK:
        assert worker.poll() is None, f"the worker died: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the bulk load was not applied within 90 s"
        time.sleep(0.2)
    before = state_metrics(settled(port))
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)

    restarted = free_port()
    start(config, restarted, processes, log)
    deadline = time.monotonic() + 60
    after: dict[Series, float] = {}
    while after != before and time.monotonic() < deadline:
        time.sleep(0.5)
        text = scrape(restarted)
        after = state_metrics(text) if text is not None else {}

    assert after == before
    changelogs = [f"{app_id}-state-changelog", f"{app_id}-accounts-changelog"]
    largest = asyncio.run(largest_records(connection, [*changelogs, f"{app_id}-accounts"]))
    assert 0 < max(largest.values()) <= RECORD_LIMIT - 1024, largest

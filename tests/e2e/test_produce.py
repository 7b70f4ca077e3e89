"""`revmon produce` to an external broker: keyed by entity, in order, batched per partition."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from revmon.broker import EmbeddedBroker
from tests.e2e.running import clean_env, revmon

pytestmark = pytest.mark.e2e

PARTITIONS = 3
BATCH = 10
# SPEC §7: the entity a line is keyed by, in this order of preference.
KEY_FIELDS = (
    "lead_id",
    "opportunity_id",
    "subscription_id",
    "account_id",
    "campaign_id",
    "category",
)
TOPIC_OF_FAMILY = {
    "lead": "crm",
    "opportunity": "crm",
    "activity": "crm",
    "campaign": "marketing",
    "expense": "billing",
    "invoice": "billing",
    "refund": "billing",
    "subscription": "billing",
}
NOT_JSON = [b"this line is not JSON", b'{"event_id": "cut-short", "type": "lead.cr']


@dataclass(frozen=True)
class Record:
    """One consumed message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


def entity(event: dict[str, Any]) -> bytes | None:
    """The key SPEC §7 gives an event: its first entity id field."""
    for name in KEY_FIELDS:
        if event.get(name) not in (None, ""):
            return str(event[name]).encode()
    return None


async def consume(servers: str, topics: list[str], expect: int) -> list[Record]:
    """Every message of `topics` from the start, once `expect` of them arrived (bounded)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Record] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(records) < expect and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(
                Record(r.topic, r.partition, r.offset, r.key, r.value)
                for rs in batch.values()
                for r in rs
            )
        # Anything beyond `expect` would be a bug too: give it a moment to show up.
        extra = await consumer.getmany(timeout_ms=300)
        records.extend(
            Record(r.topic, r.partition, r.offset, r.key, r.value)
            for rs in extra.values()
            for r in rs
        )
        return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))
    finally:
        await consumer.stop()


@pytest.fixture
def events_file(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A simulated history with non-JSON and blank lines mixed in; (path, non-blank lines)."""
    simulated = tmp_path / "simulated.jsonl"
    result = revmon("simulate", "--days", "8", "--seed", "8", "--out", str(simulated), cwd=tmp_path)
    assert result.code == 0, result.stderr
    lines = simulated.read_bytes().splitlines()
    mixed = [*lines[:100], NOT_JSON[0], b"", *lines[100:700], b"   ", NOT_JSON[1], *lines[700:]]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(mixed) + b"\n")
    return path, [line for line in mixed if line.strip()]


def test_produce_keys_orders_and_batches_per_partition(
    broker: EmbeddedBroker, tmp_path: Path, events_file: tuple[Path, list[bytes]]
) -> None:
    """Lines go keyed by entity, in file order per entity, in arrays of <= N per partition."""
    path, lines = events_file
    tag = uuid.uuid4().hex[:10]
    topics = {name: f"e2e-{tag}.{name}" for name in ("crm", "marketing", "billing")}
    config = tmp_path / "revmon.yaml"
    config.write_text(f"partitions: {PARTITIONS}\n")
    env = clean_env(
        REVMON_BROKER=f"kafka://{broker.bootstrap_servers}",
        REVMON_TOPICS__CRM=topics["crm"],
        REVMON_TOPICS__MARKETING=topics["marketing"],
        REVMON_TOPICS__BILLING=topics["billing"],
    )

    result = revmon(
        "produce", str(path), "--batch", str(BATCH), "--config", str(config), env=env, cwd=tmp_path
    )

    assert result.code == 0, result.stderr[-3000:]
    match = re.search(r"sent (\d+) lines in (\d+) messages", result.stdout)
    assert match is not None, result.stdout
    sent_lines, sent_messages = int(match[1]), int(match[2])
    assert sent_lines == len(lines)
    records = asyncio.run(consume(broker.bootstrap_servers, list(topics.values()), sent_messages))
    assert len(records) == sent_messages

    topic_name = {name: kind for kind, name in topics.items()}
    partitioner = DefaultPartitioner()
    all_partitions = list(range(PARTITIONS))
    line_number: dict[bytes | str, int] = {
        line: n for n, line in enumerate(lines) if line in NOT_JSON
    }
    parsed = {n: json.loads(line) for n, line in enumerate(lines) if line not in NOT_JSON}
    line_number.update({event["event_id"]: n for n, event in parsed.items()})
    full_batches = 0
    delivered: list[int] = []
    order: dict[tuple[str, bytes], list[int]] = defaultdict(list)
    for record in records:
        if record.value in NOT_JSON:
            assert record.key is None  # no entity: unkeyed, and alone
            delivered.append(line_number[record.value])
            continue
        batch = json.loads(record.value)
        assert isinstance(batch, list), record.value[:200]
        assert 1 <= len(batch) <= BATCH
        full_batches += len(batch) == BATCH
        keys = [entity(event) for event in batch]
        assert record.key in keys, (record.key, keys)
        for event, key in zip(batch, keys, strict=True):
            assert key is not None
            assert TOPIC_OF_FAMILY[event["type"].split(".")[0]] == topic_name[record.topic]
            assert partitioner(key, all_partitions, all_partitions) == record.partition, event
            number = line_number[event["event_id"]]
            assert event == parsed[number]  # the line as it was
            delivered.append(number)
            order[(record.topic, key)].append(number)

    assert sorted(delivered) == list(range(len(lines)))  # every line exactly once
    for (topic, key), numbers in order.items():
        assert numbers == sorted(numbers), f"{topic} {key!r} out of file order"
    assert sum(1 for numbers in order.values() if len(numbers) > 1) > 50
    assert full_batches > 10

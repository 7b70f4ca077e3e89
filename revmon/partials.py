"""Sharing partials between workers, so that one worker exports every revenue metric (SPEC §4).

Every worker periodically sends, per partition it owns (`i<p>` for input partition p,
`a<p>` for partition p of the internal accounts topic), the partition's newest
`occurred_at` and its books' summable partials at the global `now` to a small compacted
topic, and reads that topic back from every worker. The worker that owns input
partition 0 exports the revenue metrics from its own partitions' live partials plus the
others' latest shared ones; every other worker exports none of them. A worker that owns
every partition (the usual single-worker case) never waits for the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from mode import Service

from revmon.broker import Connection
from revmon.compacted import partitions_of
from revmon.kpi.ledger import add_up

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Shared:
    """What one partition's owner last shared."""

    now: float
    newest: float | None
    partials: Mapping[str, float]


def encode(shared: Shared) -> bytes:
    """The message value of a shared entry."""
    return orjson.dumps({"now": shared.now, "newest": shared.newest, "partials": shared.partials})


def decode(raw: bytes) -> Shared:
    """A shared entry from its message value."""
    data = orjson.loads(raw)
    return Shared(float(data["now"]), data["newest"], dict(data["partials"]))


def combine(
    local: Mapping[str, Mapping[str, float]],
    remote: Mapping[str, Shared],
    owned: Iterable[str] = (),
) -> dict[str, float]:
    """Live partials of our partitions plus the latest shared partials of the others.

    A shared entry of a partition we own (or hold) is stale, whatever it says: it was
    written by a previous owner, possibly a worker that has since died.
    """
    mine = set(owned) | set(local)
    others = [shared.partials for p, shared in remote.items() if p not in mine]
    return add_up([*local.values(), *others])


class Exchange(Service):  # type: ignore[misc]  # mode is untyped
    """Reads every worker's shared partials; sends this worker's (aiokafka, no consumer group).

    A mode service: added as a dependency of the Faust app, it starts and stops with it.
    """

    def __init__(self, connection: Connection, topic: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._connection = connection
        self._topic = topic
        self.remote: dict[str, Shared] = {}
        self._producer: AIOKafkaProducer | None = None
        self._reader: asyncio.Task[None] | None = None

    def newest(self) -> float | None:
        """The greatest `occurred_at` any worker has shared."""
        values = [s.newest for s in self.remote.values() if s.newest is not None]
        return max(values) if values else None

    async def on_start(self) -> None:
        """Connect, and start reading the topic from its beginning."""
        self._producer = AIOKafkaProducer(**self._connection.aiokafka_options(), linger_ms=20)
        await self._producer.start()
        self._reader = asyncio.create_task(self._read())

    async def on_stop(self) -> None:
        """Stop reading and sending."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._producer is not None:
            await self._producer.stop()

    async def share(self, entries: Mapping[str, Shared]) -> None:
        """Send this worker's entries (one message per partition, keyed by it)."""
        if self._producer is None:
            return
        for partition, shared in entries.items():
            try:
                await self._producer.send(self._topic, encode(shared), key=partition.encode())
            except KafkaError as exc:  # the next round sends again
                log.warning("partials_not_shared", error=str(exc))
                return

    async def _read(self) -> None:
        consumer = AIOKafkaConsumer(
            **self._connection.aiokafka_options(), enable_auto_commit=False, group_id=None
        )
        await consumer.start()
        try:
            partitions = await partitions_of(consumer, self._topic)
            tps = [TopicPartition(self._topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        if record.key is not None and record.value is not None:
                            self.remote[record.key.decode()] = decode(record.value)
        finally:
            await consumer.stop()

"""Reading a compacted topic as a table: the last value of every key, up to the true end.

The single writers of revmon's output topics (the alerts evaluator, the metrics
publisher) take over from a previous owner by reading what it left on its topic first:
the alert instances' state, the series last published. "Up to the end" uses the true
end offsets (`revmon.endoffsets`), since Tansu reports them short.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped, unused-ignore]

from revmon.broker import Connection
from revmon.endoffsets import true_end_offsets
from revmon.errors import BrokerError


async def read_table(
    connection: Connection, topic: str, *, time_limit: float = 30.0
) -> dict[bytes, bytes]:
    """The last value of every key on `topic` (a key whose last value is a tombstone is absent).

    Raises:
        BrokerError: the topic cannot be read to its end within `time_limit` seconds.
    """
    options = connection.aiokafka_options()
    consumer = AIOKafkaConsumer(
        **options, enable_auto_commit=False, group_id=None, auto_offset_reset="earliest"
    )
    table: dict[bytes, bytes] = {}
    try:
        await consumer.start()
        async with asyncio.timeout(time_limit):
            partitions = await partitions_of(consumer, topic)
            tps = [TopicPartition(topic, p) for p in partitions]
            ends = await true_end_offsets(options, tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            if not pending:
                return table
            consumer.assign(sorted(pending))
            await consumer.seek_to_beginning(*pending)
            while pending:
                batches = await consumer.getmany(*pending, timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        if record.key is None:
                            continue
                        if record.value is None:
                            table.pop(record.key, None)
                        else:
                            table[record.key] = record.value
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
        return table
    except TimeoutError as exc:
        raise BrokerError(f"topic {topic} not read to its end within {time_limit:g}s") from exc
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot read topic {topic}: {exc}") from exc
    finally:
        await consumer.stop()


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[int]:
    """The partitions of `topic`, once the client's metadata knows them (up to 5 s).

    Raises:
        BrokerError: the topic has no partitions.
    """
    for _ in range(50):
        await consumer.topics()  # refreshes the metadata
        found = consumer.partitions_for_topic(topic)
        if found:
            return sorted(found)
        await asyncio.sleep(0.1)
    raise BrokerError(f"topic {topic} has no partitions")

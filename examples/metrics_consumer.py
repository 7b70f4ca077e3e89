"""Follow revmon's metrics topic: print the E:R ratio and the creation pace as they change.

A copyable example for services downstream of revmon (SPEC §6). The metrics topic is
compacted and keyed by series (`revmon_er_ratio{window="90d"}`), so reading it from the
beginning and keeping the last value per key gives every revenue metric as of revmon's
last publish; after that, each message is a change. A message whose value is null, or a
tombstone (no value at all), means the series no longer exists (a ratio whose
denominator fell to 0).

Needs only aiokafka (`pip install aiokafka`). Run it next to `revmon demo` or a deployment:

    python examples/metrics_consumer.py --bootstrap 127.0.0.1:9092

Each message value is JSON: {"name", "labels", "type", "value", "as_of", "emitted_at",
"schema": 1}; `revmon schema` prints its JSON Schema. Check `schema` before trusting
the rest: a new version may change the fields.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time

from aiokafka import AIOKafkaConsumer

#: The series this consumer cares about: family name → label that tells them apart.
WATCHED = {"revmon_er_ratio": "window", "revmon_pipeline_creation_pace_ratio": "kind"}


def describe(name: str, labels: dict[str, str], value: float | None) -> str:
    """One line for a change of a watched series."""
    label = WATCHED[name]
    what = "E:R ratio" if name == "revmon_er_ratio" else "creation pace"
    shown = "gone" if value is None else f"{value:.3f}"
    return f"{what} {label}={labels.get(label, '?')}: {shown}"


async def follow(bootstrap: str, topic: str, exit_after: float | None) -> None:
    """Read `topic` from its beginning (no consumer group: every run sees everything)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest"
    )
    await consumer.start()
    latest: dict[str, float | None] = {}  # last value per key: the materialized table
    deadline = None if exit_after is None else time.monotonic() + exit_after
    try:
        while deadline is None or time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    key = record.key.decode()
                    if record.value is None:  # tombstone: the series is gone for good
                        latest.pop(key, None)
                        continue
                    message = json.loads(record.value)
                    if message.get("schema") != 1 or message["name"] not in WATCHED:
                        continue
                    if latest.get(key, "unseen") == message["value"]:
                        continue  # a full re-send after a change of owner: nothing new
                    latest[key] = message["value"]
                    line = describe(message["name"], message["labels"], message["value"])
                    print(f"{message['as_of']}  {line}", flush=True)
    finally:
        await consumer.stop()


def main() -> None:
    """Parse the command line and follow the topic until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="revmon.metrics", help="revmon's `topics.metrics`")
    parser.add_argument("--exit-after", type=float, default=None, help="stop after N seconds")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow(args.bootstrap, args.topic, args.exit_after))


if __name__ == "__main__":
    main()

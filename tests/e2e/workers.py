"""Running `revmon run` workers on the session broker from a test, and reading their metrics."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from revmon.broker import Connection
from revmon.endoffsets import true_end_offsets

# Per-process counters restart from 0 with the process; the lag follows the wall clock.
PER_PROCESS = (
    "revmon_events",
    "revmon_events_duplicate",
    "revmon_events_rejected",
    "revmon_events_late",
    "revmon_event_lag_seconds",
    "revmon_build_info",
    # Per worker: what this process sent, whether it is ready, what its partitions received.
    "revmon_alert_notifications",
    "revmon_ready",
    "revmon_source_last_message_timestamp_seconds",
    "revmon_source_newest_event_timestamp_seconds",
    "revmon_metric_messages",
)


def write_config(
    tmp: Path,
    servers: str,
    tag: str,
    app_id: str,
    store: str = "memory",
    **worker: object,
) -> Path:
    """A config on the session broker with this test's topics and group, expiry configured
    (`worker` keys added to the worker section)."""
    config = {
        "broker": f"kafka://{servers}",
        "clock": "event",
        "partitions": 2,
        "topics": {name: f"k{tag}.{name}" for name in ("crm", "marketing", "billing")}
        | {"dead_letter": f"k{tag}.dlq", "metrics": f"k{tag}.metrics", "alerts": f"k{tag}.alerts"},
        # SPEC §2 expiry in every stage a simulated entity can stall in for long: the
        # numbers must not depend on partitioning, restarts or scrape timing with it.
        "funnels": {
            "lead": {"expire": {"name": "20d", "mql": "15d", "sql": "20d"}},
            "opportunity": {"expire": {"qualification": "30d", "negotiation": "25d"}},
        },
        "worker": {
            "app_id": app_id,
            "store": store,
            "session_timeout": "6s",
            "data_dir": str(tmp / app_id),
            "batch_size": 200,
            **worker,
        },
    }
    path = tmp / f"{app_id}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start(
    config: Path, port: int, started: list[subprocess.Popen[bytes]], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """`revmon run` in its own process group (its log appended to `log` when given)."""
    env = {**os.environ, "REVMON_WEB_PORT": str(port)}
    err = log.open("ab") if log is not None else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "revmon",
                "run",
                "--config",
                str(config),
                "--log-level",
                "WARNING",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    finally:
        if not isinstance(err, int):
            err.close()  # the child has its own descriptor
    started.append(proc)
    return proc


def gauge(text: str | None, name: str, **labels: str) -> float | None:
    """The value of one sample in an exposition, or None."""
    if text is None:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def scrape(port: int) -> str | None:
    """The /metrics text, or None while the server is not up."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            return str(reply.read().decode())
    except OSError:
        return None


def applied(text: str | None, family_name: str = "revmon_events") -> float:
    """Σ of a counter family in an exposition (0 when there is none)."""
    if text is None:
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == family_name
        for sample in family.samples
        if sample.name.endswith("_total")
    )


Series = tuple[str, tuple[tuple[str, str], ...]]


def state_metrics(text: str) -> dict[Series, float]:
    """Every sample computed from state (not the per-process counters)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if family.name not in PER_PROCESS
        for sample in family.samples
    }


async def committed(
    connection: Connection, group: str, tps: list[tuple[str, int]]
) -> dict[tuple[str, int], int]:
    """The group's committed offsets of `tps` (-1 where none)."""
    consumer = AIOKafkaConsumer(
        **connection.aiokafka_options(), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        out = {}
        for topic, partition in tps:
            offset = await consumer.committed(TopicPartition(topic, partition))
            out[(topic, partition)] = -1 if offset is None else offset
        return out
    finally:
        await consumer.stop()


def wait_caught_up(
    connection: Connection, group: str, last: dict[tuple[str, int], int], limit: float = 90
) -> None:
    """Poll until the group has committed every acknowledged input offset, and then every
    account fact its input gave (the internal `<group>-accounts` topic, to its true end)."""
    deadline = time.monotonic() + limit
    _wait_committed(connection, group, last, deadline)
    facts = [TopicPartition(f"{group}-accounts", p) for p in range(2)]
    ends = asyncio.run(true_end_offsets(connection.aiokafka_options(), facts))
    _wait_committed(
        connection, group, {(tp.topic, tp.partition): end - 1 for tp, end in ends.items()}, deadline
    )


def _wait_committed(
    connection: Connection, group: str, last: dict[tuple[str, int], int], deadline: float
) -> None:
    done: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        done = asyncio.run(committed(connection, group, list(last)))
        if all(done.get(tp, -1) > offset for tp, offset in last.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} did not catch up: {done} < {last}")


def settled(port: int, limit: float = 30) -> str:
    """The exposition once two scrapes a second apart agree."""
    deadline = time.monotonic() + limit
    previous = None
    while time.monotonic() < deadline:
        text = scrape(port)
        if (
            text is not None
            and previous is not None
            and state_metrics(text) == state_metrics(previous)
        ):
            return text
        previous = text
        time.sleep(1.0)
    raise AssertionError("the metrics did not settle")

"""SIGKILL a worker mid-stream, restart it: it ends with the metrics of an uninterrupted run."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.produce import produce_file
from revmon.settings import load_settings
from tests.e2e.workers import (
    applied,
    scrape,
    settled,
    start,
    state_metrics,
    wait_caught_up,
    write_config,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 120-day history (about 20k events)."""
    path = tmp_path_factory.mktemp("kill9") / "history.jsonl"
    subprocess.run(
        [sys.executable, "-m", "revmon", "simulate", "--days", "120", "--seed", "9", "--out", path],
        check=True,
        capture_output=True,
    )
    return path


@pytest.mark.parametrize("store", ["memory", "rocksdb"])
def test_sigkill_mid_stream_then_restart_matches_an_uninterrupted_run(
    store: str,
    broker: EmbeddedBroker,
    history: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Nothing lost, nothing counted twice: killed-and-restarted equals uninterrupted."""
    tag = uuid.uuid4().hex[:8]
    servers = broker.bootstrap_servers
    steady = write_config(tmp_path, servers, tag, f"steady-{tag}")
    killed = write_config(tmp_path, servers, tag, f"killed-{tag}", store)
    settings = load_settings(steady)
    connection = Connection(servers, settings.kafka)
    topics = settings.topics
    asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 2))
    produced = asyncio.run(produce_file(history, connection, topics, batch=1))
    last = produced.last_offsets
    total = produced.lines

    port = free_port()
    victim = start(killed, port, processes)
    deadline = time.monotonic() + 60
    while applied(scrape(port)) == 0:
        assert time.monotonic() < deadline, "the worker applied nothing within 60 s"
        time.sleep(0.02)
    seen = applied(scrape(port))
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)
    assert 0 < seen < total, f"killed after {seen} of {total} events: not mid-stream"

    restarted_port = free_port()
    start(killed, restarted_port, processes)
    steady_port = free_port()
    start(steady, steady_port, processes)
    wait_caught_up(connection, f"killed-{tag}", last)
    wait_caught_up(connection, f"steady-{tag}", last)

    want = settled(steady_port)
    got = settled(restarted_port)
    assert len(state_metrics(want)) > 300
    assert state_metrics(got) == state_metrics(want)
    # Redelivered input (after the last commit) is skipped, not counted as duplicates...
    assert applied(got, "revmon_events_duplicate") == 0
    # ...and the restarted worker applied only what the killed one had not journaled.
    assert applied(got) < total

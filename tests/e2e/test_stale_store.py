"""A RocksDB data directory left from an earlier cluster is discarded and rebuilt, not fatal."""

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
from tests.e2e.workers import settled, start, state_metrics, wait_caught_up, write_config

pytestmark = pytest.mark.e2e


def run_once(
    servers: str, tmp: Path, tag: str, history: Path, processes: list[subprocess.Popen[bytes]]
) -> tuple[dict[object, float], subprocess.Popen[bytes]]:
    """Feed `history` to a fresh cluster and a RocksDB worker; its settled state metrics."""
    app_id = f"stale-{tag}"
    config = write_config(tmp, servers, tag, app_id, "rocksdb")
    settings = load_settings(config)
    connection = Connection(servers, settings.kafka)
    topics = settings.topics
    asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 2))
    produced = asyncio.run(produce_file(history, connection, topics, batch=1))
    port = free_port()
    worker = start(config, port, processes, tmp / "worker.log")
    wait_caught_up(connection, app_id, produced.last_offsets)
    return dict(state_metrics(settled(port))), worker


def test_a_store_ahead_of_a_recreated_cluster_is_rebuilt_from_the_changelog(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A worker on a recreated cluster with the old data directory warns once, discards the
    local store, rebuilds and ends with the metrics of the first run."""
    history = tmp_path / "history.jsonl"
    simulate = [sys.executable, "-m", "revmon", "simulate", "--days", "30", "--seed", "4"]
    subprocess.run(
        [*simulate, "--out", str(history)],
        check=True,
        capture_output=True,
    )
    tag = uuid.uuid4().hex[:8]
    with EmbeddedBroker() as first:
        want, worker = run_once(first.bootstrap_servers, tmp_path, tag, history, processes)
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert any((tmp_path / f"stale-{tag}").rglob("*.db")), "the first run left no RocksDB store"
    log = tmp_path / "worker.log"
    log.write_bytes(b"")

    with EmbeddedBroker() as recreated:  # a new, empty cluster: every changelog is empty
        started = time.monotonic()
        got, worker = run_once(recreated.bootstrap_servers, tmp_path, tag, history, processes)
        assert worker.poll() is None, "the worker stopped"
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)

    text = log.read_text()
    assert "ConsistencyError" not in text
    assert text.count("local_state_discarded") == 1, text[-3000:]
    for table in ("state", "accounts"):
        for partition in (0, 1):
            assert f"stale-{tag}-{table}-changelog[{partition}]" in text
    assert len(want) > 300
    assert got == want
    assert time.monotonic() - started < 120

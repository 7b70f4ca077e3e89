"""The compose stack's simulator service (deploy/simulator.py) feeds a real broker."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import TopicPartition

from revmon.broker import Connection, EmbeddedBroker
from revmon.endoffsets import true_end_offsets
from revmon.settings import load_settings
from tests.e2e.workers import write_config

pytestmark = pytest.mark.e2e

SIMULATOR = Path(__file__).parents[2] / "deploy" / "simulator.py"


def test_simulator_sends_its_history_to_the_input_topics(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Started as compose starts it, it creates the topics and sends the history."""
    tag = uuid.uuid4().hex[:8]
    config = write_config(tmp_path, broker.bootstrap_servers, tag, f"sim-{tag}")
    settings = load_settings(config)
    env = {**os.environ, "REVMON_CONFIG": str(config), "HISTORY_DAYS": "5", "SPEED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(SIMULATOR)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    processes.append(proc)
    connection = Connection(broker.bootstrap_servers, settings.kafka)
    tps = [TopicPartition(t, p) for t in settings.topics.inputs for p in range(2)]
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "the simulator exited"
        try:
            ends = asyncio.run(true_end_offsets(connection.aiokafka_options(), tps))
        except Exception:  # the topics may not exist yet
            ends = {}
        if ends and all(
            sum(e for tp, e in ends.items() if tp.topic == t) > 0 for t in settings.topics.inputs
        ):
            return
        assert time.monotonic() < deadline, f"no events on every input topic: {ends}"
        time.sleep(0.5)

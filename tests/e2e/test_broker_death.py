"""`revmon run` on the embedded broker: its death is one clear line and a non-zero exit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from revmon.broker import free_port
from tests.e2e.workers import scrape

pytestmark = pytest.mark.e2e


def children(pid: int) -> list[int]:
    """The process ids of `pid`'s children (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def test_embedded_broker_death_stops_revmon_with_one_line(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Killing the embedded broker ends `revmon run` non-zero, with one `embedded_broker_died`."""
    data = tmp_path / "data"
    config = tmp_path / "revmon.yaml"
    config.write_text(yaml.safe_dump({"broker": "embedded", "worker": {"data_dir": str(data)}}))
    port = free_port()
    log = tmp_path / "revmon.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "revmon", "run", "--config", str(config)],
            env={**os.environ, "REVMON_WEB_PORT": str(port)},
            stdout=err,
            stderr=err,
            start_new_session=True,
        )
    processes.append(proc)
    deadline = time.monotonic() + 60
    while scrape(port) is None:
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "revmon did not serve /metrics within 60 s"
        time.sleep(0.2)
    [broker] = children(proc.pid)
    assert (data / "broker.log").exists()

    os.kill(broker, signal.SIGKILL)
    code = proc.wait(timeout=30)

    text = log.read_text()
    assert code != 0
    assert text.count("embedded_broker_died") == 1, text[-2000:]

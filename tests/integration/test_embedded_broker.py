"""The embedded broker: its output goes to a file, and a death nobody asked for is reported."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from revmon.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def test_output_goes_to_a_file_in_the_data_directory(tmp_path: Path) -> None:
    """The broker writes to a file, never to a pipe nobody drains."""
    output = tmp_path / "data" / "broker.log"
    broker = EmbeddedBroker(output=output).start()
    try:
        proc = broker._proc
        assert proc is not None
        assert proc.stdout is None
        assert proc.stderr is None
        assert output.exists()
    finally:
        broker.stop()


@pytest.mark.parametrize(
    ("kill", "reported"),
    [
        pytest.param(True, True, id="killed-under-us"),
        pytest.param(False, False, id="stopped-by-us"),
    ],
)
def test_a_death_is_reported_once_and_a_stop_is_not(
    tmp_path: Path, kill: bool, reported: bool
) -> None:
    """A broker killed from outside calls `on_death` once with its exit code; `stop()` does not."""
    deaths: list[int] = []
    broker = EmbeddedBroker(output=tmp_path / "broker.log", on_death=deaths.append).start()
    pid = broker.pid
    assert pid is not None
    if kill:
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while not deaths:
            assert time.monotonic() < deadline, "the death was not reported within 10 s"
            time.sleep(0.05)
    broker.stop()
    time.sleep(0.2)  # give a wrong report from the watcher thread the chance to appear

    assert deaths == ([-signal.SIGKILL] if reported else [])

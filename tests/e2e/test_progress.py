"""Long commands show progress on a terminal (events done, rate, time left) and stay
quiet when their output is not one."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import time
import uuid
from pathlib import Path

import pytest
import yaml

from revmon.broker import EmbeddedBroker
from tests.e2e.running import clean_env, revmon, revmon_argv

pytestmark = pytest.mark.e2e


def on_a_terminal(argv: list[str], cwd: Path, limit: float = 120) -> str:
    """Run `argv` with standard error on a pseudo-terminal (120 columns); what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(argv, stderr=slave, stdout=subprocess.DEVNULL, cwd=cwd, env=clean_env())
    os.close(slave)
    out = b""
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0, out[-2000:]
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return out.decode(errors="replace")


@pytest.fixture
def history(tmp_path: Path) -> Path:
    """A 15-day simulated history (two whole weeks)."""
    path = tmp_path / "history.jsonl"
    result = revmon("simulate", "--days", "15", "--seed", "2", "--out", str(path))
    assert result.code == 0, result.stderr
    return path


@pytest.mark.parametrize(
    ("command", "drawn"),
    [
        pytest.param(["simulate", "--days", "200", "--out", "sim.jsonl"], "days/s", id="simulate"),
        pytest.param(["replay", "{history}", "--metrics-out", "m.prom"], "events/s", id="replay"),
        pytest.param(
            ["report", "--from-log", "{history}", "--out", "report", "--weeks", "2"],
            "events/s",
            id="report",
        ),
        pytest.param(["produce", "{history}", "--config", "{config}"], "events/s", id="produce"),
    ],
)
def test_long_commands_draw_progress_on_a_terminal(
    broker: EmbeddedBroker, tmp_path: Path, history: Path, command: list[str], drawn: str
) -> None:
    """On a terminal the command redraws a bar with a count, a rate and the time left."""
    config = tmp_path / "produce.yaml"
    tag = uuid.uuid4().hex[:10]
    topics = {name: f"p{tag}.{name}" for name in ("crm", "marketing", "billing")}
    config.write_text(
        yaml.safe_dump({"broker": f"kafka://{broker.bootstrap_servers}", "topics": topics})
    )
    argv = [part.format(history=history, config=config) for part in command]
    screen = on_a_terminal(revmon_argv(*argv), tmp_path)
    assert "\r" in screen, screen
    assert drawn in screen, screen
    assert "<" in screen  # tqdm's "elapsed<left"


def test_a_command_whose_output_is_not_a_terminal_draws_no_progress(tmp_path: Path) -> None:
    """Piped, `simulate` writes its one summary line and no bar."""
    result = revmon("simulate", "--days", "200", "--out", str(tmp_path / "h.jsonl"))
    assert result.code == 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"wrote {result.stderr.split()[1]} events to {tmp_path / 'h.jsonl'}")
    assert "\r" not in result.stderr

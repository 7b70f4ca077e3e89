"""`make demo`: metrics with live counts within a minute, and Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import pytest

from revmon.broker import free_port
from tests.e2e.running import (
    REPO,
    Proc,
    background,
    clean_env,
    group_members,
    http_get,
    poll,
    samples,
    tail,
)

pytestmark = pytest.mark.e2e

# `make demo` depends on the install stamp; `-o` treats it as up to date so the test never
# runs pip (the recipe that follows is exactly the one a user gets).
MAKE_DEMO = ["make", "--no-print-directory", "-o", ".venv/.installed", "demo"]


def events_counted(port: int) -> float | None:
    """The sum of `revmon_events_total` when /metrics answers 200 and it is above 0."""
    answer = http_get(f"http://127.0.0.1:{port}/metrics")
    if answer is None or answer[0] != 200:
        return None
    total = sum(
        value for (name, _), value in samples(answer[1]).items() if name == "revmon_events_total"
    )
    return total or None


def _figures(stdout: str) -> bool:
    """True once a summary line shows non-zero revenue, pipeline created and new names."""
    pattern = re.compile(r"revenue USD (\S+)  pipeline created USD (\S+)  new names (\S+) \|")
    return any(
        all(value not in ("0", "0.0") for value in match.groups())
        for match in pattern.finditer(stdout)
    )


def test_make_demo_counts_events_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """`make demo` counts events within 60 s, prints its URL and non-zero revenue figures, and
    Ctrl-C stops every process."""
    port = free_port()
    env = clean_env(REVMON_WEB_PORT=str(port))

    with background(MAKE_DEMO, env=env, cwd=REPO, logs=tmp_path) as demo:

        def counting() -> float | None:
            if demo.proc.poll() is not None:
                raise AssertionError(f"make demo exited early:\n{tail(demo.stderr())}")
            return events_counted(port)

        poll(counting, within=60, what="/metrics to count events", interval=0.25)
        url = f"http://127.0.0.1:{port}/metrics"
        poll(lambda: url in demo.stdout(), within=5, what=f"{url} in the output")
        poll(
            lambda: _figures(demo.stdout()),
            within=30,
            what="a summary line with revenue, pipeline and new names above 0",
            interval=0.25,
        )
        brokers = [p for p in demo.descendants() if "tansu" in p.cmdline]
        assert len(brokers) == 1, [p.cmdline for p in demo.descendants()]
        everything: list[Proc] = [*group_members(demo.pid), *brokers]

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does

        poll(
            lambda: not any(p.alive() for p in everything),
            within=20,
            what="every process of make demo to exit: "
            + ", ".join(p.cmdline for p in everything if p.alive()),
            interval=0.1,
        )
        assert not group_members(demo.pid)
        assert "revmon demo: stopped" in demo.stdout(), tail(demo.stdout())
        assert "Traceback" not in demo.stderr(), tail(demo.stderr(), 40)

"""A broker outage under `revmon run`: /readyz says so, the log stays quiet, work resumes."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from revmon.broker import EmbeddedBroker, free_port
from tests.e2e.running import (
    Background,
    background,
    clean_env,
    http_get,
    poll,
    revmon,
    revmon_argv,
    sample,
    tail,
)

pytestmark = pytest.mark.e2e

NOTICE_WITHIN = 12.0  # two missed probes of 2 s, one second apart, and slack for a busy host


def _env(servers: str, port: int) -> dict[str, str]:
    tag = uuid.uuid4().hex[:10]
    names = ("crm", "marketing", "billing", "dead_letter", "metrics", "alerts")
    return clean_env(
        REVMON_BROKER=f"kafka://{servers}",
        REVMON_WEB_PORT=str(port),
        REVMON_PARTITIONS="1",
        REVMON_WORKER__APP_ID=f"outage-{tag}",
        REVMON_WORKER__STORE="memory",
        REVMON_WORKER__SESSION_TIMEOUT="6s",
        **{f"REVMON_TOPICS__{name.upper()}": f"outage-{tag}.{name}" for name in names},
    )


def _events(path: Path, prefix: str, count: int) -> Path:
    lines = [
        json.dumps(
            {
                "event_id": f"{prefix}{i}",
                "type": "lead.created",
                "occurred_at": "2025-03-01T10:00:00Z",
                "lead_id": f"{prefix}-lead-{i}",
            }
        )
        for i in range(count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _status(port: int) -> int | None:
    answer = http_get(f"http://127.0.0.1:{port}/readyz", timeout=1.0)
    return None if answer is None else answer[0]


def _created(daemon: Background, port: int) -> float:
    if daemon.proc.poll() is not None:
        raise AssertionError(f"revmon run exited:\n{tail(daemon.stderr())}")
    answer = http_get(f"http://127.0.0.1:{port}/metrics")
    found = (
        None if answer is None else sample(answer[1], "revmon_events_total", type="lead.created")
    )
    return found or 0.0


def test_a_frozen_broker_turns_readyz_503_and_processing_resumes(tmp_path: Path) -> None:
    """With the broker stopped (SIGSTOP), /readyz turns 503; continued, it turns 200 and the
    worker processes what was produced, by itself."""
    port = free_port()
    with EmbeddedBroker() as broker:
        env = _env(broker.bootstrap_servers, port)
        with background(revmon_argv("run"), env=env, cwd=tmp_path, logs=tmp_path) as daemon:
            poll(lambda: _status(port) == 200, within=60, what="/readyz 200")
            first = revmon("produce", str(_events(tmp_path / "a.jsonl", "a", 5)), env=env)
            assert first.code == 0, first.stderr[-2000:]
            poll(lambda: _created(daemon, port) == 5, within=30, what="5 leads counted")

            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                stopped = time.monotonic()
                poll(lambda: _status(port) == 503, within=NOTICE_WITHIN, what="/readyz 503")
                noticed = time.monotonic() - stopped
                assert daemon.proc.poll() is None
                # The revenue numbers stay exported meanwhile: dashboards and alert rules
                # keep what was computed instead of seeing every series vanish.
                answer = http_get(f"http://127.0.0.1:{port}/metrics")
                assert answer is not None
                assert sample(answer[1], "revmon_funnel_open", funnel="lead", stage="name") == 5
                assert sample(answer[1], "revmon_ready") == 0
            finally:
                os.kill(broker.pid, signal.SIGCONT)

            poll(lambda: _status(port) == 200, within=60, what="/readyz 200 again")
            second = revmon("produce", str(_events(tmp_path / "b.jsonl", "b", 7)), env=env)
            assert second.code == 0, second.stderr[-2000:]
            poll(lambda: _created(daemon, port) == 12, within=60, what="12 leads counted")

    assert noticed < NOTICE_WITHIN
    assert '"event":"broker_unreachable"' in daemon.stderr()
    assert '"event":"broker_reachable"' in daemon.stderr()


def test_a_dead_broker_turns_readyz_503_and_the_log_stays_quiet(tmp_path: Path) -> None:
    """With the broker gone, /readyz turns 503 and the log grows by a few lines every few
    seconds, not by dozens a second."""
    port = free_port()
    broker = EmbeddedBroker().start()
    try:
        env = _env(broker.bootstrap_servers, port)
        with background(revmon_argv("run"), env=env, cwd=tmp_path, logs=tmp_path) as daemon:
            poll(lambda: _status(port) == 200, within=60, what="/readyz 200")
            broker.stop()
            poll(lambda: _status(port) == 503, within=NOTICE_WITHIN, what="/readyz 503")

            before = len(daemon.stderr().splitlines())
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline:  # the observation period itself, not a wait
                assert _status(port) == 503
                time.sleep(0.5)
            grown = len(daemon.stderr().splitlines()) - before

            assert daemon.proc.poll() is None, tail(daemon.stderr())
    finally:
        broker.stop()

    assert grown <= 30, tail(daemon.stderr(), 40)  # ~450 lines before throttling
    assert "Traceback" not in daemon.stderr()

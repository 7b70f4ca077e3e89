"""`revmon run`: endpoints, shutdown, a broker child that never outlives it, hostile input."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import pytest

from revmon import __version__
from revmon.broker import EmbeddedBroker, free_port
from tests.e2e.running import (
    Background,
    Proc,
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

READY_WITHIN = 40.0
GONE_WITHIN = 10.0


def tansu_child(daemon: Background) -> Proc | None:
    """The embedded Tansu broker among revmon's children, once it is started."""
    for proc in daemon.descendants():
        if "tansu" in proc.cmdline and " broker " in f" {proc.cmdline} ":
            return proc
    return None


def wait_ready(daemon: Background, port: int) -> list[int]:
    """Poll /readyz until 200; returns every status seen before (no answer is not a status)."""
    statuses: list[int] = []

    def ready() -> bool:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"revmon exited early:\n{tail(daemon.stderr())}")
        answer = http_get(f"http://127.0.0.1:{port}/readyz")
        if answer is not None:
            statuses.append(answer[0])
        return answer is not None and answer[0] == 200

    poll(ready, within=READY_WITHIN, what="/readyz to answer 200")
    return statuses[:-1]


@pytest.mark.parametrize(
    ("stop", "exit_codes"),
    [
        pytest.param(signal.SIGTERM, {143}, id="sigterm"),
        pytest.param(signal.SIGINT, {130}, id="sigint"),
        pytest.param(signal.SIGKILL, {-signal.SIGKILL}, id="sigkill"),
    ],
)
def test_run_serves_endpoints_and_its_broker_dies_with_it(
    tmp_path: Path, stop: signal.Signals, exit_codes: set[int]
) -> None:
    """`revmon run` gets ready, serves /healthz and /metrics, and its broker child dies with it."""
    port = free_port()
    env = clean_env(REVMON_WEB_PORT=str(port))

    with background(revmon_argv("run"), env=env, cwd=tmp_path, logs=tmp_path) as daemon:
        before_ready = wait_ready(daemon, port)
        broker = poll(lambda: tansu_child(daemon), within=5, what="the Tansu child process")

        # Tansu answers a group join only after half the session timeout (5 s by default),
        # so the endpoint is up and says 503 well before it says 200.
        assert 503 in before_ready, before_ready
        assert set(before_ready) <= {503}, before_ready
        assert http_get(f"http://127.0.0.1:{port}/healthz") == (200, "ok\n")
        scraped = http_get(f"http://127.0.0.1:{port}/metrics")
        assert scraped is not None
        assert scraped[0] == 200
        assert sample(scraped[1], "revmon_build_info", version=__version__) == 1
        assert sample(scraped[1], "revmon_events_total", type="lead.created") == 0

        daemon.proc.send_signal(stop)
        code = daemon.wait(timeout=20)

        assert code in exit_codes, (code, tail(daemon.stderr()))
        poll(lambda: not broker.alive(), within=GONE_WITHIN, what=f"broker {broker.pid} to exit")
        assert "Traceback" not in daemon.stderr()
        if stop != signal.SIGKILL:
            _assert_quiet_and_clean(daemon)


def _assert_quiet_and_clean(daemon: Background) -> None:
    """No Faust service chatter below WARNING, no terminal control bytes on a pipe."""
    output = daemon.stdout() + daemon.stderr()
    assert not [c for c in output if c in "\b\x1b"], repr(output[-500:])
    assert "Creating topic" not in output
    assert "Starting..." not in output
    assert daemon.stdout() == ""


def test_run_survives_a_message_over_one_mebibyte(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """`revmon run` counts a message over 1 MiB as too_large and goes on to the next event."""
    port = free_port()
    tag = uuid.uuid4().hex[:10]
    names = ("crm", "marketing", "billing", "dead_letter", "metrics", "alerts")
    env = clean_env(
        REVMON_BROKER=f"kafka://{broker.bootstrap_servers}",
        REVMON_WEB_PORT=str(port),
        REVMON_PARTITIONS="1",
        REVMON_WORKER__APP_ID=f"e2e-{tag}",
        REVMON_WORKER__STORE="memory",
        REVMON_WORKER__SESSION_TIMEOUT="6s",
        **{f"REVMON_TOPICS__{name.upper()}": f"e2e-{tag}.{name}" for name in names},
    )
    base = {"type": "lead.created", "occurred_at": "2025-03-01T10:00:00Z"}
    huge = {**base, "event_id": "huge", "lead_id": "l-huge", "notes": "x" * (1024 * 1024 + 100)}
    after = {**base, "event_id": "after", "lead_id": "l-after"}
    events = tmp_path / "events.jsonl"
    events.write_text(f"{json.dumps(huge)}\n{json.dumps(after)}\n")

    with background(revmon_argv("run"), env=env, cwd=tmp_path, logs=tmp_path) as daemon:
        wait_ready(daemon, port)
        produced = revmon("produce", str(events), env=env, cwd=tmp_path)
        assert produced.code == 0, produced.stderr[-2000:]

        def counted() -> bool:
            if daemon.proc.poll() is not None:
                raise AssertionError(f"revmon run exited:\n{tail(daemon.stderr(), 5)}")
            answer = http_get(f"http://127.0.0.1:{port}/metrics")
            return (
                answer is not None
                and sample(answer[1], "revmon_events_rejected_total", reason="too_large") == 1
                and sample(answer[1], "revmon_events_total", type="lead.created") == 1
            )

        poll(counted, within=30, what="too_large 1 and lead.created 1", interval=0.2)

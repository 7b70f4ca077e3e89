"""Every user error is one `revmon:` line naming the key, file or port: 2 for usage and
config, 1 for runtime failures, never a traceback, and found before any work starts."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from revmon.broker import free_port
from tests.e2e.running import clean_env, revmon
from tests.e2e.test_command_line import one_error

pytestmark = pytest.mark.e2e

EVENT = (
    '{"event_id":"e1","type":"lead.created","occurred_at":"2025-01-01T00:00:00Z","lead_id":"l1"}\n'
)


@dataclass(frozen=True)
class Case:
    """A command, its environment, the exit code and words the one line must hold."""

    args: tuple[str, ...]
    code: int
    says: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _cases(tmp: Path, busy: int) -> dict[str, Case]:
    (tmp / "latin1.yaml").write_bytes(b"currency: USD\n# caf\xe9\n")
    (tmp / "events.jsonl").write_text(EVENT)
    events = str(tmp / "events.jsonl")
    missing = str(tmp / "missing" / "out")
    unreachable = f"127.0.0.1:{free_port()}"
    return {
        "config-not-utf8": Case(
            ("check-config", "--config", str(tmp / "latin1.yaml")),
            2,
            ("latin1.yaml", "not UTF-8", "line 2"),
        ),
        "windows-not-json": Case(
            ("check-config",), 2, ("REVMON_WINDOWS", "JSON"), {"REVMON_WINDOWS": "7d"}
        ),
        "unknown-env-key": Case(
            ("check-config",), 2, ("REVMON_WEB_PROT",), {"REVMON_WEB_PROT": "1"}
        ),
        "simulate-out-missing-dir": Case(
            ("simulate", "--days", "3", "--out", missing), 1, ("--out", "no such directory")
        ),
        "simulate-bad-end": Case(
            ("simulate", "--days", "3", "--end", "2026-13-01", "--out", str(tmp / "h.jsonl")),
            2,
            ("--end", "2026-13-01"),
        ),
        "schema-out-missing-dir": Case(
            ("schema", "--out", str(tmp / "missing" / "deeper")), 1, ("--out", "no such directory")
        ),
        "replay-metrics-out-missing-dir": Case(
            ("replay", events, "--metrics-out", missing), 1, ("--metrics-out", "no such directory")
        ),
        "replay-alerts-out-missing-dir": Case(
            ("replay", events, "--alerts-out", missing), 1, ("--alerts-out", "no such directory")
        ),
        "replay-batch-zero": Case(("replay", events, "--batch", "0"), 2, ("--batch",)),
        "demo-speed-zero": Case(("demo", "--speed", "0"), 2, ("--speed", "above 0")),
        "replay-timeout-negative": Case(
            ("replay", events, "--timeout", "-1"), 2, ("--timeout", "above 0")
        ),
        "produce-batch-zero": Case(("produce", events, "--batch", "0"), 2, ("--batch", "got 0")),
        "produce-batch-negative": Case(
            ("produce", events, "--batch", "-3"), 2, ("--batch", "got -3")
        ),
        "run-web-port-in-use": Case(
            ("run",), 1, (f"127.0.0.1:{busy}", "web_port", "in use"), {"REVMON_WEB_PORT": str(busy)}
        ),
        "demo-web-port-in-use": Case(
            ("demo",),
            1,
            (f"127.0.0.1:{busy}", "web_port", "in use"),
            {"REVMON_WEB_PORT": str(busy)},
        ),
        "run-embedded-port-in-use": Case(
            ("run",),
            1,
            (f"127.0.0.1:{busy}", "embedded_port"),
            {"REVMON_EMBEDDED_PORT": str(busy), "REVMON_WEB_PORT": str(free_port())},
        ),
        "run-broker-never-answers": Case(
            ("run",),
            1,
            (unreachable, "did not answer within 2s", "broker_wait"),
            {
                "REVMON_BROKER": f"kafka://{unreachable}",
                "REVMON_BROKER_WAIT": "2s",
                "REVMON_WEB_PORT": str(free_port()),
            },
        ),
    }


CASES = [
    "config-not-utf8",
    "windows-not-json",
    "unknown-env-key",
    "simulate-out-missing-dir",
    "simulate-bad-end",
    "schema-out-missing-dir",
    "replay-metrics-out-missing-dir",
    "replay-alerts-out-missing-dir",
    "replay-batch-zero",
    "replay-timeout-negative",
    "demo-speed-zero",
    "produce-batch-zero",
    "produce-batch-negative",
    "run-web-port-in-use",
    "demo-web-port-in-use",
    "run-embedded-port-in-use",
    "run-broker-never-answers",
]


@pytest.mark.parametrize("name", [pytest.param(name, id=name) for name in CASES])
def test_a_user_error_is_one_line(tmp_path: Path, busy_port: int, name: str) -> None:
    """The command exits 2 (usage, config) or 1 (runtime) with one line saying what to fix."""
    case = _cases(tmp_path, busy_port)[name]

    result = revmon(*case.args, env=clean_env(**case.env), cwd=tmp_path, timeout=60)

    line = one_error(result, case.code)
    assert line.startswith("revmon: "), line
    for words in case.says:
        assert words in line, line
    if "no such directory" in case.says or "web_port" in case.says:
        assert "broker_started" not in result.stderr  # checked before any work starts
        assert result.seconds < 10, result.seconds

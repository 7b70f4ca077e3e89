"""Bad command-line input: a clear one-line message and an exit code, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from revmon import __version__
from revmon.broker import EmbeddedBroker, free_port
from tests.e2e.running import Result, clean_env, revmon

pytestmark = pytest.mark.e2e

EVENT = (
    b'{"event_id":"e1","type":"lead.created","occurred_at":"2025-01-01T00:00:00Z","lead_id":"l1"}\n'
)


def message_lines(result: Result) -> list[str]:
    """The stderr lines meant for a person: everything but the JSON log records."""
    lines = []
    for line in result.stderr.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            lines.append(line)
        else:
            assert isinstance(record, dict), line
            assert "event" in record, line
    return lines


def one_error(result: Result, code: int = 1) -> str:
    """The single message of a failed command, after checking the exit code and no traceback."""
    assert result.code == code, (result.code, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = message_lines(result)
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("level", ["INFO", "WARNING"])
def test_replay_of_a_missing_file_fails_in_one_line(tmp_path: Path, level: str) -> None:
    """`revmon replay /nonexistent` exits 1 with one `cannot read` line naming the file,
    before it starts a broker."""
    result = revmon("replay", "/nonexistent", "--log-level", level, cwd=tmp_path, timeout=30)

    line = one_error(result)

    assert line.startswith("revmon: cannot read /nonexistent"), line
    assert "broker_started" not in result.stderr
    if level == "WARNING":
        assert result.stderr.splitlines() == [line]
    assert result.stdout == ""


def test_replay_of_a_directory_fails_in_one_line(tmp_path: Path) -> None:
    """`revmon replay DIR` exits 1 with one `cannot read` line."""
    result = revmon("replay", str(tmp_path), cwd=tmp_path, timeout=30)

    assert one_error(result).startswith(f"revmon: cannot read {tmp_path}")


def test_produce_without_an_external_broker_says_how_to_name_one(tmp_path: Path) -> None:
    """`revmon produce` on the default embedded broker exits 1 saying to set `broker:`."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)

    result = revmon("produce", str(events), cwd=tmp_path, timeout=30)

    line = one_error(result)
    assert line.startswith("revmon: produce needs a running broker"), line
    assert "kafka://" in line


def test_produce_to_an_unreachable_broker_fails_in_one_line(tmp_path: Path) -> None:
    """`revmon produce` to a broker nobody listens on exits 1 naming the address once
    `broker_wait` is over."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENT)
    address = f"127.0.0.1:{free_port()}"

    result = revmon(
        "produce",
        str(events),
        env=clean_env(REVMON_BROKER=f"kafka://{address}", REVMON_BROKER_WAIT="1s"),
        cwd=tmp_path,
        timeout=60,
    )

    line = one_error(result)
    assert line.startswith("revmon: "), line
    assert address in line


def test_produce_of_a_missing_file_fails_in_one_line(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """`revmon produce /nonexistent` to a running broker exits 1 with one `cannot read` line."""
    tag = tmp_path.name[-20:].replace("_", "-")
    env = clean_env(
        REVMON_BROKER=f"kafka://{broker.bootstrap_servers}",
        REVMON_TOPICS__CRM=f"e2e-{tag}.crm",
        REVMON_TOPICS__MARKETING=f"e2e-{tag}.marketing",
        REVMON_TOPICS__BILLING=f"e2e-{tag}.billing",
    )

    result = revmon("produce", "/nonexistent", env=env, cwd=tmp_path, timeout=30)

    assert one_error(result).startswith("revmon: cannot read /nonexistent")


def test_no_command_prints_usage(tmp_path: Path) -> None:
    """`revmon` alone exits 2 with its usage, no traceback."""
    result = revmon(cwd=tmp_path, timeout=30)

    assert result.code == 2
    assert result.stderr.startswith("usage: revmon")
    assert "Traceback" not in result.stderr


def test_version(tmp_path: Path) -> None:
    """`revmon --version` prints the package version."""
    result = revmon("--version", cwd=tmp_path, timeout=30)

    assert result.code == 0
    assert result.stdout.strip() == f"revmon {__version__}"

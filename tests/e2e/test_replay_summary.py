"""`revmon replay` says what became of every line: applied, duplicate, late, rejected by
reason, and the file's line number of each rejection; `--strict` fails on a rejection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.running import revmon

pytestmark = pytest.mark.e2e

LINES = [
    '{"event_id":"e1","type":"lead.created","occurred_at":"2025-01-02T00:00:00Z","lead_id":"l1"}',
    "not json",
    '{"event_id":"e2","type":"lead.created","occurred_at":"2025-01-02T00:00:00","lead_id":"l2"}',
    "",
    '{"event_id":"e1","type":"lead.created","occurred_at":"2025-01-02T00:00:00Z","lead_id":"l1"}',
    '{"event_id":"e3","type":"nope","occurred_at":"2025-01-02T00:00:00Z","lead_id":"l3"}',
    '{"event_id":"e4","type":"lead.stage_changed","occurred_at":"2025-01-01T00:00:00Z",'
    '"lead_id":"l1","stage":"mql"}',
]
REJECTED = {2: "malformed_json", 3: "invalid_field", 6: "unknown_type"}


def _rejections(stderr: str) -> dict[int, str]:
    """Line number → reason of every `line_rejected` log record."""
    found = {}
    for line in stderr.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["event"] == "line_rejected":
                found[record["line"]] = record["reason"]
    return found


@pytest.mark.parametrize(
    "batch", [pytest.param("1", id="unbatched"), pytest.param("500", id="batched")]
)
def test_replay_summary_counts_every_line_and_names_rejected_lines(
    tmp_path: Path, batch: str
) -> None:
    """The summary counts applied (late included), duplicate and rejected lines by reason;
    every rejection is logged with its line number; the exit code is 0."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(LINES) + "\n")

    result = revmon(
        "replay",
        str(events),
        "--batch",
        batch,
        "--metrics-out",
        str(tmp_path / "m.prom"),
        cwd=tmp_path,
        timeout=120,
    )

    assert result.code == 0, result.stderr[-3000:]
    assert "replayed 6 lines in " in result.stderr
    summary = (
        ": 2 applied (1 late), 1 duplicate, 3 rejected "
        "(invalid_field 1, malformed_json 1, unknown_type 1);"
    )
    assert summary in result.stderr, result.stderr[-3000:]
    assert _rejections(result.stderr) == REJECTED


def test_replay_strict_fails_when_a_line_was_rejected(tmp_path: Path) -> None:
    """`--strict` exits 1 with one line when anything was rejected, after the summary."""
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(LINES[:2]) + "\n")

    result = revmon(
        "replay",
        str(events),
        "--strict",
        "--metrics-out",
        str(tmp_path / "m.prom"),
        cwd=tmp_path,
        timeout=120,
    )

    lines = [line for line in result.stderr.splitlines() if line.startswith("revmon: ")]
    assert result.code == 1, result.stderr[-3000:]
    assert lines[-1] == "revmon: 1 rejected (--strict): the line_rejected log lines name them"
    assert "1 applied (0 late), 0 duplicate, 1 rejected (malformed_json 1)" in result.stderr
    assert (tmp_path / "m.prom").read_text().startswith("# HELP")


def test_replay_strict_passes_a_clean_file(tmp_path: Path) -> None:
    """`--strict` exits 0 when nothing was rejected."""
    events = tmp_path / "events.jsonl"
    events.write_text(LINES[0] + "\n")

    result = revmon(
        "replay",
        str(events),
        "--strict",
        "--metrics-out",
        str(tmp_path / "m.prom"),
        cwd=tmp_path,
        timeout=120,
    )

    assert result.code == 0, result.stderr[-3000:]
    assert "1 applied (0 late), 0 duplicate, 0 rejected;" in result.stderr

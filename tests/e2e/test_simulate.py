"""`revmon simulate`: a deterministic JSON-lines history for a seed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.running import revmon

pytestmark = pytest.mark.e2e


def simulate(tmp_path: Path, name: str, seed: int) -> bytes:
    """The bytes `revmon simulate --days 20 --seed SEED` writes."""
    out = tmp_path / name
    result = revmon(
        "simulate", "--days", "20", "--seed", str(seed), "--out", str(out), cwd=tmp_path
    )
    assert result.code == 0, result.stderr
    assert result.stdout == ""
    count = len(out.read_bytes().splitlines())
    assert f"wrote {count} events to {out}" in result.stderr
    return out.read_bytes()


def test_simulate_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    """The same seed writes the same bytes; another seed writes another history."""
    first = simulate(tmp_path, "a.jsonl", 4)

    assert simulate(tmp_path, "b.jsonl", 4) == first
    assert simulate(tmp_path, "c.jsonl", 5) != first


def test_simulated_events_are_in_time_order_with_offsets(tmp_path: Path) -> None:
    """Every line is one event object with a unique id and an offset timestamp, in time order."""
    lines = simulate(tmp_path, "a.jsonl", 6).splitlines()
    events = [json.loads(line) for line in lines]
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]

    assert len(events) > 500
    assert all(isinstance(e, dict) for e in events)
    assert len({e["event_id"] for e in events}) == len(events)
    assert all(t.tzinfo is not None for t in times)
    assert times == sorted(times)


def _span(tmp_path: Path, *args: str) -> tuple[datetime, datetime]:
    """First and last `occurred_at` of `revmon simulate --days 30 ARGS...`."""
    out = tmp_path / "span.jsonl"
    result = revmon("simulate", "--days", "30", "--out", str(out), *args, cwd=tmp_path)
    assert result.code == 0, result.stderr
    times = [
        datetime.fromisoformat(json.loads(line)["occurred_at"])
        for line in out.read_text().splitlines()
    ]
    return times[0], times[-1]


def test_simulate_end_sets_the_last_day(tmp_path: Path) -> None:
    """`--end 2026-03-01 --days 30` writes events from 2026-01-30 up to, not into, March 1st."""
    first, last = _span(tmp_path, "--end", "2026-03-01")

    assert first >= datetime(2026, 1, 30, tzinfo=UTC)
    assert datetime(2026, 2, 27, tzinfo=UTC) < last < datetime(2026, 3, 1, tzinfo=UTC)


def test_simulate_ends_today_by_default(tmp_path: Path) -> None:
    """Without `--end` the history ends at the start of today (UTC): windows on the wall
    clock find it."""
    today = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), tzinfo=UTC)

    first, last = _span(tmp_path)

    assert first >= today - timedelta(days=30)
    assert today - timedelta(days=2) < last < today

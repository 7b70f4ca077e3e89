"""`revmon simulate`: a deterministic JSON-lines history for a seed."""

from __future__ import annotations

import json
from datetime import datetime
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

"""SPEC §9: no producer can blow up the series count, whatever values its events carry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.running import revmon, samples

pytestmark = pytest.mark.e2e

FLOOD = 100_000


def hostile(i: int) -> dict[str, Any]:
    """The i-th event of the flood: every free-text field a value never seen before."""
    at = f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:00:00Z"
    base: dict[str, Any] = {"event_id": f"h{i}", "occurred_at": at, "source": f"src-{i}"}
    kinds: list[dict[str, Any]] = [
        {"type": "lead.created", "lead_id": f"L{i}", "channel": f"ch-{i}",
         "campaign_id": f"cmp-{i}", "account_id": f"acct-{i}"},
        {"type": "campaign.spend", "campaign_id": f"cmp-{i}", "channel": f"ch-{i}", "amount": 1},
        {"type": "opportunity.created", "opportunity_id": f"O{i}", "amount": 10 + i % 7,
         "kind": "new_business", "channel": f"ch-{i}", "account_id": f"acct-{i}"},
        {"type": "activity.logged", "account_id": f"acct-{i}", "kind": "call"},
        {"type": "invoice.paid", "account_id": f"acct-{i}", "amount": 5, "invoice_id": f"inv-{i}"},
        {"type": "lead.stage_changed", "lead_id": f"L{i}", "stage": f"stage-{i}"},
        {"type": "opportunity.stage_changed", "opportunity_id": f"O{i}", "stage": f"st-{i}"},
        {"type": "expense.recorded", "category": f"cat-{i}", "amount": 1},
        {"type": f"made.up.{i}", "lead_id": f"L{i}"},
        {"type": "invoice.paid", "account_id": f"acct-{i}", "amount": 5, "currency": f"X{i}"},
    ]  # fmt: skip
    return {**base, **kinds[i % len(kinds)]}


def write(path: Path, count: int) -> Path:
    """`count` hostile events as JSON lines."""

    def lines() -> Iterator[str]:
        for i in range(count):
            yield json.dumps(hostile(i))

    path.write_text("\n".join(lines()) + "\n")
    return path


def series(
    path: Path, tmp_path: Path
) -> tuple[dict[tuple[str, frozenset[tuple[str, str]]], float], str]:
    """Every exported sample after replaying `path`, and what the replay logged."""
    out = tmp_path / f"{path.stem}.prom"
    result = revmon(
        "replay", str(path), "--metrics-out", str(out), "--batch", "1000",
        "--log-level", "WARNING", cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert result.code == 0, result.stderr[-3000:]
    return samples(out.read_text()), result.stderr


def test_a_flood_of_distinct_values_leaves_the_series_count_unchanged(tmp_path: Path) -> None:
    """100,000 events with new channels, campaigns, sources, accounts and stages: same series."""
    baseline, _ = series(write(tmp_path / "few.jsonl", 100), tmp_path)
    flooded, log = series(write(tmp_path / "flood.jsonl", FLOOD), tmp_path)

    assert set(flooded) == set(baseline), sorted(set(flooded) ^ set(baseline))[:20]
    assert len(flooded) < 5000

    def total(name: str) -> float:
        return sum(value for (sample, _), value in flooded.items() if sample == name)

    assert total("revmon_events_total") == FLOOD // 2
    assert total("revmon_events_rejected_total") == FLOOD // 2
    # 50,000 rejections: the log shows a few per reason, not one line each.
    assert 0 < log.count('"event_rejected"') < 200, log.count('"event_rejected"')

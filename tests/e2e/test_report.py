"""`revmon report` as a person sees it (headless Chromium), and `replay --until`."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.running import clean_env, revmon, samples
from tests.support.browser import visit

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "examples" / "report.yaml"
CHARTS = ("flow", "open", "inventory", "conversion", "mrr", "er", "effort")
TILES = (
    "er",
    "pace",
    "coverage",
    "gap",
    "nrr",
    "churn",
    "firing",
    "quick_ratio",
    "cac_payback",
    "magic_number",
)

# Run in the page after it loaded: what a person would see of each chart and tile.
MEASURE = """
JSON.stringify({
  charts: [...document.querySelectorAll('figure.chart')].map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: f.dataset.chart, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll('path, rect, use, line').length : 0,
            text: svg ? svg.textContent.length : 0};
  }),
  tiles: Object.fromEntries([...document.querySelectorAll('.tile')].map(
    t => [t.dataset.tile, t.querySelector('.value').textContent])),
  title: document.title,
})
"""


#: The day the simulated histories end (2025-01-01 plus 400 days).
END = "2026-02-05"


def simulate(tmp: Path, days: int, seed: int, end: str = END) -> Path:
    """`revmon simulate --days DAYS --seed SEED` into `tmp`."""
    out = tmp / f"history-{days}d-{seed}.jsonl"
    # A fixed end: the example config's quarterly targets cover these days.
    result = revmon(
        "simulate", "--days", str(days), "--seed", str(seed), "--end", end, "--out", str(out)
    )
    assert result.code == 0, result.stderr
    return out


def test_the_report_of_a_400_day_history_opens_in_chromium_with_every_chart_drawn(
    tmp_path: Path,
) -> None:
    """A 400-day history's report opens with no console error, no fetch, every chart drawn."""
    import json

    history = simulate(tmp_path, 400, 3)
    out = tmp_path / "report"
    result = revmon(
        "report",
        "--config",
        str(EXAMPLE_CONFIG),
        "--from-log",
        str(history),
        "--out",
        str(out),
        env=clean_env(),
        timeout=240,
    )
    assert result.code == 0, result.stderr
    page = out / "index.html"
    seen = visit(page, MEASURE)
    (tmp_path / "report.png").write_bytes(seen.screenshot)
    if os.environ.get("UPDATE_DOCS") == "1":  # `UPDATE_DOCS=1 pytest ...` refreshes docs/
        (ROOT / "docs" / "report.png").write_bytes(seen.screenshot)
    assert seen.errors == []
    assert seen.requests == [page.resolve().as_uri()]  # nothing fetched but the page itself
    measured = json.loads(seen.measured)
    assert [c["id"] for c in measured["charts"]] == list(CHARTS)
    for chart in measured["charts"]:
        assert chart["width"] > 300, chart
        assert chart["height"] > 100, chart
        assert chart["marks"] > 20, chart
    assert tuple(measured["tiles"]) == TILES
    drawn = {k: v for k, v in measured["tiles"].items() if v != "–"}
    assert set(drawn) == set(TILES), measured["tiles"]  # the history gives every tile a value
    assert measured["title"].startswith("Weekly revenue review — week of Mon 26 Jan 2026")
    assert seen.screenshot.startswith(b"\x89PNG")


def _cut(history: Path, before: str, out: Path) -> Path:
    """The lines of `history` whose occurred_at is before `before`: a truncated file."""
    import json

    limit = datetime.fromisoformat(before).timestamp()
    kept = [
        line
        for line in history.read_bytes().splitlines()
        if datetime.fromisoformat(json.loads(line)["occurred_at"]).timestamp() < limit
    ]
    out.write_bytes(b"\n".join(kept) + b"\n")
    return out


# Series that depend on the wall clock of the run (and how often it published), not on events.
WALL = {
    "revmon_source_last_message_timestamp_seconds",
    "revmon_event_lag_seconds",
    "revmon_metric_messages_total",
}


@pytest.mark.parametrize(
    ("until", "before"),
    [
        pytest.param("2025-01-31", "2025-02-01T00:00:00+00:00", id="a-date-keeps-its-whole-day"),
        pytest.param(
            "2025-01-31T12:00:00+00:00", "2025-01-31T12:00:00.001+00:00", id="a-timestamp"
        ),
    ],
)
def test_replay_until_reproduces_the_replay_of_the_truncated_file(
    tmp_path: Path, until: str, before: str
) -> None:
    """`replay --until` ends with the metrics of a replay of the file cut at that time."""
    history = simulate(tmp_path, 45, 5, end="2025-02-15")  # 2025-01-01 to 2025-02-15
    truncated = _cut(history, before, tmp_path / "truncated.jsonl")
    runs = {}
    for name, args in (
        ("until", [str(history), "--until", until]),
        ("truncated", [str(truncated)]),
    ):
        metrics = tmp_path / f"{name}.prom"
        result = revmon(
            "replay", *args, "--metrics-out", str(metrics), env=clean_env(), timeout=120
        )
        assert result.code == 0, result.stderr
        runs[name] = {k: v for k, v in samples(metrics.read_text()).items() if k[0] not in WALL}
    assert runs["until"] == runs["truncated"]
    assert (
        runs["until"][("revmon_watermark_seconds", frozenset())]
        < datetime.fromisoformat(before).timestamp()
    )

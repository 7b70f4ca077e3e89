"""The report's two sources agree: a replayed log and the real Prometheus scraping a
`revmon run` fed the same history on the event clock give the same tiles every week."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from revmon.broker import Connection, EmbeddedBroker, free_port
from revmon.produce import produce_file
from revmon.report.log import from_log
from revmon.report.prometheus import from_prometheus
from revmon.report.samples import Week
from revmon.report.tiles import tiles
from revmon.settings import Settings, load_settings
from tests.conftest import isolated_settings
from tests.e2e.prometheus import Prometheus
from tests.e2e.running import revmon
from tests.e2e.test_dashboards import wait_ready
from tests.e2e.workers import settled, start, wait_caught_up

pytestmark = pytest.mark.e2e

WEEKS = 3
# `for: 0s` and no deadband: whether a rule fires at a week's end then depends on the
# numbers only, not on when between two slices a worker happened to evaluate it.
RULES: list[dict[str, Any]] = [
    {
        "name": "ExpenseToRevenueHigh",
        "metric": "revmon_er_ratio",
        "labels": {"window": "90d"},
        "op": ">=",
        "threshold": 0.6,
        "severity": "warning",
        "summary": "E:R {{ value }}",
    },
    {
        "name": "PipelineCoverageLow",
        "metric": "revmon_pipeline_coverage_ratio",
        "labels": {"kind": "new_business"},
        "op": "<",
        "threshold": 3,
        "severity": "warning",
        "summary": "coverage {{ value }}",
    },
    {
        "name": "StaleOpportunities",
        "metric": "revmon_funnel_stale_ratio",
        "labels": {"funnel": "opportunity"},
        "op": ">",
        "threshold": 0.25,
        "severity": "warning",
        "summary": "stale {{ value }}",
    },
]
TARGETS = [{"period": "2025-Q1", "kind": "new_business", "amount": 900_000}]


def weekly_chunks(history: Path, out: Path) -> list[Path]:
    """The history cut at every Monday 00:00 UTC: one file per week, in order."""
    chunks: dict[datetime, list[bytes]] = {}
    for line in history.read_bytes().splitlines():
        at = datetime.fromisoformat(orjson.loads(line)["occurred_at"])
        monday = datetime.combine(at.date() - timedelta(days=at.weekday()), datetime.min.time())
        chunks.setdefault(monday, []).append(line)
    paths = []
    for monday, lines in sorted(chunks.items()):
        path = out / f"week-{monday:%Y%m%d}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(path)
    return paths


def scraped_after(prometheus: Prometheus, moment: float, limit: float = 30) -> None:
    """Poll until Prometheus holds a scrape of revmon taken after `moment` (unix seconds)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = prometheus.query("max(timestamp(revmon_watermark_seconds))")
        if found and float(found[0]["value"][1]) > moment:
            return
        time.sleep(0.3)
    raise AssertionError("prometheus did not scrape revmon after the slice settled")


def tile_values(weeks: list[Week], settings: Settings) -> list[dict[str, float | None]]:
    """The tiles of every week (each with the week before it), by tile."""
    return [
        {tile.key: tile.value for tile in tiles(weeks[: i + 1], settings)}
        for i in range(len(weeks))
    ]


def test_the_report_from_prometheus_has_the_tiles_of_the_report_from_the_log(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Week by week, Prometheus (scraping `revmon run`) and a replay give equal tiles."""
    history = tmp_path / "history.jsonl"
    result = revmon(
        "simulate", "--days", "29", "--seed", "7", "--end", "2025-01-30", "--out", str(history)
    )
    assert result.code == 0, result.stderr
    servers = broker.bootstrap_servers
    tag = uuid.uuid4().hex[:10]
    config = {
        "broker": f"kafka://{servers}",
        "clock": "event",
        "partitions": 2,
        "alerts_interval": "1s",
        "alerts": RULES,
        "targets": TARGETS,
        "topics": {name: f"r{tag}.{name}" for name in ("crm", "marketing", "billing")}
        | {"dead_letter": f"r{tag}.dlq", "metrics": f"r{tag}.metrics", "alerts": f"r{tag}.alerts"},
        "worker": {"app_id": f"report-{tag}", "store": "memory", "session_timeout": "6s"},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    run_settings = load_settings(path)
    port = free_port()
    start(path, port, processes, log=tmp_path / "run.log")
    wait_ready(port)
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{port}"], processes)
    connection = Connection(servers, run_settings.kafka)
    for chunk in weekly_chunks(history, tmp_path):
        produced = asyncio.run(produce_file(chunk, connection, run_settings.topics, batch=50))
        wait_caught_up(connection, f"report-{tag}", produced.last_offsets)
        settled(port)
        scraped_after(prometheus, time.time() + 1.5)  # an evaluation (1s) and a scrape later

    from_prom, _ = from_prometheus(f"http://127.0.0.1:{prometheus.port}", run_settings, weeks=WEEKS)
    log_settings = isolated_settings(servers, alerts=RULES, targets=TARGETS)
    from_replay = from_log(history, log_settings, weeks=WEEKS, timeout=300)

    assert [w.end for w in from_prom] == [w.end for w in from_replay]
    assert len(from_prom) == WEEKS
    prom_tiles = tile_values(from_prom, run_settings)
    log_tiles = tile_values(from_replay, log_settings)
    assert prom_tiles == log_tiles
    # The command line renders the same source into a page that says what it cannot know.
    out = tmp_path / "review"
    url = f"http://127.0.0.1:{prometheus.port}"
    result = revmon(
        "report",
        "--config",
        str(path),
        "--prometheus",
        url,
        "--weeks",
        str(WEEKS),
        "--out",
        str(out),
        timeout=60,
    )
    assert result.code == 0, result.stderr
    page = (out / "index.html").read_text()
    assert f"Prometheus at {url} (event clock" in page
    assert "not when each one fired or resolved" in page
    # The comparison means something: the history gives most tiles a value, alerts fire.
    last = log_tiles[-1]
    assert sum(v is not None for v in last.values()) >= 7, last
    assert last["firing"], last

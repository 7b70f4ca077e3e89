"""The README's tour: simulate, then run and produce on the wall clock, shows real numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from revmon.broker import free_port
from tests.e2e.running import (
    REPO,
    background,
    clean_env,
    http_get,
    poll,
    revmon,
    revmon_argv,
    samples,
    tail,
)

pytestmark = pytest.mark.e2e

TOUR_COMMANDS = (
    "revmon simulate --days 120 --seed 1 --out history.jsonl",
    "revmon replay history.jsonl --metrics-out final.prom",
    "REVMON_EMBEDDED_PORT=9092 revmon run",
    "REVMON_BROKER=kafka://127.0.0.1:9092 revmon produce history.jsonl --batch 100",
)


def _window_total(exposition: str, name: str, **labels: str) -> float:
    """The sum of `name` over the 30d window and `labels`, every other label summed."""
    wanted = {"window": "30d", **labels}
    return sum(
        value
        for (sample_name, sample_labels), value in samples(exposition).items()
        if sample_name == name and wanted.items() <= dict(sample_labels).items()
    )


def test_readme_tour_lists_the_commands_this_test_runs() -> None:
    """The README's tour holds the commands exercised below, so the two cannot drift."""
    readme = (REPO / "README.md").read_text()

    for command in TOUR_COMMANDS:
        assert command in readme, command


def test_tour_on_the_wall_clock_shows_revenue_pipeline_and_funnel_figures(tmp_path: Path) -> None:
    """A history simulated today, produced into `revmon run`, gives non-zero 30-day revenue,
    pipeline created, new names and lead funnel entries on /metrics."""
    history = tmp_path / "history.jsonl"
    made = revmon("simulate", "--days", "60", "--seed", "1", "--out", str(history), cwd=tmp_path)
    assert made.code == 0, made.stderr
    broker_port, web_port = free_port(), free_port()
    env = clean_env(REVMON_EMBEDDED_PORT=str(broker_port), REVMON_WEB_PORT=str(web_port))

    with background(revmon_argv("run"), env=env, cwd=tmp_path, logs=tmp_path) as daemon:
        announced = f"revmon: embedded broker at 127.0.0.1:{broker_port}"
        poll(lambda: announced in daemon.stderr(), within=30, what="the broker's address")
        producer_env = clean_env(REVMON_BROKER=f"kafka://127.0.0.1:{broker_port}")
        sent = revmon("produce", str(history), "--batch", "100", env=producer_env, timeout=120)
        assert sent.code == 0, sent.stderr[-2000:]

        def figures() -> dict[str, float] | None:
            if daemon.proc.poll() is not None:
                raise AssertionError(f"revmon run exited:\n{tail(daemon.stderr())}")
            answer = http_get(f"http://127.0.0.1:{web_port}/metrics")
            if answer is None:
                return None
            found = {
                "revenue": _window_total(answer[1], "revmon_revenue_amount"),
                "pipeline": _window_total(answer[1], "revmon_pipeline_created_amount"),
                "names": _window_total(answer[1], "revmon_marketing_new_names"),
                "entries": _window_total(answer[1], "revmon_funnel_entries", funnel="lead"),
            }
            return found if all(found.values()) else None

        found = poll(figures, within=90, what="non-zero 30d figures", interval=0.5)

    assert all(value > 0 for value in found.values()), found

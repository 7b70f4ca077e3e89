"""Every dashboard query, run by the real Prometheus against one and then two `revmon run`
workers fed by the simulator: no error, data wherever the exposition has the series, and
owner-scoped values equal to the workers' exports (nothing doubled, nothing missing)."""

from __future__ import annotations

import asyncio
import itertools
import math
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from revmon.broker import EmbeddedBroker, free_port
from revmon.families import FAMILIES
from revmon.grafana import dashboards
from revmon.produce import produce_file
from revmon.settings import load_settings
from tests.e2e.prometheus import Prometheus
from tests.e2e.test_scaleout import groups
from tests.e2e.workers import applied, scrape, settled, start, wait_caught_up
from tests.unit.test_grafana import family_name

pytestmark = pytest.mark.e2e

RATE_INTERVAL = "1m"  # $__rate_interval: 4 scrape intervals and more
_SELECTOR = re.compile(r"\b(revmon_[a-z0-9_]+)(?:\{([^}]*)\})?")
_MATCHER = re.compile(r'(\w+)\s*(=~|!=|=)\s*"([^"]*)"')
_PLAIN = re.compile(r"^max without \(instance\) \((revmon_[a-z0-9_]+)(?:\{([^}]*)\})?\)$")

#: Series that follow the wall clock: a scrape and a later query never agree exactly.
WALL_CLOCK = frozenset({"revmon_event_lag_seconds"})

Exposed = dict[str, list[tuple[dict[str, str], float]]]


def templates() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) of every query, variables unsubstituted."""
    return [
        (name, panel["title"], target["expr"])
        for name, board in dashboards().items()
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


def substitutions(expr: str, values: dict[str, list[str]]) -> Iterator[str]:
    """`expr` with each combination of the values of the variables it uses."""
    used = sorted(set(re.findall(r"\$(\w+)", expr)) - {"__rate_interval"})
    for combination in itertools.product(*(values[v] for v in used)):
        out = expr.replace("$__rate_interval", RATE_INTERVAL)
        for var, choice in zip(used, combination, strict=True):
            out = out.replace(f"${var}", choice)
        yield out


def exposed(texts: list[str]) -> Exposed:
    """Every sample of the workers' expositions, by sample name."""
    out: Exposed = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _matches(labels: dict[str, str], matchers: str) -> bool:
    for label, op, want in _MATCHER.findall(matchers):
        have = labels.get(label, "")
        if op == "=" and have != want:
            return False
        if op == "!=" and have == want:
            return False
        if op == "=~" and not re.fullmatch(want, have):
            return False
    return True


def selected(expr: str, series: Exposed) -> list[tuple[str, list[tuple[dict[str, str], float]]]]:
    """Each selector of `expr` with the exposed samples it selects."""
    return [
        (name, [(labels, v) for labels, v in series.get(name, []) if _matches(labels, m or "")])
        for name, m in _SELECTOR.findall(expr)
    ]


def run_every_query(prometheus: Prometheus, series: Exposed) -> set[str]:
    """Run every substituted query; assert no error and data where the series exist.

    Returns the templates that returned data at least once.
    """
    values = {
        "window": prometheus.label_values("window", "revmon_revenue_amount"),
        "kind": prometheus.label_values("kind", "revmon_pipeline_open"),
        "funnel": prometheus.label_values("funnel", "revmon_funnel_open"),
    }
    assert values == {
        "window": ["30d", "7d", "90d"],
        "kind": ["expansion", "new_business", "renewal"],
        "funnel": ["lead", "opportunity"],
    }
    with_data: set[str] = set()
    missing = []
    for board, title, template in templates():
        for expr in substitutions(template, values):
            result = prometheus.query(expr)  # raises on a PromQL error
            expected = all(samples for _, samples in selected(expr, series))
            if result:
                with_data.add(template)
            elif expected:
                missing.append(f"{board}: {title}: {expr}")
            plain = _PLAIN.match(expr)
            if plain is not None and plain.group(1) not in WALL_CLOCK:
                assert_equals_exports(expr, result, selected(expr, series)[0][1])
    assert missing == []
    return with_data


def assert_equals_exports(
    expr: str, result: list[dict[str, object]], samples: list[tuple[dict[str, str], float]]
) -> None:
    """A plain `max without (instance) (x{...})` is the exporting worker's series, once."""

    def key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in labels.items() if k not in ("job", "instance")))

    got = {key(r["metric"]): float(r["value"][1]) for r in result}  # type: ignore[index]
    want: dict[tuple[tuple[str, str], ...], float] = {}
    for labels, value in samples:
        want[key(labels)] = max(value, want.get(key(labels), -math.inf))
    family = FAMILIES.get(family_name(_SELECTOR.findall(expr)[0][0]))
    if family is not None and family.is_state:  # SPEC §3.1–§3.8: one exporter (SPEC §4)
        assert len(samples) == len(want), f"{expr}: exported by more than one worker"
    assert set(got) == set(want), expr
    for labels, value in want.items():
        assert got[labels] == value or (math.isnan(got[labels]) and math.isnan(value)), (
            f"{expr} {labels}: prometheus {got[labels]} != exported {value}"
        )


def with_targets(config: Path, history: Path, interval: str = "1s") -> Path:
    """The config with a target for every quarter of the history, so that coverage and
    gap exist, and a short publish interval."""
    with history.open() as lines:
        years = sorted({orjson.loads(line)["occurred_at"][:4] for line in lines})
    data = yaml.safe_load(config.read_text())
    data["publish_interval"] = interval
    data["targets"] = [
        {"period": f"{year}-Q{q}", "kind": kind, "amount": 50_000_000}
        for year in years
        for q in range(1, 5)
        for kind in ("new_business", "all")
    ]
    config.write_text(yaml.safe_dump(data))
    return config


def caught_up_in_prometheus(prometheus: Prometheus, ports: list[int]) -> Exposed:
    """Wait until the workers' exports have settled and Prometheus holds the last of them
    (the watermark it scraped is the exported one, and rates have two points)."""
    texts = [settled(port) for port in ports]
    series = exposed(texts)
    watermark = series["revmon_watermark_seconds"][0][1]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = prometheus.query("max without (instance) (revmon_watermark_seconds)")
        rates = prometheus.query(f"rate(revmon_events_total[{RATE_INTERVAL}])")
        if found and float(found[0]["value"][1]) == watermark and rates:
            time.sleep(2)  # a couple more scrapes, so that every target holds the same
            return exposed([scrape(port) or "" for port in ports])
        time.sleep(0.5)
    raise AssertionError("prometheus did not scrape the settled exports")


def wait_ready(port: int, limit: float = 60) -> None:
    """Poll until the worker's /readyz answers 200 (partitions assigned, state recovered)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the worker on port {port} never became ready")


def test_every_dashboard_query_works_on_one_worker_then_two(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Every panel query on one worker, then two: no error, data, values equal the export."""
    history = tmp_path / "history.jsonl"
    simulate = ["simulate", "--days", "120", "--seed", "11", "--out", str(history)]
    subprocess.run([sys.executable, "-m", "revmon", *simulate], check=True, capture_output=True)
    lines = history.read_text().splitlines(keepends=True)
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    before.write_text("".join(lines[: len(lines) * 3 // 4]))
    after.write_text("".join(lines[len(lines) * 3 // 4 :]))
    run = groups(broker, tmp_path, before, batch=20)
    config = with_targets(run.pair, history)
    group = f"pair-{run.tag}"
    ports = [free_port(), free_port()]
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{p}" for p in ports], processes)

    start(config, ports[0], processes)
    wait_caught_up(run.connection, group, run.produced.last_offsets)
    series = caught_up_in_prometheus(prometheus, ports[:1])
    one = run_every_query(prometheus, series)

    start(config, ports[1], processes)
    prometheus.wait('count(up{job="revmon"} == 1) == 2')
    wait_ready(ports[1])  # it joined the group: the next events are shared between the two
    rest = asyncio.run(produce_file(after, run.connection, load_settings(config).topics, batch=20))
    wait_caught_up(run.connection, group, rest.last_offsets)
    assert all(applied(scrape(port)) > 0 for port in ports)  # both workers took input
    series = caught_up_in_prometheus(prometheus, ports)
    two = run_every_query(prometheus, series)

    # Every query had data at least once.
    expected = {template for _, _, template in templates()}
    assert expected - one == set()
    assert expected - two == set()

"""The dashboards: committed JSON equals the generator, and every panel follows the rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from revmon.families import FAMILIES
from revmon.grafana import DASHBOARDS_DIR, dashboards, render

REPO = Path(__file__).parents[2]

REQUIRED_VARIABLES = {
    "revmon-revenue-engine.json": {"datasource", "window"},
    "revmon-funnel.json": {"datasource", "window", "funnel"},
    "revmon-pipeline.json": {"datasource", "window", "kind"},
    "revmon-customers.json": {"datasource", "window"},
    "revmon-operations.json": {"datasource"},
}
_METRIC = re.compile(r"\b(revmon_[a-z0-9_]+)\b")
_SUFFIXES = ("_bucket", "_gcount", "_gsum")
BUILT = dashboards()


def family_name(sample: str) -> str:
    """The family a sample name in a query belongs to (`..._bucket` → its gauge histogram)."""
    for suffix in _SUFFIXES:
        base = sample.removesuffix(suffix)
        if base != sample and base in FAMILIES:
            return base
    return sample


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows left out)."""
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str, str]]:
    """(file, panel title, expr) of every query of every dashboard."""
    return [
        (name, panel["title"], target["expr"])
        for name, board in BUILT.items()
        for panel in panels(board)
        for target in panel["targets"]
    ]


@pytest.mark.parametrize("name", sorted(BUILT))
def test_committed_dashboard_is_what_the_generator_writes(name: str) -> None:
    """grafana/dashboards/*.json is byte-equal to `python -m revmon.grafana`'s output."""
    committed = REPO / DASHBOARDS_DIR / name

    assert committed.read_bytes() == render(BUILT[name]), (
        f"{committed} is out of date: run `python -m revmon.grafana` and commit it"
    )


def test_no_stray_dashboard_files() -> None:
    """Every committed dashboard comes from the generator: the five of the README."""
    committed = sorted(p.name for p in (REPO / DASHBOARDS_DIR).glob("*.json"))

    assert committed == sorted(BUILT) == sorted(REQUIRED_VARIABLES)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_every_panel_has_a_unit_a_description_and_the_datasource_variable(name: str) -> None:
    """Panels say what they show (description), in what unit, from `${datasource}`."""
    board = BUILT[name]
    for panel in panels(board):
        where = f"{name}: {panel['title']}"
        assert panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"]["uid"] == "${datasource}", where
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", sorted(BUILT))
def test_variables_are_defined_and_used(name: str) -> None:
    """Each dashboard has its template variables, and every `$var` a query uses is one."""
    board = BUILT[name]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) == REQUIRED_VARIABLES[name]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    used = {
        var
        for panel in panels(board)
        for target in panel["targets"]
        for var in re.findall(r"\$(\w+)", target["expr"])
        if not var.startswith("__")
    }
    assert used == set(variables) - {"datasource"}


@pytest.mark.parametrize(("board", "title", "expr"), queries())
def test_every_rate_uses_the_rate_interval(board: str, title: str, expr: str) -> None:
    """`rate`, `irate` and `increase` take `[$__rate_interval]`, nothing else."""
    for function in re.findall(r"\b(?:rate|irate|increase)\((.*?)\)", expr):
        assert function.endswith("[$__rate_interval]"), f"{board}: {title}: {expr}"


@pytest.mark.parametrize(("board", "title", "expr"), queries())
def test_every_metric_is_in_the_catalogue_and_aggregated_across_workers(
    board: str, title: str, expr: str
) -> None:
    """Each metric a query names is a SPEC family, aggregated as its scope says (SPEC §4)."""
    names = _METRIC.findall(expr)
    assert names, f"{board}: {title}: no revmon metric in {expr}"
    for sample in names:
        family = FAMILIES.get(family_name(sample))
        assert family is not None, sample
        if family.kind == "counter":
            wrapped = f"sum without (instance) (rate({sample}"
        elif family.scope == "worker":
            wrapped = rf"(max|sum|count) without \(instance\) \({sample}"
            assert re.search(wrapped, expr), f"{board}: {title}: {expr}"
            continue
        else:  # owner-scoped: one exporter, so `max`
            wrapped = f"max without (instance) ({sample}"
        assert wrapped in expr, f"{board}: {title}: {sample} not aggregated: {expr}"

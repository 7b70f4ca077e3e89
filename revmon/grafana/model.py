"""Grafana's dashboard JSON as plain dicts: queries aggregated per the catalogue, panels, variables.

Grafana 11 reads these (dashboard `schemaVersion` 39). Every query takes its aggregation
across workers from `revmon.families` (SPEC §4): an owner-scoped series with
`max without (instance)`, a per-worker counter with `sum without (instance)` of its
`rate(...[$__rate_interval])`, a per-worker timestamp with `max without (instance)`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from revmon.families import FAMILIES

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24
_HISTOGRAM_SUFFIXES = ("_bucket", "_gcount", "_gsum")

# Units (Grafana's unit ids).
RATIO = "percentunit"
MULTIPLE = "suffix:×"
COUNT = "short"
SECONDS = "s"
PER_SECOND = "cps"
MONTHS = "suffix: months"


def amount_unit(currency: str) -> str:
    """Grafana's unit for amounts in the reporting currency (`currencyUSD`)."""
    return f"currency{currency}"


def aggregation(name: str) -> str:
    """How a sample name aggregates across workers: `max` or `sum` (SPEC §4).

    A name the catalogue does not know yet (a SPEC v2 family) is owner-scoped, like every
    §3.1–§3.8 family: `max`.
    """
    family = FAMILIES.get(name)
    for suffix in _HISTOGRAM_SUFFIXES:
        if family is None and name.endswith(suffix):
            family = FAMILIES.get(name.removesuffix(suffix))
    return "max" if family is None else family.aggregation


def value(name: str, selector: str = "") -> str:
    """The deployment's value of a gauge: `max without (instance) (name{selector})`."""
    labels = f"{{{selector}}}" if selector else ""
    return f"{aggregation(name)} without (instance) ({name}{labels})"


def rate(name: str, selector: str = "") -> str:
    """The deployment's per-second rate of a counter, summed over workers."""
    labels = f"{{{selector}}}" if selector else ""
    return f"sum without (instance) (rate({name}{labels}[$__rate_interval]))"


def quantile(q: float, histogram: str, selector: str) -> str:
    """The `q` quantile of a gauge histogram's buckets (p50: `q=0.5`)."""
    return f"histogram_quantile({q}, {value(histogram + '_bucket', selector)})"


def mean(histogram: str, selector: str) -> str:
    """`_gsum / _gcount` of a gauge histogram."""
    return f"{value(histogram + '_gsum', selector)} / {value(histogram + '_gcount', selector)}"


@dataclass(frozen=True, slots=True)
class Query:
    """One PromQL target of a panel."""

    expr: str
    legend: str = ""
    heatmap: bool = False

    def target(self, ref: str, instant: bool) -> dict[str, Any]:
        """Grafana's target object."""
        out: dict[str, Any] = {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "instant": instant,
            "legendFormat": self.legend or "__auto",
            "range": not instant,
            "refId": ref,
        }
        if self.heatmap:
            out["format"] = "heatmap"
        return out


@dataclass(frozen=True, slots=True)
class Panel:
    """One panel: a type, what it shows and how to read it."""

    kind: str  # timeseries | stat | bargauge | heatmap
    title: str
    description: str
    unit: str
    queries: Sequence[Query]
    width: int = 12
    height: int = 8
    #: A reference line (E:R 0.60, coverage 3, ...) and whether above it is bad.
    line: float | None = None
    above_is_bad: bool = True
    stacked: bool = False
    bars: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        """Grafana's panel object at grid position (x, y)."""
        instant = self.kind in ("stat", "bargauge")
        defaults: dict[str, Any] = {"unit": self.unit, "thresholds": self._thresholds()}
        if self.kind == "timeseries":
            defaults["custom"] = {
                "drawStyle": "bars" if self.bars else "line",
                "fillOpacity": 80 if self.bars else 10,
                "stacking": {"group": "A", "mode": "normal" if self.stacked else "none"},
                "thresholdsStyle": {"mode": "line" if self.line is not None else "off"},
            }
        panel: dict[str, Any] = {
            "datasource": DATASOURCE,
            "description": self.description,
            "fieldConfig": {"defaults": defaults, "overrides": []},
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "id": panel_id,
            "options": self._options(),
            "targets": [q.target(chr(ord("A") + i), instant) for i, q in enumerate(self.queries)],
            "title": self.title,
            "type": self.kind,
        }
        panel.update(self.extra)
        return panel

    def _thresholds(self) -> dict[str, Any]:
        if self.line is None:
            steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
        else:
            below, above = ("green", "red") if self.above_is_bad else ("red", "green")
            steps = [{"color": below, "value": None}, {"color": above, "value": self.line}]
        return {"mode": "absolute", "steps": steps}

    def _options(self) -> dict[str, Any]:
        if self.kind == "timeseries":
            return {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        if self.kind == "heatmap":
            return {
                "calculate": False,
                "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "yAxis": {"axisPlacement": "left", "unit": self.unit},
                "tooltip": {"mode": "single", "yHistogram": False},
                "rowsFrame": {"layout": "le"},
            }
        reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
        if self.kind == "bargauge":
            return {"displayMode": "gradient", "orientation": "horizontal", "reduceOptions": reduce}
        return {"colorMode": "value", "graphMode": "area", "reduceOptions": reduce}


def datasource_variable() -> dict[str, Any]:
    """The Prometheus data source as a variable (`${datasource}` in every panel)."""
    return {
        "current": {},
        "hide": 0,
        "includeAll": False,
        "label": "Data source",
        "multi": False,
        "name": "datasource",
        "options": [],
        "query": "prometheus",
        "refresh": 1,
        "regex": "",
        "type": "datasource",
    }


def label_variable(
    name: str, label: str, metric: str, default: str | None = None
) -> dict[str, Any]:
    """A variable holding each value of `metric`'s label `name` (one at a time)."""
    query = f"label_values({metric}, {name})"
    current = {} if default is None else {"selected": True, "text": default, "value": default}
    return {
        "current": current,
        "datasource": DATASOURCE,
        "definition": query,
        "hide": 0,
        "includeAll": False,
        "label": label,
        "multi": False,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-" + name},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


@dataclass(frozen=True, slots=True)
class Dashboard:
    """One dashboard: its panels in reading order, laid out left to right, top to bottom."""

    uid: str
    title: str
    description: str
    variables: Sequence[dict[str, Any]]
    rows: Sequence[tuple[str, Sequence[Panel]]]

    def render(self) -> dict[str, Any]:
        """Grafana's dashboard JSON."""
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": True,
            "graphTooltip": 1,
            "links": [
                {
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "tags": ["revmon"],
                    "title": "revmon",
                    "type": "dashboards",
                }
            ],
            "panels": list(_layout(self.rows)),
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": ["revmon"],
            "templating": {"list": [datasource_variable(), *self.variables]},
            "time": {"from": "now-24h", "to": "now"},
            "timepicker": {},
            "timezone": "utc",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
        }


def _layout(rows: Iterable[tuple[str, Sequence[Panel]]]) -> Iterable[dict[str, Any]]:
    panel_id = 0
    y = 0
    for title, panels in rows:
        panel_id += 1
        yield {
            "collapsed": False,
            "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y},
            "id": panel_id,
            "panels": [],
            "title": title,
            "type": "row",
        }
        y += 1
        x = 0
        line_height = 0
        for panel in panels:
            if x + panel.width > GRID_WIDTH:
                x, y, line_height = 0, y + line_height, 0
            panel_id += 1
            yield panel.render(panel_id, x, y)
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height


# Selectors of the dashboards' variables.
WINDOW = 'window="$window"'
KIND = 'kind="$kind"'
FUNNEL = 'funnel="$funnel"'


def window_variable() -> dict[str, Any]:
    """The window variable: each configured window (SPEC §8 `windows`), 90d first chosen."""
    return label_variable("window", "Window", "revmon_revenue_amount", "90d")

"""revmon's Grafana dashboards as code: `dashboards()` builds them, `grafana/dashboards/` holds
the JSON (`python -m revmon.grafana grafana/dashboards` writes it; a test keeps it equal).

Plain dicts in Grafana 11's dashboard model, no SDK: one module per dashboard, the
builders and the aggregation rules (SPEC §4, from `revmon.families`) in `model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from revmon.grafana import customers, funnel, operations, pipeline, revenue
from revmon.grafana.model import amount_unit

#: Where the committed dashboards live, relative to the repository root.
DASHBOARDS_DIR = Path("grafana") / "dashboards"


def dashboards(currency: str = "USD") -> dict[str, dict[str, Any]]:
    """Every dashboard's JSON by file name."""
    money = amount_unit(currency)
    built = [
        revenue.revenue_engine(money),
        funnel.funnel(),
        pipeline.pipeline(money),
        customers.customers(money),
        operations.operations(),
    ]
    return {f"{board.uid}.json": board.render() for board in built}


def render(dashboard: dict[str, Any]) -> bytes:
    """The file contents of a dashboard: stable, indented JSON with a final newline."""
    return orjson.dumps(dashboard, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write(directory: Path) -> list[Path]:
    """Write every dashboard into `directory`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, dashboard in dashboards().items():
        path = directory / name
        path.write_bytes(render(dashboard))
        written.append(path)
    return written

"""`revmon report`: the weekly revenue review, rendered from samples of revmon's series.

- `samples`: what a report renders from (a snapshot of series per week end, alert changes).
- `log`, `prometheus`: the two sources of those samples (a replayed history, range queries).
- `tiles`, `charts`, `page`: pure rendering (headline numbers, SVG charts, the HTML page).
"""

from __future__ import annotations

from pathlib import Path

from revmon.report.page import Source, render
from revmon.report.samples import Week
from revmon.settings import Settings

__all__ = ["Source", "Week", "render", "write"]


def write(out: Path, weeks: list[Week], settings: Settings, source: Source) -> Path:
    """Render the page into `out/index.html` (the directory is created) and return its path."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(render(weeks, settings, source), encoding="utf-8")
    return page

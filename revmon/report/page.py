"""The weekly revenue review as one self-contained HTML page: tiles, charts, lists.

`render` is a pure function of the weeks' samples, the settings and a few facts about the
source: no clock, no network, no engine. The page fetches nothing when opened (styles and
SVG charts are inline) and runs no script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from revmon import __version__
from revmon.report import formats
from revmon.report.charts import Chart, all_charts
from revmon.report.samples import AlertChange, Week
from revmon.report.tiles import Thresholds, Tile, tiles
from revmon.settings import Settings


@dataclass(frozen=True, slots=True)
class Source:
    """Where the numbers came from, said on the page."""

    description: str  # "replay of history.jsonl" / "Prometheus at http://..."
    #: Why the alert lists are empty or partial, when the source cannot know them.
    alerts_note: str = ""


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:18px 32px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#c5cad4;font-size:13px}
main{padding:16px 32px;max-width:1280px}
h2{font-size:16px;margin:28px 0 10px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
.tile{background:#fff;border-radius:6px;padding:12px 14px;border-left:5px solid #9aa3b2}
.tile.ok{border-left-color:#4c9a5b}.tile.bad{border-left-color:#c0413b}
.tile h3{margin:0;font-size:12px;font-weight:600;color:#5b6474;text-transform:uppercase}
.tile .value{font-size:26px;font-weight:600;margin:4px 0}
.tile .delta,.tile .judged{font-size:12px;color:#5b6474}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:12px}
figure{background:#fff;border-radius:6px;margin:0;padding:10px}
figure svg{width:100%;height:auto}figcaption{font-size:13px;font-weight:600}
figure p{font-size:12px;color:#5b6474;margin:4px 0 0}
table{border-collapse:collapse;background:#fff;font-size:13px;min-width:420px}
th,td{padding:5px 10px;text-align:left;border-bottom:1px solid #e3e6eb}
td.n,th.n{text-align:right}.note{font-size:12px;color:#5b6474}
.lists{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:16px}
"""


def _value(tile: Tile, value: float | None, currency: str) -> str:
    if tile.unit == "currency":
        return formats.money(value, currency)
    if tile.unit == "percent":
        return formats.percent(value)
    if tile.unit == "count":
        return formats.count(value)
    if tile.unit == "months":
        return formats.months(value)
    return formats.ratio(value)


def _delta(tile: Tile, currency: str) -> str:
    if tile.value is None or tile.previous is None:
        return "no value a week earlier" if tile.value is not None else "no value this week"
    change = tile.value - tile.previous
    if tile.unit == "currency":
        text = formats.money(change, currency)
    elif tile.unit == "percent":
        text = f"{change * 100:,.1f} pts"
    elif tile.unit == "count":
        text = formats.count(change)
    else:
        text = f"{change:,.2f}"
    arrow = "▲" if change > 0 else "▼" if change < 0 else "="
    plus = "+" if change > 0 and not text.startswith("−") else ""
    return f"{arrow} {plus}{text} on last week"


def _tile(tile: Tile, currency: str) -> str:
    state = {True: " ok", False: " bad", None: ""}[tile.ok]
    return (
        f'<div class="tile{state}" data-tile="{tile.key}">'
        f"<h3>{escape(tile.title)}</h3>"
        f'<div class="value">{escape(_value(tile, tile.value, currency))}</div>'
        f'<div class="delta">{escape(_delta(tile, currency))}</div>'
        f'<div class="judged">{escape(tile.judged_by)}</div></div>'
    )


def _chart(chart: Chart) -> str:
    caption = f"<p>{escape(chart.caption)}</p>" if chart.caption else ""
    return (
        f'<figure class="chart" data-chart="{chart.id}">'
        f"<figcaption>{escape(chart.title)}</figcaption>{chart.svg}{caption}</figure>"
    )


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    def cells(row: Sequence[str], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=n' if i >= numeric_from else ''}>{escape(c)}</{tag}>"
            for i, c in enumerate(row)
        )

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table><thead><tr>{cells(head, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def _undercovered(weeks: Sequence[Week], settings: Settings) -> str:
    last, before = weeks[-1].samples, weeks[-2].samples if len(weeks) > 1 else None
    rows = []
    for segment in settings.segments.names:
        if segment not in settings.segments.cadence:
            continue
        now = last.get("revmon_accounts_undercovered", segment=segment)
        then = before.get("revmon_accounts_undercovered", segment=segment) if before else None
        known = last.get("revmon_accounts", segment=segment)
        rows.append(
            [
                segment,
                formats.duration(settings.segments.cadence[segment]),
                formats.count(now),
                formats.count(known),
                formats.count(then),
            ]
        )
    note = (
        '<p class="note">Counts by segment: revmon never exports account ids as labels '
        "(a label per account would make Prometheus series without bound), so the accounts "
        "themselves are listed by the CRM, not here.</p>"
    )
    table = _table(
        ["segment", "cadence", "undercovered", "accounts", "a week earlier"], rows, numeric_from=2
    )
    return table + note


def _stale(weeks: Sequence[Week], settings: Settings) -> str:
    samples = weeks[-1].samples
    rows = []
    for funnel, config in (
        ("lead", settings.funnels.lead),
        ("opportunity", settings.funnels.opportunity),
    ):
        for stage in config.stages:
            stale = samples.get("revmon_funnel_stale", funnel=funnel, stage=stage)
            opened = samples.get("revmon_funnel_open", funnel=funnel, stage=stage)
            share = samples.get("revmon_funnel_stale_ratio", funnel=funnel, stage=stage)
            sla = config.sla.get(stage)
            rows.append(
                [
                    f"{funnel} {stage}",
                    formats.duration(sla) if sla is not None else "–",
                    formats.count(stale),
                    formats.count(opened),
                    formats.percent(share),
                ]
            )
    return _table(["stage", "SLA", "stale", "open", "stale share"], rows, numeric_from=2)


def _firing(week: Week) -> str:
    """The rules with firing instances at the week's end (`revmon_alerts_firing`, both sources)."""
    rows = [
        [dict(labels).get("alertname", ""), dict(labels).get("severity", ""), formats.count(n)]
        for labels, n in sorted(week.samples.select("revmon_alerts_firing").items())
        if n > 0
    ]
    if not rows:
        return '<p class="note">No alert is firing at the week\'s end.</p>'
    return _table(["alert", "severity", "firing instances"], rows, numeric_from=2)


def _alerts(week: Week, source: Source, zone: ZoneInfo) -> str:
    if week.changes is None:
        return f'<p class="note">{escape(source.alerts_note)}</p>'
    if not week.changes:
        return '<p class="note">No alert fired or resolved this week.</p>'
    rows = [_alert_row(change, zone) for change in week.changes]
    note = f'<p class="note">{escape(source.alerts_note)}</p>' if source.alerts_note else ""
    return _table(["when", "alert", "status", "labels", "summary"], rows, numeric_from=9) + note


def _alert_row(change: AlertChange, zone: ZoneInfo) -> list[str]:
    at = datetime.fromtimestamp(change.at, zone)
    labels = ", ".join(
        f"{k}={v}" for k, v in sorted(change.labels.items()) if k not in ("alertname", "severity")
    )
    return [f"{at:%a %d %b %H:%M}", change.alertname, change.status, labels, change.summary]


def render(weeks: Sequence[Week], settings: Settings, source: Source) -> str:
    """The page for `weeks` (oldest first, at least one)."""
    if not weeks:
        raise ValueError("a report needs at least one week")
    zone = ZoneInfo(settings.timezone)
    last = weeks[-1]
    threshold = Thresholds.from_settings(settings).er
    title = (
        f"Weekly revenue review — week of {formats.day(last.start)} "
        f"({formats.week_label(last.end)})"
    )
    span = (
        f"{len(weeks)} weeks, {formats.day(weeks[0].start)} to "
        f"{formats.day(last.end)} 00:00 {settings.timezone}; amounts in {settings.currency}"
    )
    tile_html = "".join(_tile(t, settings.currency) for t in tiles(weeks, settings))
    chart_html = "".join(_chart(c) for c in all_charts(weeks, settings, threshold))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{_STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1><p>{escape(span)}. Source: "
        f"{escape(source.description)}. revmon {escape(__version__)}.</p></header><main>"
        f'<h2>Headlines</h2><div class="tiles">{tile_html}</div>'
        f'<h2>Charts</h2><div class="charts">{chart_html}</div>'
        '<h2>Lists</h2><div class="lists">'
        f"<section><h3>Undercovered key accounts by segment</h3>"
        f"{_undercovered(weeks, settings)}</section>"
        f"<section><h3>Stale inventory by stage</h3>{_stale(weeks, settings)}</section>"
        f"<section><h3>Alerts fired and resolved this week</h3>"
        f"{_alerts(last, source, zone)}</section>"
        f"<section><h3>Alerts firing at the week's end</h3>{_firing(last)}</section></div>"
        "</main></body></html>\n"
    )

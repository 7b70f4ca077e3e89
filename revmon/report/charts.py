"""The report's charts, drawn by matplotlib into SVG text to inline in the page.

Pure: each function takes the weeks' samples and returns one `Chart` (an id, a title, the
SVG). No pyplot (no global state, no display): a `Figure` renders itself. Text stays text
in the SVG (`svg.fonttype: none`) and ids are salted per chart, so seven charts can share
one page without clashing, and the same input always gives the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from revmon.report.formats import short_money
from revmon.report.samples import Week
from revmon.settings import Settings

PALETTE = ("#3566a8", "#e08a2e", "#4c9a5b", "#c0413b", "#8062a8", "#7f7f7f", "#b8a33a")
KINDS = ("new_business", "expansion", "renewal")
MOVEMENTS_UP = ("new", "expansion")
MOVEMENTS_DOWN = ("contraction", "churn")


@dataclass(frozen=True, slots=True)
class Chart:
    """One drawn chart."""

    id: str
    title: str
    svg: str
    caption: str = ""


def _figure(width: float = 7.2, height: float = 3.2) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _svg(figure: Figure, salt: str) -> str:
    buffer = io.StringIO()
    with mpl.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 9}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE


def _labels(weeks: Sequence[Week]) -> list[str]:
    return [f"{w.start:%d %b}" for w in weeks]


def _money_axis(axes: Axes, currency: str) -> None:
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _: short_money(v, currency)))


def _tidy(axes: Axes, labels: Sequence[str], every: int = 1) -> None:
    shown = [label if i % every == 0 else "" for i, label in enumerate(labels)]
    axes.set_xticks(range(len(labels)), shown, rotation=45, ha="right")
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="y", alpha=0.3)


def _stacked(
    axes: Axes,
    series: dict[str, list[float]],
    *,
    sign: float = 1.0,
    colors: Sequence[str] = PALETTE,
) -> None:
    bottom = [0.0] * len(next(iter(series.values()), []))
    for i, (name, values) in enumerate(series.items()):
        heights = [sign * v for v in values]
        axes.bar(
            range(len(values)),
            heights,
            bottom=bottom,
            label=name.replace("_", " "),
            color=colors[i % len(colors)],
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]


def _each(weeks: Sequence[Week], name: str, **labels: str) -> list[float]:
    """The value of one series at each week's end (0 where absent)."""
    return [w.samples.get(name, **labels) or 0.0 for w in weeks]


def _each_total(weeks: Sequence[Week], name: str, **labels: str) -> list[float]:
    """The sum of the matching series at each week's end (0 where absent)."""
    return [w.samples.total(name, **labels) or 0.0 for w in weeks]


def flow_by_kind(weeks: Sequence[Week], settings: Settings) -> Chart:
    """Created, won and lost amount of each week (7d window at the week's end), by kind."""
    figure = _figure(height=3.4)
    panels = figure.subplots(1, 3, sharey=True)
    labels = _labels(weeks)
    for axes, (what, name) in zip(
        panels,
        (
            ("created", "revmon_pipeline_created_amount"),
            ("won", "revmon_pipeline_won_amount"),
            ("lost", "revmon_pipeline_lost_amount"),
        ),
        strict=True,
    ):
        series = {kind: _each(weeks, name, kind=kind, window="7d") for kind in KINDS}
        _stacked(axes, series)
        axes.set_title(what)
        _tidy(axes, labels, every=max(1, (len(labels) + 5) // 6))
    _money_axis(panels[0], settings.currency)
    panels[0].legend(loc="upper left", fontsize=7, frameon=False)
    return Chart("flow", "Pipeline created, won and lost per week, by kind", _svg(figure, "flow"))


def open_pipeline(weeks: Sequence[Week], settings: Settings) -> Chart:
    """Open pipeline amount at each week's end, stacked by stage."""
    figure = _figure()
    axes = figure.subplots()
    stages = settings.funnels.opportunity.stages
    series = {
        stage: _each_total(weeks, "revmon_pipeline_open_amount", stage=stage) for stage in stages
    }
    _stacked(axes, series)
    _tidy(axes, _labels(weeks))
    _money_axis(axes, settings.currency)
    axes.legend(loc="upper left", fontsize=7, frameon=False, ncols=len(stages))
    return Chart("open", "Open pipeline by stage", _svg(figure, "open"))


def inventory(weeks: Sequence[Week], settings: Settings) -> Chart:
    """Open entities and their stale share per stage, at the last week's end."""
    figure = _figure(height=3.0)
    panels = figure.subplots(1, 2)
    samples = weeks[-1].samples
    for axes, (funnel, stages) in zip(
        panels,
        (
            ("lead", settings.funnels.lead.stages),
            ("opportunity", settings.funnels.opportunity.stages),
        ),
        strict=True,
    ):
        opened = [samples.get("revmon_funnel_open", funnel=funnel, stage=s) or 0.0 for s in stages]
        stale = [samples.get("revmon_funnel_stale", funnel=funnel, stage=s) or 0.0 for s in stages]
        fresh = [o - s for o, s in zip(opened, stale, strict=True)]
        axes.bar(range(len(stages)), fresh, color=PALETTE[0], label="within SLA")
        axes.bar(range(len(stages)), stale, bottom=fresh, color=PALETTE[3], label="stale")
        for i, (o, s) in enumerate(zip(opened, stale, strict=True)):
            if o > 0:
                axes.annotate(f"{s / o:.0%}", (i, o), ha="center", va="bottom", fontsize=7)
        axes.set_title(f"{funnel} funnel")
        _tidy(axes, list(stages))
    panels[0].legend(loc="upper right", fontsize=7, frameon=False)
    return Chart(
        "inventory",
        "Funnel inventory and stale share by stage",
        _svg(figure, "inventory"),
        "Open entities at the week's end; the red part is older than the stage's SLA.",
    )


def conversion(weeks: Sequence[Week], settings: Settings) -> Chart:
    """Conversion ratio (30d) of every open stage over the weeks."""
    figure = _figure()
    axes = figure.subplots()
    labels = _labels(weeks)
    i = 0
    for funnel, stages, style in (
        ("lead", settings.funnels.lead.stages, "--"),
        ("opportunity", settings.funnels.opportunity.stages, "-"),
    ):
        for stage in stages:
            values = [
                w.samples.get(
                    "revmon_funnel_conversion_ratio", funnel=funnel, stage=stage, window="30d"
                )
                for w in weeks
            ]
            axes.plot(
                range(len(weeks)),
                [float("nan") if v is None else v for v in values],
                style,
                marker="o",
                markersize=3,
                color=PALETTE[i % len(PALETTE)],
                label=f"{funnel} {stage}",
            )
            i += 1
    axes.set_ylim(0, 1.05)
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    _tidy(axes, labels)
    axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    return Chart("conversion", "Conversion by stage (30d)", _svg(figure, "conversion"))


def mrr_movements(weeks: Sequence[Week], settings: Settings) -> Chart:
    """MRR movements of each week (7d window): gains above zero, losses below."""
    figure = _figure()
    axes = figure.subplots()

    def movement(name: str) -> list[float]:
        return _each(weeks, "revmon_mrr_movement_amount", movement=name, window="7d")

    _stacked(axes, {m: movement(m) for m in MOVEMENTS_UP}, colors=(PALETTE[2], PALETTE[0]))
    _stacked(
        axes, {m: movement(m) for m in MOVEMENTS_DOWN}, sign=-1.0, colors=(PALETTE[1], PALETTE[3])
    )
    axes.axhline(0, color="#333", linewidth=0.8)
    _tidy(axes, _labels(weeks))
    _money_axis(axes, settings.currency)
    axes.legend(loc="upper left", fontsize=7, frameon=False, ncols=4)
    return Chart("mrr", "MRR movements per week", _svg(figure, "mrr"))


def er_ratio(weeks: Sequence[Week], settings: Settings, threshold: float) -> Chart:
    """E:R over the weeks (30d and 90d windows), with the alert threshold."""
    figure = _figure()
    axes = figure.subplots()
    for i, window in enumerate(("30d", "90d")):
        values = [w.samples.get("revmon_er_ratio", window=window) for w in weeks]
        axes.plot(
            range(len(weeks)),
            [float("nan") if v is None else v for v in values],
            marker="o",
            markersize=3,
            color=PALETTE[i],
            label=f"E:R {window}",
        )
    axes.axhline(threshold, color=PALETTE[3], linestyle="--", label=f"threshold {threshold:.2f}")
    axes.set_ylim(bottom=0)
    _tidy(axes, _labels(weeks))
    axes.legend(loc="upper left", fontsize=7, frameon=False, ncols=3)
    return Chart("er", "Expense-to-revenue (E:R)", _svg(figure, "er"))


def effort_vs_revenue(weeks: Sequence[Week], settings: Settings) -> Chart:
    """Share of sales time (90d) against share of 365-day revenue, by segment, last week."""
    figure = _figure(height=3.0)
    axes = figure.subplots()
    samples = weeks[-1].samples
    effort = samples.by("segment", "revmon_sales_activity_seconds", window="90d")
    revenue = samples.by("segment", "revmon_segment_revenue_amount")
    segments = [s for s in settings.segments.names if s in effort or s in revenue]
    total_effort = sum(effort.values()) or 1.0
    total_revenue = sum(v for v in revenue.values() if v > 0) or 1.0
    xs = range(len(segments))
    axes.bar(
        [x - 0.2 for x in xs],
        [effort.get(s, 0.0) / total_effort for s in segments],
        width=0.4,
        color=PALETTE[0],
        label="share of sales time (90d)",
    )
    axes.bar(
        [x + 0.2 for x in xs],
        [max(revenue.get(s, 0.0), 0.0) / total_revenue for s in segments],
        width=0.4,
        color=PALETTE[2],
        label="share of revenue (365d)",
    )
    axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    _tidy(axes, segments)
    axes.legend(loc="upper left", fontsize=7, frameon=False)
    return Chart("effort", "Effort share against revenue share by segment", _svg(figure, "effort"))


def all_charts(weeks: Sequence[Week], settings: Settings, er_threshold: float) -> list[Chart]:
    """Every chart of the report, in page order."""
    return [
        flow_by_kind(weeks, settings),
        open_pipeline(weeks, settings),
        inventory(weeks, settings),
        conversion(weeks, settings),
        mrr_movements(weeks, settings),
        er_ratio(weeks, settings, er_threshold),
        effort_vs_revenue(weeks, settings),
    ]

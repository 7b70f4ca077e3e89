"""The headline tiles of the weekly review: a value, its change on last week, its yardstick.

Pure: a function of the weeks' samples and the settings' thresholds. The equal-tiles test
compares exactly these values between a replayed log and Prometheus.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from revmon.report.samples import Samples, Week
from revmon.settings import Settings

Unit = Literal["ratio", "percent", "currency", "count", "months"]

#: The window of the ratios a quarterly review reads (E:R, retention, churn, unit economics).
REVIEW_WINDOW = "90d"


@dataclass(frozen=True, slots=True)
class Tile:
    """One headline number: now, a week ago, and what it is judged by."""

    key: str
    title: str
    value: float | None
    previous: float | None
    unit: Unit
    judged_by: str
    ok: bool | None  # None: no verdict (no value, or nothing to judge it by)


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The yardsticks, taken from the shipped alert rules where the config has them."""

    er: float = 0.6
    pace: float = 0.6
    coverage: float = 3.0
    churn: float = 0.05
    nrr: float = 1.0
    quick_ratio: float = 4.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        """The thresholds of the config's rules (ExpenseToRevenueHigh, ...), else the defaults."""
        rules = {rule.name: rule.threshold for rule in settings.alerts}
        default = cls()
        return cls(
            er=rules.get("ExpenseToRevenueHigh", default.er),
            pace=rules.get("NewBusinessPipelineThinning", default.pace),
            coverage=rules.get("PipelineCoverageLow", float(settings.pipeline.required_coverage)),
            churn=rules.get("CustomerChurnHigh", default.churn),
        )


def _coverage_labels(samples: Samples) -> dict[str, str] | None:
    """The labels of the new-business coverage series of the current target (quarter first)."""
    found = sorted(
        dict(labels)["period"]
        for labels in samples.select("revmon_pipeline_gap_amount", kind="new_business")
    )
    if not found:
        found = sorted(
            dict(labels)["period"]
            for labels in samples.select("revmon_pipeline_gap_amount", kind="all")
        )
        kind = "all"
    else:
        kind = "new_business"
    if not found:
        return None
    quarters = [p for p in found if "Q" in p]
    return {"period": (quarters or found)[0], "kind": kind}


def _values(samples: Samples) -> dict[str, float | None]:
    w = REVIEW_WINDOW
    coverage = _coverage_labels(samples)
    firing = samples.total("revmon_alerts_firing")
    return {
        "er": samples.get("revmon_er_ratio", window=w),
        "pace": samples.get("revmon_pipeline_creation_pace_ratio", kind="new_business"),
        "coverage": (
            samples.get("revmon_pipeline_coverage_ratio", **coverage) if coverage else None
        ),
        "gap": samples.get("revmon_pipeline_gap_amount", **coverage) if coverage else None,
        "nrr": samples.get("revmon_net_revenue_retention_ratio", window=w),
        "churn": samples.get("revmon_customer_churn_ratio", window=w),
        "firing": firing if firing is not None else 0.0,
        "quick_ratio": samples.get("revmon_quick_ratio", window=w),
        "cac_payback": samples.get("revmon_cac_payback_months", window=w),
        "magic_number": samples.get("revmon_magic_number", window=w),
    }


def _verdict(value: float | None, good: bool) -> bool | None:
    return None if value is None else good


def tiles(weeks: Sequence[Week], settings: Settings) -> list[Tile]:
    """The headline tiles of the last week, each with the week before for comparison."""
    t = Thresholds.from_settings(settings)
    now = _values(weeks[-1].samples) if weeks else {}
    before = _values(weeks[-2].samples) if len(weeks) > 1 else {}
    period = _coverage_labels(weeks[-1].samples) if weeks else None
    target = f"{period['kind'].replace('_', '-')} target {period['period']}" if period else ""

    def tile(key: str, title: str, unit: Unit, judged_by: str, ok: bool | None) -> Tile:
        return Tile(key, title, now.get(key), before.get(key), unit, judged_by, ok)

    def value(name: str) -> float | None:
        return now.get(name)

    er, pace, cov, gap = value("er"), value("pace"), value("coverage"), value("gap")
    nrr, churn, quick = value("nrr"), value("churn"), value("quick_ratio")
    return [
        tile("er", "E:R (90d)", "ratio", f"alert at ≥ {t.er:.2f}", _verdict(er, (er or 0) < t.er)),
        tile(
            "pace",
            "New-business creation pace",
            "ratio",
            f"30d vs 90d/3; alert below {t.pace:.2f}",
            _verdict(pace, (pace or 0) >= t.pace),
        ),
        tile(
            "coverage",
            "Pipeline coverage",
            "ratio",
            f"need ≥ {t.coverage:g}× of {target}" if period else "no target configured",
            _verdict(cov, (cov or 0) >= t.coverage),
        ),
        tile(
            "gap",
            "Pipeline gap",
            "currency",
            f"to {t.coverage:g}× coverage of {target}" if period else "no target configured",
            _verdict(gap, (gap or 0) <= 0),
        ),
        tile(
            "nrr",
            "Net revenue retention (90d)",
            "percent",
            f"target ≥ {t.nrr:.0%}",
            _verdict(nrr, (nrr or 0) >= t.nrr),
        ),
        tile(
            "churn",
            "Customer churn (90d)",
            "percent",
            f"alert above {t.churn:.0%}",
            _verdict(churn, (churn or 0) <= t.churn),
        ),
        tile("firing", "Firing alerts", "count", "at the week's end", value("firing") == 0),
        tile(
            "quick_ratio",
            "Quick ratio (90d)",
            "ratio",
            f"MRR gained / lost; healthy ≥ {t.quick_ratio:g}",
            _verdict(quick, (quick or 0) >= t.quick_ratio),
        ),
        tile("cac_payback", "CAC payback (90d)", "months", "S&M / new MRR", None),
        tile("magic_number", "Magic number (90d)", "ratio", "net new ARR / S&M", None),
    ]

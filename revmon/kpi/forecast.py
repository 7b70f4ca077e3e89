"""Forecast (SPEC §3.8): stage win ratios of recently closed deals and the expected pipeline.

The state is the pipeline book's (`kpi/pipeline.py`): at each close it records, per open
stage the opportunity ever reached, one "reached" point and, for a win, one "reached and
won" point, dated by the close (a re-open retracts them; the latest close counts). A
stage the opportunity skipped is not reached. Over the last 365 days:

    revmon_stage_win_ratio{kind, stage} = reached and won / reached     (only if reached > 0)
    revmon_pipeline_expected_amount{kind} = Σ_stage open amount(kind, stage) × ratio(kind, stage)

Both are computed from partials summed over partitions, so the ratio of a stage is the
ratio of all partitions' closes. An open stage without a ratio (nothing that reached it
closed in 365 days) contributes 0 to the expected amount: no evidence, no forecast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from revmon.kpi.ledger import Sample, component
from revmon.kpi.pipeline import KINDS, OPEN_AMOUNT, STAGE_REACHED, STAGE_REACHED_WON, SeriesList
from revmon.settings import Settings


def stage_win_ratios(
    settings: Settings, partials: Mapping[str, float]
) -> dict[tuple[str, str], float]:
    """The win ratio of each (kind, open stage) that closed opportunities reached in 365 days."""
    ratios: dict[tuple[str, str], float] = {}
    for kind in KINDS:
        for stage in settings.funnels.opportunity.stages:
            reached = partials.get(component(STAGE_REACHED, kind, stage), 0.0)
            if reached > 0:
                won = partials.get(component(STAGE_REACHED_WON, kind, stage), 0.0)
                ratios[(kind, stage)] = won / reached
    return ratios


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The §3.8 series from the pipeline book's summed partials (`now` is not needed here)."""
    del now  # the 365-day horizon is applied by the book's partials
    out = SeriesList()
    ratios = stage_win_ratios(settings, partials)
    for (kind, stage), ratio in ratios.items():
        out.add("revmon_stage_win_ratio", (("kind", kind), ("stage", stage)), ratio)
    for kind in KINDS:
        expected = math.fsum(
            partials.get(component(OPEN_AMOUNT, kind, stage), 0.0) * ratios.get((kind, stage), 0.0)
            for stage in settings.funnels.opportunity.stages
        )
        out.add("revmon_pipeline_expected_amount", (("kind", kind),), expected)
    return out.samples()

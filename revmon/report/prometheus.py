"""The report's samples from a Prometheus that scrapes revmon (`revmon report --prometheus`).

Each family the report reads is aggregated across workers in PromQL as SPEC §4 says
(`max without (instance)` for the series one owner exports, `sum` for per-worker
counters; from the catalogue, `revmon.families`), `job` dropped too since a report reads
one deployment, and all of them are read in one query per week's end.

Which instant is a week's end: on the wall clock (`clock: wall`, production) the sample
timestamps are evaluation instants, so the week ending at W is read at W (Prometheus takes
the last scrape before it). On the event clock (a replay or `revmon run` fed a history)
they are not: the week ending at W is read at the last scrape whose
`revmon_watermark_seconds` (the evaluation instant, SPEC §3.9) is still before W, found
with a range query over the last `EVENT_CLOCK_LOOKBACK` of wall time.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from revmon.errors import SourceError
from revmon.families import FAMILIES
from revmon.replay import Cutoff
from revmon.report.page import Source
from revmon.report.samples import Samples, SeriesKey, Week, key, last_week_end, week_ends
from revmon.settings import Settings

#: Every family the report reads (tiles, charts, lists).
READ = (
    "revmon_er_ratio",
    "revmon_pipeline_creation_pace_ratio",
    "revmon_pipeline_coverage_ratio",
    "revmon_pipeline_gap_amount",
    "revmon_net_revenue_retention_ratio",
    "revmon_customer_churn_ratio",
    "revmon_alerts_firing",
    "revmon_quick_ratio",
    "revmon_cac_payback_months",
    "revmon_magic_number",
    "revmon_pipeline_created_amount",
    "revmon_pipeline_won_amount",
    "revmon_pipeline_lost_amount",
    "revmon_pipeline_open_amount",
    "revmon_funnel_open",
    "revmon_funnel_stale",
    "revmon_funnel_stale_ratio",
    "revmon_funnel_conversion_ratio",
    "revmon_mrr_movement_amount",
    "revmon_sales_activity_seconds",
    "revmon_segment_revenue_amount",
    "revmon_accounts_undercovered",
    "revmon_accounts",
)

#: How far back in wall time the event-clock search for week ends looks (one query, 1s steps).
EVENT_CLOCK_LOOKBACK = 3 * 3600.0
_MAX_POINTS = 11_000  # Prometheus refuses a range query of more points per series

ALERTS_NOTE = (
    "Prometheus keeps how many alerts of each rule were firing (revmon_alerts_firing, the "
    "Firing alerts tile), not when each one fired or resolved: that history is on the "
    "alerts topic (revmon.alerts) and in Alertmanager. A report from a replayed log lists it."
)


#: The label that carries a family's name through the query: aggregation drops `__name__`,
#: and `or` matches elements by their other labels (so `coverage{kind,period}` would hide
#: `gap{kind,period}` without a label of its own).
FAMILY_LABEL = "revmon_report_family"


def query_text(names: Sequence[str] = READ) -> str:
    """One PromQL expression: every family, aggregated across workers, keeping its name."""
    parts = []
    for name in names:
        family = FAMILIES[name]
        aggregated = f"{family.aggregation} without (instance, job) ({name})"
        parts.append(f'label_replace({aggregated}, "{FAMILY_LABEL}", "{name}", "", "")')
    return " or ".join(parts)


class Client:
    """The two Prometheus HTTP API calls the report needs."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, path: str, params: dict[str, str]) -> Any:
        body = urllib.parse.urlencode(params).encode()
        request = urllib.request.Request(  # noqa: S310  # the operator's own Prometheus URL
            f"{self.url}{path}", data=body, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                document = json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            raise SourceError(f"{self.url}{path}: HTTP {exc.code}: {exc.read()[:200]!r}") from exc
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read {self.url}{path}: {exc}") from exc
        if document.get("status") != "success":
            raise SourceError(f"{self.url}{path}: {document.get('error', 'no answer')}")
        return document["data"]

    def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        """`/api/v1/query` at `at` (unix seconds): the vector's elements."""
        return list(self._call("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})["result"])

    def series(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """`/api/v1/query_range`: the matrix's series."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        return list(self._call("/api/v1/query_range", params)["result"])


def samples_at(client: Client, at: float) -> Samples:
    """Every series the report reads, as of `at`."""
    values: dict[SeriesKey, float] = {}
    for element in client.instant(query_text(), at):
        labels = dict(element["metric"])
        labels.pop("__name__", None)
        name = labels.pop(FAMILY_LABEL)
        values[key(name, labels)] = float(element["value"][1])
    return Samples(values)


def watermarks(client: Client, now: float) -> list[tuple[float, float]]:
    """(wall time, evaluation instant) of every scrape-time point over the lookback."""
    start = now - EVENT_CLOCK_LOOKBACK
    step = max(1.0, EVENT_CLOCK_LOOKBACK / (_MAX_POINTS - 1))
    found = client.series("max(revmon_watermark_seconds)", start, now, step)
    if not found:
        return []
    return [(float(t), float(v)) for t, v in found[0]["values"]]


def instants(
    ends: Sequence[datetime], points: Sequence[tuple[float, float]]
) -> dict[datetime, float]:
    """For each week end, the last wall time whose evaluation instant is still before it."""
    out: dict[datetime, float] = {}
    for end in ends:
        before = [wall for wall, mark in points if mark < end.timestamp()]
        if before:
            out[end] = max(before)
    return out


def from_prometheus(
    url: str,
    settings: Settings,
    *,
    weeks: int,
    until: Cutoff | None = None,
    now: float | None = None,
) -> tuple[list[Week], Source]:
    """The weeks of the report read from the Prometheus at `url`, oldest first.

    Raises:
        SourceError: Prometheus cannot be reached, answers an error, or holds no week.
    """
    client = Client(url)
    zone = ZoneInfo(settings.timezone)
    wall = time.time() if now is None else now
    if settings.clock == "wall":
        newest = wall if until is None else min(wall, until.at)
        ends = week_ends(last_week_end(datetime.fromtimestamp(newest, zone), zone), weeks)
        at = {end: end.timestamp() for end in ends}
    else:
        points = watermarks(client, wall)
        if not points:
            raise SourceError(f"{url} holds no revmon_watermark_seconds in the last 3h")
        newest = max(mark for _, mark in points)
        if until is not None:
            newest = min(newest, until.at)
        ends = week_ends(last_week_end(datetime.fromtimestamp(newest, zone), zone), weeks)
        at = instants(ends, points)
    read = [Week(end, samples_at(client, at[end])) for end in ends if end in at]
    found = [week for week in read if week.samples.values]  # weeks before revmon ran
    if not found:
        raise SourceError(f"{url} holds no revmon series for the weeks asked")
    clock = "wall clock" if settings.clock == "wall" else "event clock, by revmon_watermark_seconds"
    return found, Source(f"Prometheus at {url} ({clock})", alerts_note=ALERTS_NOTE)

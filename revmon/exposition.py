"""Every metric revmon exports, declared once against an injected registry (SPEC §3.9)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from revmon import __version__
from revmon.events import EVENT_TYPES, Reason
from revmon.families import help_text, state_families
from revmon.kpi.ledger import Sample
from revmon.settings import Settings

# `_created` series double the exposition and no dashboard or rule of revmon reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class OperationsMetrics:
    """The operational series: applied, rejected, duplicate and late events, clocks, build.

    Counters are per worker process; Prometheus adds them with `sum without (instance)`.
    Every labelled series the config enumerates exists from the start, at 0.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        settings: Settings,
        *,
        watermark: Callable[[], float | None],
        newest_event: Callable[[], float | None],
        wall_clock: Callable[[], float],
        clock_owner: Callable[[], bool] = lambda: True,
        ready: Callable[[], bool] = lambda: True,
        sources: Callable[[], Iterable[Freshness]] = tuple,
    ) -> None:
        self.events = Counter(
            "revmon_events",
            "Valid, non-duplicate events applied, by type.",
            ["type"],
            registry=registry,
        )
        self.rejected = Counter(
            "revmon_events_rejected",
            "Messages or batch elements rejected, by reason.",
            ["reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "revmon_events_duplicate",
            "Events ignored because their event_id was applied.",
            registry=registry,
        )
        self.late = Counter(
            "revmon_events_late",
            "Events older than their entity's current stage entry (applied, change nothing).",
            registry=registry,
        )
        self.metric_messages = Counter(
            "revmon_metric_messages",
            "Messages written to the metrics topic (values, nulls and tombstones).",
            registry=registry,
        )
        alerts = Gauge(
            "revmon_alerts_firing",
            "Firing alert instances of the rule (evaluated on the owner of the revenue "
            "metrics; max without (instance)).",
            ["alertname", "severity"],
            registry=registry,
        )
        self.notifications = Counter(
            "revmon_alert_notifications",
            "Alert notifications by receiver (alertmanager, topic) and result "
            "(sent, failed, dropped).",
            ["receiver", "result"],
            registry=registry,
        )
        for receiver in ("alertmanager", "topic"):
            for result in ("sent", "failed", "dropped"):
                self.notifications.labels(receiver=receiver, result=result)
        build = Gauge("revmon_build_info", "revmon's version.", ["version"], registry=registry)
        build.labels(version=__version__).set(1)
        for event_type in EVENT_TYPES:
            self.events.labels(type=event_type)
        for reason in Reason:
            self.rejected.labels(reason=reason.value)
        for rule in settings.alerts:
            alerts.labels(alertname=rule.name, severity=rule.severity).set(0)
        self.alerts_firing = alerts
        registry.register(_ClockCollector(watermark, newest_event, wall_clock, clock_owner))
        registry.register(_ReadyCollector(ready))
        registry.register(_FreshnessCollector(sources))

    def set_firing(self, alertname: str, severity: str, count: int) -> None:
        """`revmon_alerts_firing` of one rule."""
        self.alerts_firing.labels(alertname=alertname, severity=severity).set(count)

    def count_notifications(self, receiver: str, result: str, n: int) -> None:
        """Add to `revmon_alert_notifications_total`."""
        self.notifications.labels(receiver=receiver, result=result).inc(n)


class Freshness(NamedTuple):
    """One input topic's freshness on this worker: last message received (wall clock) and
    newest `occurred_at` applied, unix seconds, over the partitions the worker owns."""

    source: str
    last_message: float | None
    newest_event: float | None


class _ReadyCollector(Collector):
    """`revmon_ready`: 1 when /readyz answers 200 (RevmonNotReady reads it)."""

    def __init__(self, ready: Callable[[], bool]) -> None:
        self._ready = ready

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "revmon_ready",
            "1 when this worker is ready (/readyz answers 200), else 0.",
            1.0 if self._ready() else 0.0,
        )


class _FreshnessCollector(Collector):
    """Source freshness per input topic (SPEC §3.9); the deployment's value is the max over
    workers (`max without (instance)`), since each worker reports the partitions it owns."""

    def __init__(self, sources: Callable[[], Iterable[Freshness]]) -> None:
        self._sources = sources

    def collect(self) -> Iterable[Metric]:
        last = GaugeMetricFamily(
            "revmon_source_last_message_timestamp_seconds",
            "Wall-clock time the last message of the input topic was received, unix seconds.",
            labels=["source"],
        )
        newest = GaugeMetricFamily(
            "revmon_source_newest_event_timestamp_seconds",
            "Newest occurred_at applied from the input topic, unix seconds.",
            labels=["source"],
        )
        for one in self._sources():
            if one.last_message is not None:
                last.add_metric([one.source], one.last_message)
            if one.newest_event is not None:
                newest.add_metric([one.source], one.newest_event)
        yield last
        yield newest


class _ClockCollector(Collector):
    """`revmon_watermark_seconds` and `revmon_event_lag_seconds`, computed at scrape time.

    Both are global (every partition's newest event), so only one worker exports them.
    """

    def __init__(
        self,
        watermark: Callable[[], float | None],
        newest_event: Callable[[], float | None],
        wall_clock: Callable[[], float],
        owner: Callable[[], bool],
    ) -> None:
        self._watermark = watermark
        self._newest = newest_event
        self._wall = wall_clock
        self._owner = owner

    def collect(self) -> Iterable[Metric]:
        if not self._owner():
            return
        now = self._watermark()
        if now is not None:
            yield GaugeMetricFamily(
                "revmon_watermark_seconds", "The evaluation instant `now`, unix seconds.", now
            )
        newest = self._newest()
        if newest is not None:
            yield GaugeMetricFamily(
                "revmon_event_lag_seconds",
                "Wall clock minus the newest occurred_at applied.",
                self._wall() - newest,
            )


#: Every SPEC §3.1–§3.8 family with its help text (from the catalogue, `revmon.families`).
METRIC_HELP: dict[str, str] = {f.name: f.help for f in state_families()}
GAUGE_HISTOGRAMS = frozenset(f.name for f in state_families() if f.kind == "gaugehistogram")
_GAUGE_HISTOGRAM_SUFFIXES = ("_bucket", "_gcount", "_gsum")


def family_of(sample_name: str) -> str:
    """The metric family a sample belongs to (`..._bucket` of a gauge histogram → its name)."""
    for suffix in _GAUGE_HISTOGRAM_SUFFIXES:
        base = sample_name.removesuffix(suffix)
        if base != sample_name and base in GAUGE_HISTOGRAMS:
            return base
    return sample_name


class KpiCollector(Collector):
    """The revenue metrics (SPEC §3.1–§3.8), computed from the engine's state at scrape time.

    `evaluate()` returns the samples, or None when this worker does not export them.
    """

    def __init__(
        self, evaluate: Callable[[], Sequence[Sample] | None], currency: str = "USD"
    ) -> None:
        self._evaluate = evaluate
        self._help = {name: help_text(name, currency) for name in METRIC_HELP}

    def collect(self) -> Iterable[Metric]:
        samples = self._evaluate()
        if not samples:
            return
        families: dict[str, Metric] = {}
        for sample in samples:
            name = family_of(sample.name)
            family = families.get(name)
            if family is None:
                kind = "gaugehistogram" if name in GAUGE_HISTOGRAMS else "gauge"
                family = families[name] = Metric(name, self._help.get(name, name), kind)
            family.add_sample(sample.name, dict(sample.labels), sample.value)
        yield from families.values()


def render(registry: CollectorRegistry) -> bytes:
    """The Prometheus text exposition of everything in the registry."""
    return generate_latest(registry)

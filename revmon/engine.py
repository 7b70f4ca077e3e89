"""The metric engine: the kpi books of each input partition, fed by applied events.

Each input partition number has its own books, whose containers are journaled with the
partition's state (`revmon.state`). The exported numbers are computed at `now` from the
books' summable partials, added over partitions, so they do not depend on partitioning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from revmon.events import (
    Event,
    OpportunityAmountChanged,
    OpportunityCreated,
    OpportunityStageChanged,
)
from revmon.kpi import finance, forecast, funnel, marketing, pipeline
from revmon.kpi.funnel import Effect, FunnelBook
from revmon.kpi.ledger import Records, Sample, Windows, add_up
from revmon.kpi.marketing import MarketingBook
from revmon.kpi.pipeline import PipelineBook
from revmon.settings import Settings

Ledger = Records | Windows
_OPPORTUNITY_EVENTS = (OpportunityCreated, OpportunityStageChanged, OpportunityAmountChanged)


@dataclass(slots=True)
class PartitionBooks:
    """Every book of one input partition."""

    funnel: FunnelBook
    marketing: MarketingBook
    pipeline: PipelineBook
    finance: finance.FinanceBook

    @classmethod
    def from_settings(cls, settings: Settings) -> PartitionBooks:
        """Empty books for the configuration."""
        return cls(
            FunnelBook.from_settings(settings),
            MarketingBook.from_settings(settings),
            PipelineBook.from_settings(settings),
            finance.FinanceBook.from_settings(settings),
        )

    def ledgers(self) -> dict[str, Ledger]:
        """Every container to journal, by a stable name."""
        return {
            **self.funnel.ledgers(),
            **self.marketing.ledgers(),
            "pipeline.records": self.pipeline.records,
            "pipeline.windows": self.pipeline.windows,
            "finance.windows": self.finance.windows,
        }

    def rebuild(self) -> None:
        """Re-derive every index after the containers were loaded."""
        self.funnel.rebuild()
        self.marketing.rebuild()
        self.pipeline.rebuild()
        self.finance.rebuild()

    def apply(self, event: Event) -> bool:
        """Apply one valid, non-duplicate event; True when it was late (SPEC §1)."""
        move = self.funnel.apply(event)
        late = move is not None and move.effect is Effect.LATE
        self.marketing.apply(event, move)
        if isinstance(event, _OPPORTUNITY_EVENTS):
            late = self.pipeline.apply(event, move) or late
        self.finance.apply(event)
        return late

    def partials(self, now: float) -> dict[str, float]:
        """Every book's summable components at `now`."""
        return {
            **self.funnel.partials(now),
            **self.marketing.partials(now),
            **self.pipeline.partials(now),
            **self.finance.partials(now),
        }


class MetricEngine:
    """The books of the partitions this worker owns (`processors.Engine`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._books: dict[int, PartitionBooks] = {}

    def ledgers(self, partition: int) -> dict[str, Ledger]:
        """Fresh, empty books for `partition`; their containers for recovery to fill."""
        books = self._books[partition] = PartitionBooks.from_settings(self._settings)
        return books.ledgers()

    def recovered(self, partition: int) -> None:
        """Recovery filled `partition`'s containers: re-derive the books' indexes."""
        self._books[partition].rebuild()

    def forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop the books of partitions this worker no longer owns (all when None)."""
        if partitions is None:
            self._books.clear()
        else:
            for partition in partitions:
                self._books.pop(partition, None)

    def apply(self, event: Event, partition: int) -> bool:
        """Apply one event to its partition's books; True when it was late."""
        return self._books[partition].apply(event)

    def partition_partials(self, now: float) -> dict[int, dict[str, float]]:
        """Each of this worker's partitions' components at `now`."""
        return {partition: books.partials(now) for partition, books in self._books.items()}

    def partials(self, now: float) -> dict[str, float]:
        """Every component at `now`, added over this worker's partitions."""
        return add_up(self.partition_partials(now).values())

    def samples(self, now: float, partials: Mapping[str, float] | None = None) -> list[Sample]:
        """Every exported series of SPEC §3.1–§3.5 and §3.8 at `now`.

        `partials` are the components summed over every partition (this worker's when None).
        """
        if partials is None:
            partials = self.partials(now)
        out: list[Sample] = []
        for module in (funnel, marketing, pipeline, forecast, finance):
            out.extend(module.samples(self._settings, partials, now))
        return out

"""The metric engine: the kpi books of each partition, fed by applied events and facts.

Two stages (docs/architecture.md): each input partition has entity books (funnels,
marketing, pipeline, finance) and a subscription router that turns events into account
facts; each partition of the internal accounts topic has an account book. Every book's
containers are journaled with its partition's state (`revmon.state`). The exported
numbers are computed at `now` from the books' summable partials, added over partitions,
so they do not depend on partitioning.
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
from revmon.kpi import accounts, economics, finance, forecast, funnel, marketing, pipeline
from revmon.kpi.accounts import AccountBook
from revmon.kpi.customers import AccountFact, SubscriptionRouter
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
    router: SubscriptionRouter

    @classmethod
    def from_settings(cls, settings: Settings) -> PartitionBooks:
        """Empty books for the configuration."""
        return cls(
            FunnelBook.from_settings(settings),
            MarketingBook.from_settings(settings),
            PipelineBook.from_settings(settings),
            finance.FinanceBook.from_settings(settings),
            SubscriptionRouter(),
        )

    def ledgers(self) -> dict[str, Ledger]:
        """Every container to journal, by a stable name."""
        return {
            **self.funnel.ledgers(),
            **self.marketing.ledgers(),
            "pipeline.records": self.pipeline.records,
            "pipeline.windows": self.pipeline.windows,
            "finance.windows": self.finance.windows,
            "router.records": self.router.records,
            "router.released": self.router.released,
            "router.announced": self.router.announced,
        }

    def rebuild(self) -> None:
        """Re-derive every index after the containers were loaded."""
        self.funnel.rebuild()
        self.marketing.rebuild()
        self.pipeline.rebuild()
        self.finance.rebuild()
        self.router.rebuild()

    def apply(self, event: Event, line: float | None = None) -> bool:
        """Apply one valid, non-duplicate event; True when it was late (SPEC §1).

        Leads and opportunities closed before `line` are forgotten (`closed_retention`).
        """
        move = self.funnel.apply(event, line)
        late = move is not None and move.effect is Effect.LATE
        self.marketing.apply(event, move)
        if isinstance(event, _OPPORTUNITY_EVENTS):
            late = self.pipeline.apply(event, move, line) or late
        self.finance.apply(event)
        return late

    def retire(self, line: float) -> int:
        """Forget the leads and opportunities closed before `line`; how many records."""
        return self.funnel.retire(line) + self.pipeline.retire(line)

    def partials(self, now: float) -> dict[str, float]:
        """Every book's summable components at `now`."""
        return {
            **self.funnel.partials(now),
            **self.marketing.partials(now),
            **self.pipeline.partials(now),
            **self.finance.partials(now),
        }


class MetricEngine:
    """The books of the partitions this worker owns (`processors.Engine`).

    Account facts produced while applying input wait in `outbox` until the worker has
    journaled the batch and sends them to the accounts topic.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._books: dict[int, PartitionBooks] = {}
        self._accounts: dict[int, AccountBook] = {}
        self.outbox: list[AccountFact] = []
        self._source: tuple[str, int, int] = ("", -1, -1)
        self._ordinal = 0

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

    def begin(self, topic: str, partition: int, offset: int) -> None:
        """The events that follow come from this input message (their facts' source)."""
        self._source = (topic, partition, offset)
        self._ordinal = 0

    def apply(self, event: Event, partition: int, newest: float | None = None) -> bool:
        """Apply one event to its partition's books; True when it was late.

        `newest`: the newest `occurred_at` applied on the event's input topic (this event
        included); closed entities `closed_retention` behind it are forgotten.
        """
        books = self._books[partition]
        late = books.apply(event, self._line(newest))
        self._send(books.router.route(event))
        return late

    def retire(self, partition: int, newest: float) -> int:
        """Forget the closed entities every input topic's `apply` would forget by now.

        `newest`: the oldest of the partition's newest `occurred_at` by input topic, so
        that what is dropped here is what any later event would find forgotten anyway.
        """
        line = self._line(newest)
        books = self._books.get(partition)
        return 0 if line is None or books is None else books.retire(line)

    def _line(self, newest: float | None) -> float | None:
        retention = self._settings.closed_retention
        return None if newest is None or retention is None else newest - retention

    def reroute(self, event: Event, partition: int) -> None:
        """Queue again the account facts of an event applied before a restart."""
        self._send(self._books[partition].router.reroute(event))

    def _send(self, facts: list[AccountFact]) -> None:
        topic, partition, offset = self._source
        for fact in facts:
            self.outbox.append(fact.at((topic, partition, offset, self._ordinal)))
            self._ordinal += 1

    # -- the account stage -----------------------------------------------------------
    def account_ledgers(self, partition: int) -> dict[str, Ledger]:
        """A fresh account book for accounts-topic `partition`; its containers to recover."""
        book = self._accounts[partition] = AccountBook.from_settings(self._settings)
        return {"accounts.records": book.records, "accounts.windows": book.windows}

    def account_recovered(self, partition: int) -> None:
        """Recovery filled the account book's containers."""
        self._accounts[partition].rebuild()

    def account_forget(self, partitions: Iterable[int] | None = None) -> None:
        """Drop account books (all when None)."""
        if partitions is None:
            self._accounts.clear()
        else:
            for partition in partitions:
                self._accounts.pop(partition, None)

    def account_apply(self, fact: AccountFact, partition: int) -> None:
        """Apply one account fact."""
        self._accounts[partition].apply(fact)

    # -- numbers ---------------------------------------------------------------------
    def partition_partials(self, now: float) -> dict[str, dict[str, float]]:
        """Each of this worker's partitions' components at `now`: `i<p>` input, `a<p>` accounts."""
        out = {f"i{p}": books.partials(now) for p, books in self._books.items()}
        out.update({f"a{p}": book.partials(now) for p, book in self._accounts.items()})
        return out

    def partials(self, now: float) -> dict[str, float]:
        """Every component at `now`, added over this worker's partitions."""
        return add_up(self.partition_partials(now).values())

    def samples(self, now: float, partials: Mapping[str, float] | None = None) -> list[Sample]:
        """Every exported series of SPEC §3.1–§3.8 at `now`.

        `partials` are the components summed over every partition (this worker's when None).
        """
        if partials is None:
            partials = self.partials(now)
        out: list[Sample] = []
        for module in (funnel, marketing, pipeline, forecast, finance, accounts, economics):
            out.extend(module.samples(self._settings, partials, now))
        return out

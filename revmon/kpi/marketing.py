"""Marketing (SPEC §3.3): new names and spend by channel, cost per name, channel attribution.

Channel attribution (v2) joins two books: the pipeline book (`kpi/pipeline.py`) sums the
pipeline created and won of opportunities that carry a `channel`; this book sums the
spend. `samples()` divides the summed pipeline created by the summed spend.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from revmon.events import CampaignSpend, Event, LeadCreated
from revmon.kpi.funnel import Changes, Effect, Move
from revmon.kpi.ledger import Records, Sample, Windows, component
from revmon.settings import Settings, Window

OTHER = "other"

# Components of `partials()`: `component(name, channel, window)`.
NEW_NAMES = "revmon_marketing_new_names"
SPEND = "revmon_marketing_spend_amount"

# Components written by the pipeline book: `component(name, channel, window)`.
CHANNEL_CREATED = "revmon_channel_pipeline_created_amount"
CHANNEL_WON = "revmon_channel_won_amount"

# Series of `Windows` (journaled, so renaming one loses history): `component(name, channel)`.
_NEW_NAMES = "new_names"
_SPEND = "spend"


def channel_label(channel: str | None, channels: Iterable[str]) -> str:
    """The exported label of an event's channel: itself when configured, else `other`."""
    return channel if channel is not None and channel in channels else OTHER


class MarketingBook:
    """New names and spend of one input partition, by channel and event time.

    A new name is a `lead.created` that created its lead, which only the funnel book
    knows: `apply()` takes the funnel book's move for the same event.

    Args:
        channels: every channel label, `other` included (`settings.marketing.labels`).
        windows: the windows partials are taken over.
        retention: how long the series are kept; the longest window by default.
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        windows: Sequence[Window],
        retention: float | None = None,
    ) -> None:
        self.channels = tuple(dict.fromkeys((*channels, OTHER)))
        longest = max(window.seconds for window in windows)
        self.windows = Windows(retention if retention is not None else longest)
        self._known = frozenset(self.channels)
        self._window_list = tuple(windows)

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketingBook:
        """The book of the configured channels and windows."""
        return cls(settings.marketing.labels, windows=settings.window_list)

    def apply(self, event: Event, move: Move | None = None) -> None:
        """Count a new name (`lead.created` whose funnel `move` created the lead) or a spend.

        Other events, and a `lead.created` the funnel ignored (a repeat), change nothing.
        """
        if isinstance(event, LeadCreated):
            if move is not None and move.effect is Effect.CREATED:
                channel = channel_label(event.channel, self._known)
                self.windows.add(component(_NEW_NAMES, channel), event.at)
        elif isinstance(event, CampaignSpend):
            channel = channel_label(event.channel, self._known)
            self.windows.add(component(_SPEND, channel), event.at, float(event.amount))

    def partials(self, now: float) -> dict[str, float]:
        """New names and spend by channel and window at `now` (summable; no cost per name)."""
        out: dict[str, float] = {}
        for window in self._window_list:
            for channel in self.channels:
                names = self.windows.sum(component(_NEW_NAMES, channel), now, window.seconds)
                spend = self.windows.sum(component(_SPEND, channel), now, window.seconds)
                out[component(NEW_NAMES, channel, window.label)] = names
                out[component(SPEND, channel, window.label)] = spend
        return out

    def ledgers(self) -> dict[str, Records | Windows]:
        """The containers to journal, by a stable name."""
        return {"marketing.windows": self.windows}

    def drain(self) -> Changes:
        """The changes since the last drain, for the journal (points only: no records)."""
        return Changes({}, self.windows.drain())

    def load(self, changes: Changes) -> None:
        """Apply drained changes (a journal record)."""
        self.windows.load(changes.points)

    def rebuild(self) -> None:
        """Nothing is derived here; present so that every book recovers the same way."""

    def expire(self, now: float) -> None:
        """Forget what no window can see any more."""
        self.windows.expire(now)


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The series of SPEC §3.3 from partials summed over every partition.

    New names and spend exist for every channel and window (0 when absent); cost per
    name only where there are new names. `now` is unused: the partials were taken at it.
    """
    out: list[Sample] = []
    attribution: list[Sample] = []
    for window in settings.window_list:
        for channel in settings.marketing.labels:
            labels = (("channel", channel), ("window", window.label))
            names = partials.get(component(NEW_NAMES, channel, window.label), 0.0)
            spend = partials.get(component(SPEND, channel, window.label), 0.0)
            out.append(Sample("revmon_marketing_new_names", labels, names))
            out.append(Sample("revmon_marketing_spend_amount", labels, spend))
            if names > 0:
                out.append(Sample("revmon_marketing_cost_per_name_amount", labels, spend / names))
            created = partials.get(component(CHANNEL_CREATED, channel, window.label), 0.0)
            won = partials.get(component(CHANNEL_WON, channel, window.label), 0.0)
            attribution.append(Sample(CHANNEL_CREATED, labels, created))
            attribution.append(Sample(CHANNEL_WON, labels, won))
            if round(spend, MONEY_DIGITS) > 0:
                ratio = created / spend
                attribution.append(Sample("revmon_channel_pipeline_to_spend_ratio", labels, ratio))
    return [*out, *attribution]


# A sum of money is compared at micro-unit precision (as `kpi/finance.py` does).
MONEY_DIGITS = 6

"""Funnels (SPEC §1 rules, §2, §3.1, §3.2): stage moves, the funnel book and its series.

`create()` and `move()` are pure: given an entity's current position and an event, they
say whether the event is late, ignored, a creation, an entry, an exit (with its outcome
and time in stage), a close or a re-open. `FunnelBook` applies those answers to the
state of both funnels for one input partition, and `samples()` turns the summed
partials of every partition into the exported series.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from revmon.events import (
    Event,
    LeadCreated,
    LeadStageChanged,
    OpportunityCreated,
    OpportunityStageChanged,
)
from revmon.kpi.inventory import OpenStage, inventory_partials, inventory_samples
from revmon.kpi.ledger import Point, Records, Sample, Value, Windows, component
from revmon.settings import Settings, Window


class Outcome(StrEnum):
    """How an entity left an open stage."""

    ADVANCED = "advanced"
    DROPPED = "dropped"
    REGRESSED = "regressed"


class Effect(StrEnum):
    """What an event did to its entity."""

    CREATED = "created"  # a new entity by its *.created event
    ENTERED = "entered"  # a new entity first seen through a stage_changed
    MOVED = "moved"  # an existing entity changed stage
    REOPENED = "reopened"  # a closed opportunity moved back to an open stage
    LATE = "late"  # older than the entity's current stage entry: changes nothing
    IGNORED = "ignored"  # a repeat creation, a move to the same stage, a closed entity


@dataclass(frozen=True, slots=True)
class FunnelSpec:
    """A funnel's ordered open stages and its terminal stages."""

    name: str
    stages: tuple[str, ...]
    converted: str
    dropped: tuple[str, ...]
    can_reopen: bool = False

    @property
    def all_stages(self) -> tuple[str, ...]:
        """Open stages in order, then converted, then dropped."""
        return (*self.stages, self.converted, *self.dropped)

    def is_open(self, stage: str) -> bool:
        """True for an open (non-terminal) stage."""
        return stage in self.stages

    def outcome(self, source: str, target: str) -> Outcome:
        """The outcome of leaving open stage `source` for `target`."""
        if target in self.dropped:
            return Outcome.DROPPED
        if target == self.converted:
            return Outcome.ADVANCED
        if self.stages.index(target) > self.stages.index(source):
            return Outcome.ADVANCED
        return Outcome.REGRESSED


@dataclass(frozen=True, slots=True)
class Position:
    """Where an entity is: its stage and when it entered it (unix seconds)."""

    stage: str
    entered_at: float


@dataclass(frozen=True, slots=True)
class Exit:
    """An exit from an open stage."""

    stage: str
    outcome: Outcome
    seconds: float


@dataclass(frozen=True, slots=True)
class Move:
    """The answer of `move()`: the effect, and the entry, exit and new position if any."""

    effect: Effect
    position: Position | None = None
    entry: str | None = None
    exit: Exit | None = None

    @property
    def changed(self) -> bool:
        """True when the entity's position changed."""
        return self.position is not None


_LATE = Move(Effect.LATE)
_IGNORED = Move(Effect.IGNORED)


def create(spec: FunnelSpec, current: Position | None, stage: str | None, at: float) -> Move:
    """A `*.created` event: enters the first stage (or `stage`); a repeat changes nothing."""
    if current is not None:
        return _IGNORED
    target = stage if stage is not None else spec.stages[0]
    return Move(Effect.CREATED, Position(target, at), entry=target)


def move(spec: FunnelSpec, current: Position | None, stage: str, at: float) -> Move:
    """A `*.stage_changed` event to `stage` at event time `at` (SPEC §1, in its order)."""
    if current is None:
        return Move(Effect.ENTERED, Position(stage, at), entry=stage)
    if at < current.entered_at:
        return _LATE
    if stage == current.stage:
        return _IGNORED
    if not spec.is_open(current.stage):
        if spec.can_reopen and spec.is_open(stage):
            return Move(Effect.REOPENED, Position(stage, at), entry=stage)
        return _IGNORED
    exit_ = Exit(current.stage, spec.outcome(current.stage, stage), at - current.entered_at)
    return Move(Effect.MOVED, Position(stage, at), entry=stage, exit=exit_)


def is_late(current: Position | None, at: float) -> bool:
    """True for an event about an existing entity older than its current stage entry."""
    return current is not None and at < current.entered_at


LEAD = "lead"
OPPORTUNITY = "opportunity"

# Components of `partials()`: `component(name, *labels)`, labels in the metric's order.
# The inventory's (open, age buckets, age sum, stale) are in `revmon.kpi.inventory`.
ENTRIES = "revmon_funnel_entries"  # funnel, stage, window
EXITS = "revmon_funnel_exits"  # funnel, stage, outcome, window
TIME_IN_STAGE = "revmon_funnel_time_in_stage_seconds_sum"  # funnel, stage, window

# Series of `Windows` (journaled, so renaming one loses history): `component(name, ...)`.
_ENTRIES = "entries"  # funnel, stage
_EXITS = "exits"  # funnel, stage, outcome
_TIME_IN_STAGE = "time_in_stage"  # funnel, stage


class Changes(NamedTuple):
    """What a book changed since its last `drain()`: records by container, then points."""

    records: dict[str, dict[str, Value | None]]
    points: list[Point]


def funnel_specs(settings: Settings) -> tuple[FunnelSpec, FunnelSpec]:
    """The configured lead and opportunity funnels; only an opportunity can re-open."""
    lead, opportunity = settings.funnels.lead, settings.funnels.opportunity
    return (
        FunnelSpec(LEAD, lead.stages, lead.converted, lead.dropped),
        FunnelSpec(
            OPPORTUNITY,
            opportunity.stages,
            opportunity.converted,
            opportunity.dropped,
            can_reopen=True,
        ),
    )


class FunnelBook:
    """Both funnels of one input partition: positions in `Records`, flows in `Windows`.

    `records[funnel]` maps an entity id to `[stage, entered_at]` (ids are per funnel: a
    lead and an opportunity may share one). `windows` holds entries, exits and time in
    stage by event time. The open-stage indexes behind the inventory metrics are derived:
    `load()` keeps them in step, `rebuild()` re-derives them after the containers were
    loaded directly (as the state journal does through `ledgers()`).

    Args:
        specs: the funnels, named `lead` and `opportunity`.
        sla: seconds by funnel and open stage; a stage without one is never stale.
        windows: the windows partials are taken over.
        retention: how long flows are kept; the longest window by default.
    """

    def __init__(
        self,
        specs: Iterable[FunnelSpec],
        *,
        sla: Mapping[str, Mapping[str, float]],
        windows: Sequence[Window],
        retention: float | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in specs}
        self.records = {name: Records() for name in self.specs}
        longest = max(window.seconds for window in windows)
        self.windows = Windows(retention if retention is not None else longest)
        self._window_list = tuple(windows)
        self._sla = {name: dict(sla.get(name, {})) for name in self.specs}
        # One string object per stage name, shared by every record that names it.
        self._stages = {
            name: {stage: stage for stage in spec.all_stages} for name, spec in self.specs.items()
        }
        self._open: dict[str, dict[str, OpenStage]] = {}
        self.rebuild()

    @classmethod
    def from_settings(cls, settings: Settings) -> FunnelBook:
        """The book of the configured funnels, SLAs and windows."""
        sla = {LEAD: settings.funnels.lead.sla, OPPORTUNITY: settings.funnels.opportunity.sla}
        return cls(funnel_specs(settings), sla=sla, windows=settings.window_list)

    def position(self, funnel: str, entity: str) -> Position | None:
        """Where entity `entity` of `funnel` is, or None when it is unknown."""
        value = self.records[funnel].get(entity)
        return None if value is None else Position(value[0], float(value[1]))

    def apply(self, event: Event) -> Move | None:
        """Apply a creation or stage change (None for any other event type).

        A late or ignored move changes nothing, but is returned so that the caller can
        count `Effect.LATE` and tell a new lead (`Effect.CREATED`) from a repeat.
        """
        if isinstance(event, LeadCreated):
            return self._create(LEAD, event.lead_id, event.stage, event.at)
        if isinstance(event, OpportunityCreated):
            return self._create(OPPORTUNITY, event.opportunity_id, event.stage, event.at)
        if isinstance(event, LeadStageChanged):
            return self._move(LEAD, event.lead_id, event.stage, event.at)
        if isinstance(event, OpportunityStageChanged):
            return self._move(OPPORTUNITY, event.opportunity_id, event.stage, event.at)
        return None

    def _create(self, funnel: str, entity: str, stage: str | None, at: float) -> Move:
        current = self.position(funnel, entity)
        return self._commit(funnel, entity, current, create(self.specs[funnel], current, stage, at))

    def _move(self, funnel: str, entity: str, stage: str, at: float) -> Move:
        current = self.position(funnel, entity)
        return self._commit(funnel, entity, current, move(self.specs[funnel], current, stage, at))

    def _commit(self, funnel: str, entity: str, current: Position | None, result: Move) -> Move:
        new = result.position
        if new is None:
            return result
        stage = self._stages[funnel].get(new.stage, new.stage)
        at = new.entered_at
        self._unindex(funnel, current)
        self.records[funnel].put(entity, [stage, at])
        self._index(funnel, Position(stage, at))
        if result.entry is not None:
            self.windows.add(component(_ENTRIES, funnel, stage), at)
        if result.exit is not None:
            left = result.exit
            self.windows.add(component(_EXITS, funnel, left.stage, left.outcome), at)
            self.windows.add(component(_TIME_IN_STAGE, funnel, left.stage), at, left.seconds)
        return result

    def _index(self, funnel: str, position: Position | None) -> None:
        if position is not None and position.stage in self._open[funnel]:
            self._open[funnel][position.stage].add(position.entered_at)

    def _unindex(self, funnel: str, position: Position | None) -> None:
        if position is not None and position.stage in self._open[funnel]:
            self._open[funnel][position.stage].remove(position.entered_at)

    def partials(self, now: float) -> dict[str, float]:
        """Every summable component at `now` (see the component names above); no ratios."""
        out: dict[str, float] = {}
        for funnel, spec in self.specs.items():
            for stage in spec.stages:
                sla = self._sla[funnel].get(stage)
                out.update(inventory_partials(funnel, stage, self._open[funnel][stage], sla, now))
            for window in self._window_list:
                self._flows(out, spec, window, now)
        return out

    def _flows(self, out: dict[str, float], spec: FunnelSpec, window: Window, now: float) -> None:
        funnel, label, seconds = spec.name, window.label, window.seconds
        total = self.windows.sum
        for stage in spec.all_stages:
            entries = total(component(_ENTRIES, funnel, stage), now, seconds)
            out[component(ENTRIES, funnel, stage, label)] = entries
        for stage in spec.stages:
            for outcome in Outcome:
                exits = total(component(_EXITS, funnel, stage, outcome), now, seconds)
                out[component(EXITS, funnel, stage, outcome, label)] = exits
            spent = total(component(_TIME_IN_STAGE, funnel, stage), now, seconds)
            out[component(TIME_IN_STAGE, funnel, stage, label)] = spent

    def ledgers(self) -> dict[str, Records | Windows]:
        """The containers to journal, by a stable name (call `rebuild()` after loading them)."""
        named: dict[str, Records | Windows] = {
            f"funnel.{name}": records for name, records in self.records.items()
        }
        named["funnel.windows"] = self.windows
        return named

    def drain(self) -> Changes:
        """The changes since the last drain, for the journal."""
        records = {name: records.drain() for name, records in self.records.items()}
        return Changes(records, self.windows.drain())

    def load(self, changes: Changes) -> None:
        """Apply drained changes (a journal record), keeping the open-stage indexes in step."""
        for funnel, changed in changes.records.items():
            for entity, value in changed.items():
                self._unindex(funnel, self.position(funnel, entity))
                self.records[funnel].load([(entity, value)])
                self._index(funnel, self.position(funnel, entity))
        self.windows.load(changes.points)

    def rebuild(self) -> None:
        """Re-derive the open-stage indexes from the records: O(n log n), once after a load."""
        for funnel, spec in self.specs.items():
            stages = self._stages[funnel]
            times: dict[str, list[float]] = {stage: [] for stage in spec.stages}
            for _, value in self.records[funnel].items():
                stage = stages.get(value[0])
                if stage is None:
                    continue  # a stage no longer configured: counted in no open stage
                if isinstance(value, list) and value[0] is not stage:
                    value[0] = stage  # same text, one shared object: ~50 B less per entity
                if stage in times:
                    times[stage].append(float(value[1]))
            self._open[funnel] = {stage: OpenStage(at) for stage, at in times.items()}

    def expire(self, now: float) -> None:
        """Forget flows that no window can see any more."""
        self.windows.expire(now)


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The series of SPEC §3.1–§3.2 from partials summed over every partition.

    Every non-ratio series the config enumerates is present (0 when no partition has
    it); a ratio only where its denominator is positive. `now` is unused: the partials
    were taken at `now`.
    """
    out: list[Sample] = []
    for spec in funnel_specs(settings):
        out.extend(inventory_samples(spec.name, spec.stages, partials))
        for window in settings.window_list:
            out.extend(_flow_samples(spec, window.label, partials))
    return out


def _flow_samples(spec: FunnelSpec, window: str, partials: Mapping[str, float]) -> list[Sample]:
    out: list[Sample] = []
    funnel = spec.name
    for stage in spec.all_stages:
        labels = (("funnel", funnel), ("stage", stage), ("window", window))
        entries = partials.get(component(ENTRIES, funnel, stage, window), 0.0)
        out.append(Sample("revmon_funnel_entries", labels, entries))
    for stage in spec.stages:
        exits: dict[Outcome, float] = {}
        for outcome in Outcome:
            exits[outcome] = partials.get(component(EXITS, funnel, stage, outcome, window), 0.0)
            labels = (("funnel", funnel), ("stage", stage), ("outcome", outcome.value))
            out.append(Sample("revmon_funnel_exits", (*labels, ("window", window)), exits[outcome]))
        labels = (("funnel", funnel), ("stage", stage), ("window", window))
        judged = exits[Outcome.ADVANCED] + exits[Outcome.DROPPED]
        if judged > 0:
            ratio = exits[Outcome.ADVANCED] / judged
            out.append(Sample("revmon_funnel_conversion_ratio", labels, ratio))
        spent = partials.get(component(TIME_IN_STAGE, funnel, stage, window), 0.0)
        out.append(Sample("revmon_funnel_time_in_stage_seconds_sum", labels, spent))
    return out

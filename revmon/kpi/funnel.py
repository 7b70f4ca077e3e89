"""Funnels (SPEC §1 rules, §2, §3.1, §3.2): the funnel book and its series.

`FunnelBook` applies the pure answers of `revmon.kpi.stages` (`create()`, `move()`,
`touch()`, re-exported here) to the state of both funnels for one input partition, and
`samples()` turns the summed partials of every partition into the exported series.

Expiry in event time: an entity whose stage has `expire` and that nothing held (an event
about it dated in `(e, e + expire]`) has left the stage at `e + expire`. That exit is
written into the state only when the next event about the entity, dated after the
deadline, arrives (`Move.expired`); until then `partials(now)` counts it from the
stored entry time whenever `e + expire <= now`. So the numbers are a function of the
events and `now` alone, never of when someone looked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from revmon.events import (
    Event,
    LeadCreated,
    LeadStageChanged,
    OpportunityAmountChanged,
    OpportunityCreated,
    OpportunityStageChanged,
)
from revmon.kpi.inventory import (
    AGE_BUCKETS,
    OpenStage,
    inventory_partials,
    inventory_samples,
    le_label,
)
from revmon.kpi.ledger import Point, Records, Sample, Value, Windows, component
from revmon.kpi.stages import (
    Effect,
    Exit,
    Expiry,
    FunnelSpec,
    Move,
    Outcome,
    Position,
    create,
    deadline,
    due,
    forgotten,
    is_late,
    move,
    touch,
)
from revmon.settings import Funnel, Settings, Window

# The stage moves are re-exported: callers read a funnel's rules and its book from here.
__all__ = [
    "DWELL",
    "ENTRIES",
    "EXITS",
    "LEAD",
    "OPPORTUNITY",
    "Changes",
    "Effect",
    "Exit",
    "Expiry",
    "FunnelBook",
    "FunnelSpec",
    "Move",
    "Outcome",
    "Position",
    "bucket_of",
    "create",
    "deadline",
    "due",
    "forgotten",
    "funnel_specs",
    "is_late",
    "move",
    "samples",
    "spec_of",
    "touch",
]

LEAD = "lead"
OPPORTUNITY = "opportunity"

# Components of `partials()`: `component(name, *labels)`, labels in the metric's order.
# The inventory's (open, age buckets, age sum, stale) are in `revmon.kpi.inventory`.
ENTRIES = "revmon_funnel_entries"  # funnel, stage, window
EXITS = "revmon_funnel_exits"  # funnel, stage, outcome, window
DWELL_BUCKET = "revmon_funnel_dwell_seconds_bucket"  # funnel, stage, window, le (cumulative)
DWELL_SUM = "revmon_funnel_dwell_seconds_gsum"  # funnel, stage, window
DWELL = "revmon_funnel_dwell_seconds"  # the family; `_gcount` is Σ exits, `+Inf` too
FINITE_BUCKETS = AGE_BUCKETS[:-1]

# Series of `Windows` (journaled, so renaming one loses history): `component(name, ...)`.
_ENTRIES = "entries"  # funnel, stage
_EXITS = "exits"  # funnel, stage, outcome
_TIME_IN_STAGE = "time_in_stage"  # funnel, stage: Σ seconds (v1 name, kept for the journal)
_DWELL = "dwell"  # funnel, stage, le: exits whose time in stage falls in that bucket only


def bucket_of(seconds: float) -> str:
    """The `le` label of the smallest age bucket holding `seconds` (SPEC §3.1 bounds)."""
    for bound in AGE_BUCKETS:
        if seconds <= bound:
            return le_label(bound)
    return le_label(math.inf)  # pragma: no cover - the last bound is +Inf


class Changes(NamedTuple):
    """What a book changed since its last `drain()`: records by container, then points."""

    records: dict[str, dict[str, Value | None]]
    points: list[Point]


def spec_of(name: str, funnel: Funnel, *, can_reopen: bool = False) -> FunnelSpec:
    """The `FunnelSpec` of a configured funnel."""
    return FunnelSpec(
        name,
        funnel.stages,
        funnel.converted,
        funnel.dropped,
        can_reopen,
        tuple(funnel.expire.items()),
    )


def funnel_specs(settings: Settings) -> tuple[FunnelSpec, FunnelSpec]:
    """The configured lead and opportunity funnels; only an opportunity can re-open."""
    return (
        spec_of(LEAD, settings.funnels.lead),
        spec_of(OPPORTUNITY, settings.funnels.opportunity, can_reopen=True),
    )


class FunnelBook:
    """Both funnels of one input partition: positions in `Records`, flows in `Windows`.

    `records[funnel]` maps an entity id to `[stage, entered_at]`, or `[stage, entered_at,
    0]` once an event held it in a stage that expires (ids are per funnel: a lead and an
    opportunity may share one). `windows` holds entries, exits and time in stage by event
    time. The open-stage indexes behind the inventory metrics are derived: `load()` keeps
    them in step, `rebuild()` re-derives them after the containers were loaded directly
    (as the state journal does through `ledgers()`).

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
        # Per funnel and open stage: entities that can expire, and those that cannot.
        self._open: dict[str, dict[str, OpenStage]] = {}
        self._held: dict[str, dict[str, OpenStage]] = {}
        self.rebuild()

    @classmethod
    def from_settings(cls, settings: Settings) -> FunnelBook:
        """The book of the configured funnels, SLAs, expiries and windows."""
        sla = {LEAD: settings.funnels.lead.sla, OPPORTUNITY: settings.funnels.opportunity.sla}
        return cls(funnel_specs(settings), sla=sla, windows=settings.window_list)

    def position(self, funnel: str, entity: str) -> Position | None:
        """Where entity `entity` of `funnel` is, or None when it is unknown."""
        value = self.records[funnel].get(entity)
        return None if value is None else _position(value)

    def apply(self, event: Event, line: float | None = None) -> Move | None:
        """Apply a creation, stage change or amount change (None for any other event type).

        A late or ignored move changes nothing (but an expiry it finds due, or a hold), and
        is returned so that the caller can count `Effect.LATE` and tell a new lead
        (`Effect.CREATED`) from a repeat or a snapshot. An entity closed before `line`
        (`closed_retention` behind the newest event) is forgotten first: the event finds
        it unknown.
        """
        if isinstance(event, LeadCreated | OpportunityCreated):
            funnel = LEAD if isinstance(event, LeadCreated) else OPPORTUNITY
            entity = event.lead_id if isinstance(event, LeadCreated) else event.opportunity_id
            current = self._current(funnel, entity, line)
            answer = create(
                self.specs[funnel],
                current,
                event.stage,
                event.at,
                snapshot=event.is_snapshot,
                since=event.since,
            )
            return self._commit(funnel, entity, current, answer)
        if isinstance(event, LeadStageChanged):
            return self._move(LEAD, event.lead_id, event.stage, event.at, line)
        if isinstance(event, OpportunityStageChanged):
            return self._move(OPPORTUNITY, event.opportunity_id, event.stage, event.at, line)
        if isinstance(event, OpportunityAmountChanged):
            current = self._current(OPPORTUNITY, event.opportunity_id, line)
            answer = touch(self.specs[OPPORTUNITY], current, event.at)
            return self._commit(OPPORTUNITY, event.opportunity_id, current, answer)
        return None

    def _move(self, funnel: str, entity: str, stage: str, at: float, line: float | None) -> Move:
        current = self._current(funnel, entity, line)
        return self._commit(funnel, entity, current, move(self.specs[funnel], current, stage, at))

    def _current(self, funnel: str, entity: str, line: float | None) -> Position | None:
        """The entity's position, after forgetting it when it closed before `line`."""
        current = self.position(funnel, entity)
        if current is not None and forgotten(self.specs[funnel], current, line):
            self._unindex(funnel, current)
            self.records[funnel].delete(entity)
            return None
        return current

    def retire(self, line: float) -> int:
        """Forget every entity closed before `line` (what `apply` would forget on its next
        event anyway, so when this runs changes no number); how many."""
        count = 0
        for funnel, records in self.records.items():
            spec = self.specs[funnel]
            gone = [
                entity
                for entity, value in records.items()
                if forgotten(spec, _position(value), line)
            ]
            for entity in gone:
                self._current(funnel, entity, line)
            count += len(gone)
        return count

    def _commit(self, funnel: str, entity: str, current: Position | None, result: Move) -> Move:
        new = result.position
        if new is None:
            return result
        stage = self._stages[funnel].get(new.stage, new.stage)
        at = new.entered_at
        self._unindex(funnel, current)
        self.records[funnel].put(entity, [stage, at] if new.expires else [stage, at, 0])
        self._index(funnel, Position(stage, at, new.expires))
        gone = result.expired
        if gone is not None:
            self._exit(funnel, Exit(gone.stage, Outcome.DROPPED, gone.seconds), gone.at)
            self.windows.add(component(_ENTRIES, funnel, gone.to), gone.at)
        if result.entry is not None:
            self.windows.add(component(_ENTRIES, funnel, stage), at)
        if result.exit is not None:
            self._exit(funnel, result.exit, at)
        return result

    def _exit(self, funnel: str, left: Exit, at: float) -> None:
        self.windows.add(component(_EXITS, funnel, left.stage, left.outcome), at)
        self.windows.add(component(_TIME_IN_STAGE, funnel, left.stage), at, left.seconds)
        self.windows.add(component(_DWELL, funnel, left.stage, bucket_of(left.seconds)), at)

    def _set(self, funnel: str, position: Position) -> OpenStage | None:
        """The open-stage set an entity at `position` is counted in, or None (closed)."""
        stages = self._open[funnel]
        if position.stage not in stages:
            return None
        if position.expires and stages[position.stage].expire is not None:
            return stages[position.stage]
        return self._held[funnel][position.stage]

    def _index(self, funnel: str, position: Position | None) -> None:
        found = None if position is None else self._set(funnel, position)
        if position is not None and found is not None:
            found.add(position.entered_at)

    def _unindex(self, funnel: str, position: Position | None) -> None:
        found = None if position is None else self._set(funnel, position)
        if position is not None and found is not None:
            found.remove(position.entered_at)

    def partials(self, now: float) -> dict[str, float]:
        """Every summable component at `now` (see the component names above); no ratios."""
        out: dict[str, float] = {}
        for funnel, spec in self.specs.items():
            for stage in spec.stages:
                sla = self._sla[funnel].get(stage)
                sets = (self._open[funnel][stage], self._held[funnel][stage])
                out.update(inventory_partials(funnel, stage, sets, sla, now))
            for window in self._window_list:
                self._flows(out, spec, window, now)
        return out

    def _flows(self, out: dict[str, float], spec: FunnelSpec, window: Window, now: float) -> None:
        funnel, label, seconds = spec.name, window.label, window.seconds
        total = self.windows.sum
        # Expiries not yet written into the state, dated inside the window (SPEC §2).
        expired = {
            stage: self._open[funnel][stage].expired_between(now - seconds, now)
            for stage in spec.stages
        }
        for stage in spec.all_stages:
            entries = total(component(_ENTRIES, funnel, stage), now, seconds)
            if spec.dropped and stage == spec.dropped[0]:
                entries += sum(expired.values())
            out[component(ENTRIES, funnel, stage, label)] = entries
        for stage in spec.stages:
            for outcome in Outcome:
                exits = total(component(_EXITS, funnel, stage, outcome), now, seconds)
                if outcome is Outcome.DROPPED:
                    exits += expired[stage]
                out[component(EXITS, funnel, stage, outcome, label)] = exits
            spent = total(component(_TIME_IN_STAGE, funnel, stage), now, seconds)
            limit = spec.expiry(stage)
            virtual = None
            if limit is not None and expired[stage]:
                spent += expired[stage] * limit  # each expired exactly `limit` after entering
                virtual = bucket_of(limit)
            out[component(DWELL_SUM, funnel, stage, label)] = spent
            cumulative = 0.0
            for bound in FINITE_BUCKETS:
                le = le_label(bound)
                cumulative += total(component(_DWELL, funnel, stage, le), now, seconds)
                if le == virtual:
                    cumulative += expired[stage]
                out[component(DWELL_BUCKET, funnel, stage, label, le)] = cumulative

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
            held: dict[str, list[float]] = {stage: [] for stage in spec.stages}
            for _, value in self.records[funnel].items():
                stage = stages.get(value[0])
                if stage is None:
                    continue  # a stage no longer configured: counted in no open stage
                if isinstance(value, list) and value[0] is not stage:
                    value[0] = stage  # same text, one shared object: ~50 B less per entity
                if stage in times:
                    expires = (len(value) < 3 or value[2]) and spec.expiry(stage) is not None
                    (times if expires else held)[stage].append(float(value[1]))
            self._open[funnel] = {
                stage: OpenStage(at, spec.expiry(stage)) for stage, at in times.items()
            }
            self._held[funnel] = {stage: OpenStage(at) for stage, at in held.items()}

    def expire(self, now: float) -> None:
        """Forget flows that no window can see any more."""
        self.windows.expire(now)


def _position(value: Value) -> Position:
    """The position of a stored record (`[stage, entered_at]`, or `[..., 0]` once held)."""
    return Position(value[0], float(value[1]), len(value) < 3 or bool(value[2]))


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
    dwell: list[Sample] = []
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
        count = math.fsum(exits.values())
        for bound in FINITE_BUCKETS:
            le = le_label(bound)
            value = partials.get(component(DWELL_BUCKET, funnel, stage, window, le), 0.0)
            dwell.append(Sample(f"{DWELL}_bucket", (*labels, ("le", le)), value))
        dwell.append(Sample(f"{DWELL}_bucket", (*labels, ("le", "+Inf")), count))
        dwell.append(Sample(f"{DWELL}_gcount", labels, count))
        spent = partials.get(component(DWELL_SUM, funnel, stage, window), 0.0)
        dwell.append(Sample(f"{DWELL}_gsum", labels, spent))
    return [*out, *dwell]

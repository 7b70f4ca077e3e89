"""Funnel moves (SPEC §1 rules, §2): what one stage event does to one entity.

Pure: given an entity's current position and an event, `move()` says whether the event
is late, ignored, a creation, an entry, an exit (with its outcome and time in stage), a
close or a re-open. The metric state applies the answer; nothing here keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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

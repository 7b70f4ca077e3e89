"""Stage moves (SPEC §1 rules, §2): the pure answers the funnel and pipeline books apply.

`create()`, `move()` and `touch()` take an entity's current position and an event and
say whether the event is late, ignored, a creation, a snapshot load, an entry, an exit
(with its outcome and time in stage), a close or a re-open, and whether an expiry (SPEC
§2, v2) fell due before it. No state, no framework: `kpi/funnel.py` and
`kpi/pipeline.py` apply the answers.
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
    LOADED = "loaded"  # a new entity by a snapshot *.created: no entry, no creation
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
    #: SPEC §2 expiry: (open stage, seconds) pairs.
    expire: tuple[tuple[str, float], ...] = ()

    def expiry(self, stage: str) -> float | None:
        """Seconds after which an entity left untouched in `stage` expires, or None."""
        for name, seconds in self.expire:
            if name == stage:
                return seconds
        return None

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
    """Where an entity is: its stage, when it entered it (unix seconds), whether it can expire.

    `expires` is False once an event dated inside the stage's expiry period held the
    entity there (SPEC §2): it then stays until it moves.
    """

    stage: str
    entered_at: float
    expires: bool = True


@dataclass(frozen=True, slots=True)
class Expiry:
    """An expiry (SPEC §2) that fell due: the entity left `stage` for `to` at `at`."""

    stage: str
    to: str
    at: float
    seconds: float

    @property
    def position(self) -> Position:
        """Where the expiry left the entity."""
        return Position(self.to, self.at)


def deadline(spec: FunnelSpec, position: Position) -> float | None:
    """When an entity at `position` expires (SPEC §2), or None when it cannot."""
    seconds = spec.expiry(position.stage) if position.expires else None
    return None if seconds is None else position.entered_at + seconds


def closed_at(spec: FunnelSpec, position: Position) -> float | None:
    """When an entity at `position` closed: its entry into a terminal stage (or a stage no
    longer configured), else the deadline its expiry closes it at; None while it stays open.
    """
    if not spec.is_open(position.stage):
        return position.entered_at
    return deadline(spec, position)


def forgotten(spec: FunnelSpec, position: Position, line: float | None) -> bool:
    """True when the entity at `position` closed before `line` (`closed_retention`): an
    event about it then finds it unknown. A `line` of None forgets nothing.
    """
    if line is None:
        return False
    end = closed_at(spec, position)
    return end is not None and end < line


def due(spec: FunnelSpec, position: Position, at: float) -> Expiry | None:
    """The expiry an event dated `at` finds due (its deadline is before `at`), or None."""
    end = deadline(spec, position)
    if end is None or at <= end:
        return None
    return Expiry(position.stage, spec.dropped[0], end, end - position.entered_at)


@dataclass(frozen=True, slots=True)
class Exit:
    """An exit from an open stage."""

    stage: str
    outcome: Outcome
    seconds: float


@dataclass(frozen=True, slots=True)
class Move:
    """The answer of `move()`: the effect, and the entry, exit and new position if any.

    `expired` is an expiry that fell due before the event (applied first); `position`
    is then set, the expiry's own when the event itself changed nothing.
    """

    effect: Effect
    position: Position | None = None
    entry: str | None = None
    exit: Exit | None = None
    expired: Expiry | None = None

    @property
    def changed(self) -> bool:
        """True when the entity's position changed."""
        return self.position is not None


_LATE = Move(Effect.LATE)
_IGNORED = Move(Effect.IGNORED)


def create(
    spec: FunnelSpec,
    current: Position | None,
    stage: str | None,
    at: float,
    *,
    snapshot: bool = False,
    since: float | None = None,
) -> Move:
    """A `*.created` event: enters the first stage (or `stage`); a repeat changes nothing.

    A snapshot (SPEC §1, v2) loads the entity in its stage since `since`: no entry.
    """
    if current is not None:
        return _IGNORED
    target = stage if stage is not None else spec.stages[0]
    if snapshot:
        return Move(Effect.LOADED, Position(target, at if since is None else since))
    return Move(Effect.CREATED, Position(target, at), entry=target)


def move(spec: FunnelSpec, current: Position | None, stage: str, at: float) -> Move:
    """A `*.stage_changed` event to `stage` at event time `at` (SPEC §1, §2, in their order)."""
    if current is None:
        return Move(Effect.ENTERED, Position(stage, at), entry=stage)
    if at < current.entered_at:
        return _LATE
    expired = due(spec, current, at)
    if expired is not None:
        current = expired.position
    result = _move(spec, current, stage, at)
    if expired is None:
        return result
    position = result.position if result.position is not None else current
    return Move(result.effect, position, result.entry, result.exit, expired)


def _move(spec: FunnelSpec, current: Position, stage: str, at: float) -> Move:
    if stage == current.stage:
        return _hold(spec, current, at)
    if not spec.is_open(current.stage):
        if spec.can_reopen and spec.is_open(stage):
            return Move(Effect.REOPENED, Position(stage, at), entry=stage)
        return _IGNORED
    exit_ = Exit(current.stage, spec.outcome(current.stage, stage), at - current.entered_at)
    return Move(Effect.MOVED, Position(stage, at), entry=stage, exit=exit_)


def _hold(spec: FunnelSpec, current: Position, at: float) -> Move:
    """An event that leaves the entity where it is: inside the expiry period, it holds it."""
    end = deadline(spec, current)
    if end is not None and current.entered_at < at <= end:
        return Move(Effect.IGNORED, Position(current.stage, current.entered_at, expires=False))
    return _IGNORED


def touch(spec: FunnelSpec, current: Position | None, at: float) -> Move:
    """An event about the entity that moves nothing (`opportunity.amount_changed`).

    Late before anything else; then an expiry that fell due applies; else an event
    inside the expiry period holds the entity in its stage (SPEC §2).
    """
    if current is None:
        return _IGNORED
    if at < current.entered_at:
        return _LATE
    expired = due(spec, current, at)
    if expired is not None:
        return Move(Effect.IGNORED, expired.position, expired=expired)
    return _hold(spec, current, at)


def is_late(current: Position | None, at: float) -> bool:
    """True for an event about an existing entity older than its current stage entry."""
    return current is not None and at < current.entered_at

"""Funnel moves: creation, entries, exits by outcome, late events, re-opens (kpi/funnel.py)."""

from __future__ import annotations

import pytest

from revmon.kpi.funnel import Effect, Exit, FunnelSpec, Outcome, Position, create, is_late, move

LEADS = FunnelSpec("lead", ("name", "mql", "sql"), "opportunity", ("disqualified",))
OPPS = FunnelSpec(
    "opportunity",
    ("qualification", "discovery", "proposal", "negotiation"),
    "won",
    ("lost",),
    can_reopen=True,
)
T0 = 1_767_225_600.0
DAY = 86_400.0


@pytest.mark.parametrize(
    ("spec", "current", "stage", "at", "effect", "entry", "exit_"),
    [
        pytest.param(
            LEADS,
            Position("name", T0),
            "mql",
            T0 + DAY,
            Effect.MOVED,
            "mql",
            Exit("name", Outcome.ADVANCED, DAY),
            id="advance-one-stage",
        ),
        pytest.param(
            LEADS,
            Position("name", T0),
            "sql",
            T0 + 2 * DAY,
            Effect.MOVED,
            "sql",
            Exit("name", Outcome.ADVANCED, 2 * DAY),
            id="skipped-stage-records-one-exit",
        ),
        pytest.param(
            LEADS,
            Position("sql", T0),
            "mql",
            T0 + DAY,
            Effect.MOVED,
            "mql",
            Exit("sql", Outcome.REGRESSED, DAY),
            id="regression",
        ),
        pytest.param(
            LEADS,
            Position("mql", T0),
            "disqualified",
            T0 + 3 * DAY,
            Effect.MOVED,
            "disqualified",
            Exit("mql", Outcome.DROPPED, 3 * DAY),
            id="dropped",
        ),
        pytest.param(
            LEADS,
            Position("sql", T0),
            "opportunity",
            T0 + DAY,
            Effect.MOVED,
            "opportunity",
            Exit("sql", Outcome.ADVANCED, DAY),
            id="converted-is-advanced",
        ),
        pytest.param(
            LEADS,
            Position("mql", T0),
            "mql",
            T0 + DAY,
            Effect.IGNORED,
            None,
            None,
            id="same-stage-changes-nothing",
        ),
        pytest.param(
            LEADS,
            Position("mql", T0),
            "sql",
            T0 - 1,
            Effect.LATE,
            None,
            None,
            id="older-than-the-stage-entry-is-late",
        ),
        pytest.param(
            LEADS,
            Position("mql", T0),
            "sql",
            T0,
            Effect.MOVED,
            "sql",
            Exit("mql", Outcome.ADVANCED, 0.0),
            id="same-instant-is-not-late",
        ),
        pytest.param(
            LEADS,
            Position("disqualified", T0),
            "mql",
            T0 + DAY,
            Effect.IGNORED,
            None,
            None,
            id="closed-lead-stays-closed",
        ),
        pytest.param(
            OPPS,
            Position("lost", T0),
            "proposal",
            T0 + DAY,
            Effect.REOPENED,
            "proposal",
            None,
            id="lost-opportunity-reopens",
        ),
        pytest.param(
            OPPS,
            Position("lost", T0),
            "won",
            T0 + DAY,
            Effect.IGNORED,
            None,
            None,
            id="closed-opportunity-cannot-close-again",
        ),
        pytest.param(
            OPPS,
            Position("lost", T0),
            "proposal",
            T0 - DAY,
            Effect.LATE,
            None,
            None,
            id="late-check-comes-first-even-when-closed",
        ),
        pytest.param(
            OPPS,
            None,
            "proposal",
            T0,
            Effect.ENTERED,
            "proposal",
            None,
            id="unknown-entity-is-created-at-the-stage",
        ),
    ],
)
def test_move(
    spec: FunnelSpec,
    current: Position | None,
    stage: str,
    at: float,
    effect: Effect,
    entry: str | None,
    exit_: Exit | None,
) -> None:
    """A stage event's effect, entry and exit follow SPEC §1 and §2."""
    result = move(spec, current, stage, at)

    assert (result.effect, result.entry, result.exit) == (effect, entry, exit_)
    assert result.changed == (entry is not None)
    if result.position is not None:
        assert result.position == Position(stage, at)


@pytest.mark.parametrize(
    ("current", "stage", "effect", "position"),
    [
        pytest.param(None, None, Effect.CREATED, Position("name", T0), id="first-stage"),
        pytest.param(None, "mql", Effect.CREATED, Position("mql", T0), id="given-stage"),
        pytest.param(Position("sql", T0 - DAY), None, Effect.IGNORED, None, id="repeat"),
    ],
)
def test_create(
    current: Position | None, stage: str | None, effect: Effect, position: Position | None
) -> None:
    """A creation enters the first stage (or the given one); a repeat changes nothing."""
    result = create(LEADS, current, stage, T0)

    assert (result.effect, result.position) == (effect, position)


def test_created_event_is_never_late() -> None:
    """The late rule does not apply to *.created: an old repeat is ignored, not late."""
    result = create(LEADS, Position("sql", T0), None, T0 - 10 * DAY)

    assert result.effect is Effect.IGNORED
    assert is_late(Position("sql", T0), T0 - 10 * DAY)
    assert not is_late(None, T0)

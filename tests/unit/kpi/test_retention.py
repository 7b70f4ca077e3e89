"""Closed entities are forgotten `closed_retention` after their close (bounded memory).

The rule is decided when an event is applied (its topic's newest `occurred_at` minus the
retention is the line), so dropping the same entities earlier, at a snapshot, must change
no number: the property test feeds one event sequence to two books, one of which retires
at random points, and compares every exported series.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from revmon.engine import MetricEngine, PartitionBooks
from revmon.errors import ConfigError
from revmon.events import Event
from revmon.kpi import forecast, funnel, marketing, pipeline
from revmon.kpi.stages import Position, closed_at, forgotten
from revmon.settings import Settings, load_settings
from tests.unit.kpi.test_expiry import _event

DAY = 86_400.0
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RETENTION = 365 * DAY


@cache
def _settings() -> Settings:
    return load_settings(
        None,
        closed_retention="365d",
        funnels={
            "lead": {"expire": {"mql": "10d"}},
            "opportunity": {"expire": {"proposal": "30d"}},
        },
    )


def exported(books: PartitionBooks, now: float) -> dict[str, float]:
    """Every series of the funnel, marketing, pipeline and forecast books at `now`."""
    partials = books.partials(now)
    out = {}
    for module in (funnel, marketing, pipeline, forecast):
        for s in module.samples(_settings(), partials, now):
            out[f"{s.name}{{{','.join(v for _, v in s.labels)}}}"] = s.value
    return out


def feed(books: PartitionBooks, events: Iterable[Event], *, retention: bool = True) -> float:
    """Apply in order with the line each event's newest gives (one topic); the newest."""
    newest = float("-inf")
    for event in events:
        newest = max(newest, event.at)
        books.apply(event, newest - RETENTION if retention else None)
    return newest


# -- the rule ------------------------------------------------------------------------
SPEC = funnel.spec_of("lead", _settings().funnels.lead)


@pytest.mark.parametrize(
    ("position", "line", "closed", "gone"),
    [
        pytest.param(Position("sql", 100.0), 1e12, None, False, id="open-never-expires"),
        pytest.param(Position("mql", 100.0), 100.0 + 10 * DAY, 100.0 + 10 * DAY, False,
                     id="expiring-at-the-line-is-kept"),
        pytest.param(Position("mql", 100.0), 101.0 + 10 * DAY, 100.0 + 10 * DAY, True,
                     id="expired-before-the-line"),
        pytest.param(Position("mql", 100.0, expires=False), 1e12, None, False,
                     id="held-never-expires"),
        pytest.param(Position("opportunity", 100.0), 100.0, 100.0, False, id="converted-at-line"),
        pytest.param(Position("opportunity", 100.0), 100.5, 100.0, True, id="converted-before"),
        pytest.param(Position("disqualified", 5.0), None, 5.0, False, id="no-retention"),
        pytest.param(Position("gone_stage", 5.0), 6.0, 5.0, True, id="unconfigured-stage"),
    ],
)  # fmt: skip
def test_an_entity_is_forgotten_when_it_closed_before_the_line(
    position: Position, line: float | None, closed: float | None, gone: bool
) -> None:
    assert closed_at(SPEC, position) == closed
    assert forgotten(SPEC, position, line) is gone


# -- what an event about a forgotten entity finds -------------------------------------
def lead(at: float, **fields: Any) -> Event:
    return _event("lead.created", at, lead_id="L", channel="email", **fields)


def opportunity(at: float, **fields: Any) -> Event:
    fields = {"amount": "100", "kind": "expansion", "stage": "discovery", **fields}
    return _event("opportunity.created", at, opportunity_id="O", **fields)


def opportunity_to(at: float, stage: str, **fields: Any) -> Event:
    return _event("opportunity.stage_changed", at, opportunity_id="O", stage=stage, **fields)


def test_a_lead_converted_longer_ago_than_the_retention_is_new_again() -> None:
    converted = T0 + DAY
    events = [
        lead(T0),
        _event("lead.stage_changed", converted, lead_id="L", stage="opportunity"),
        lead(converted + RETENTION + DAY),
    ]
    now = events[-1].at
    kept, forgot = (
        PartitionBooks.from_settings(_settings()),
        PartitionBooks.from_settings(_settings()),
    )
    feed(kept, events, retention=False)
    feed(forgot, events)
    new_names = "revmon_marketing_new_names{email,7d}"
    assert exported(kept, now)[new_names] == 0.0  # a repeat creation: nothing
    assert exported(forgot, now)[new_names] == 1.0  # forgotten: a new name
    assert forgot.funnel.position("lead", "L") == Position("name", now)


def test_a_repeat_within_the_retention_still_changes_nothing() -> None:
    converted = T0 + DAY
    events = [
        lead(T0),
        _event("lead.stage_changed", converted, lead_id="L", stage="opportunity"),
        lead(converted + RETENTION),  # exactly at the line: still remembered
    ]
    books = PartitionBooks.from_settings(_settings())
    feed(books, events)
    assert books.funnel.position("lead", "L") == Position("opportunity", converted)


def test_a_lost_deal_reopened_after_the_retention_comes_back_without_its_history() -> None:
    lost = T0 + 5 * DAY
    reopened = lost + RETENTION + DAY
    events = [
        opportunity(T0),
        opportunity_to(lost, "lost"),
        opportunity_to(reopened, "negotiation", amount="70"),
    ]
    books = PartitionBooks.from_settings(_settings())
    feed(books, events)
    series = exported(books, reopened)
    # Unknown again: created at that stage as new business at the event's amount, an
    # entry but not pipeline created, and no re-open retracting the old loss.
    assert series["revmon_pipeline_open_amount{new_business,negotiation}"] == 70.0
    assert series["revmon_pipeline_open_amount{expansion,negotiation}"] == 0.0
    assert series["revmon_pipeline_created{new_business,7d}"] == 0.0
    assert series["revmon_funnel_entries{opportunity,negotiation,7d}"] == 1.0


def test_retire_drops_only_what_closed_before_the_line() -> None:
    events = [
        _event("lead.created", T0, lead_id="old", stage="sql"),
        _event("lead.stage_changed", T0 + DAY, lead_id="old", stage="disqualified"),
        _event("lead.created", T0, lead_id="open", stage="sql"),
        _event("lead.created", T0, lead_id="expired", stage="mql"),  # expires at T0 + 10d
        _event("lead.created", T0 + 2 * DAY, lead_id="recent", stage="sql"),
        _event("lead.stage_changed", T0 + 30 * DAY, lead_id="recent", stage="opportunity"),
        opportunity(T0, stage="proposal"),  # expires at T0 + 30d
    ]
    books = PartitionBooks.from_settings(_settings())
    feed(books, events)
    assert books.retire(T0 + 20 * DAY) == 2  # `old` (closed T0 + 1d), `expired` (T0 + 10d)
    assert set(dict(books.funnel.records["lead"].items())) == {"open", "recent"}
    # `recent` (closed T0 + 30d), and the deal (expired T0 + 30d) in both of its books
    assert books.retire(T0 + 31 * DAY) == 3
    assert books.pipeline.position("O") is None
    assert books.funnel.position("opportunity", "O") is None
    assert books.funnel.records["lead"].drain()["old"] is None  # journaled as deleted


# -- retiring early changes no number --------------------------------------------------
LEAD_STAGES = ("name", "mql", "sql", "opportunity", "disqualified")
OPP_STAGES = ("qualification", "discovery", "proposal", "negotiation", "won", "lost")


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A few entities over about three years: big gaps, late events, re-opens, repeats."""
    at = T0
    events: list[Event] = []
    for _ in range(draw(st.integers(1, 40))):
        at += draw(st.sampled_from([0.0, DAY, 9 * DAY, 40 * DAY, 100 * DAY, 300 * DAY, 400 * DAY]))
        when = at - draw(st.sampled_from([0.0, 0.0, 0.0, 5 * DAY, 500 * DAY]))  # some late
        entity = draw(st.sampled_from("AB"))
        kind = draw(st.integers(0, 4))
        if kind == 0:
            stage = draw(st.sampled_from(LEAD_STAGES[:3]))
            events.append(_event("lead.created", when, lead_id=entity, stage=stage))
        elif kind == 1:
            stage = draw(st.sampled_from(LEAD_STAGES))
            events.append(_event("lead.stage_changed", when, lead_id=entity, stage=stage))
        elif kind == 2:
            stage = draw(st.sampled_from(OPP_STAGES[:4]))
            events.append(
                _event(
                    "opportunity.created",
                    when,
                    opportunity_id=entity,
                    amount="250",
                    kind="renewal",
                    stage=stage,
                )
            )
        elif kind == 3:
            stage = draw(st.sampled_from(OPP_STAGES))
            events.append(
                _event("opportunity.stage_changed", when, opportunity_id=entity, stage=stage)
            )
        else:
            events.append(
                _event("opportunity.amount_changed", when, opportunity_id=entity, amount="90")
            )
    return events


@settings(max_examples=200, deadline=None)
@given(histories())
def test_retiring_at_any_point_changes_no_number(events: Sequence[Event]) -> None:
    lazy, eager = (
        PartitionBooks.from_settings(_settings()),
        PartitionBooks.from_settings(_settings()),
    )
    newest = float("-inf")
    for event in events:
        newest = max(newest, event.at)
        lazy.apply(event, newest - RETENTION)
        eager.apply(event, newest - RETENTION)
        eager.retire(newest - RETENTION)  # as early as it could ever run
        # Eager holds exactly what lazy holds, less entities a later event finds forgotten.
        for name, spec in eager.funnel.specs.items():
            held = dict(lazy.funnel.records[name].items())
            for entity, value in held.items():
                position = lazy.funnel.position(name, entity)
                assert position is not None
                if not forgotten(spec, position, newest - RETENTION):
                    assert eager.funnel.records[name].get(entity) == value
            assert set(dict(eager.funnel.records[name].items())) <= set(held)
    for now in (newest, newest + 200 * DAY):
        assert exported(eager, now) == exported(lazy, now)


# -- the engine's line and the configuration --------------------------------------------
def test_the_engine_forgets_by_the_configured_retention_only() -> None:
    events = [
        lead(T0),
        _event("lead.stage_changed", T0 + DAY, lead_id="L", stage="disqualified"),
    ]
    for retention, left in (("365d", 0), (None, 1)):
        engine = MetricEngine(load_settings(None, closed_retention=retention))
        ledgers = engine.ledgers(0)
        for event in events:
            engine.apply(event, 0, event.at)
        assert engine.retire(0, T0 + 400 * DAY) == 1 - left
        assert len(ledgers["funnel.lead"]) == left


@pytest.mark.parametrize("value", ["364d", "30d"])
def test_a_retention_shorter_than_a_year_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, closed_retention=value)
    message = str(caught.value)
    assert "closed_retention: at least 365d" in message
    assert "\n" not in message


def test_a_retention_shorter_than_the_longest_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least 400d"):
        load_settings(None, windows=["7d", "400d"], closed_retention="365d")


@pytest.mark.parametrize(
    ("env", "seconds"),
    [("null", None), ("NULL", None), ("400d", 400 * DAY), ("730d", 730 * DAY)],
)
def test_the_retention_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, env: str, seconds: float | None
) -> None:
    monkeypatch.setenv("REVMON_CLOSED_RETENTION", env)
    assert load_settings(None).closed_retention == seconds

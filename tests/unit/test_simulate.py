"""The simulator: deterministic, valid per SPEC §1, realistic enough to exercise every metric."""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from revmon.events import EVENT_TYPES, Decoder, Rejection
from revmon.settings import Settings, load_settings
from revmon.simulate import DEFAULT_START, SimulationConfig, simulate, write_jsonl

Events = list[dict[str, Any]]


@pytest.fixture(scope="module")
def settings() -> Settings:
    """The packaged default settings."""
    return load_settings()


@pytest.fixture(scope="module")
def sixty_days(settings: Settings) -> Events:
    """A 60-day history from the default settings."""
    return list(simulate(SimulationConfig.from_settings(settings, days=60, seed=7)))


@pytest.fixture(scope="module")
def one_year() -> Events:
    """A 365-day history at the default rates."""
    return list(simulate(SimulationConfig(days=365, seed=11)))


def _decoder(settings: Settings) -> Decoder:
    return Decoder(
        currency=settings.currency,
        lead_stages=settings.funnels.lead.all_stages,
        opportunity_stages=settings.funnels.opportunity.all_stages,
        lead_open=settings.funnels.lead.stages,
        opportunity_open=settings.funnels.opportunity.stages,
    )


def _rejections(settings: Settings, events: Iterable[dict[str, Any]]) -> list[Rejection]:
    decoder = _decoder(settings)
    found = []
    for event in events:
        decoded = decoder.decode(orjson.dumps(event))
        found.extend(item for item in decoded if isinstance(item, Rejection))
    return found


def _at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["occurred_at"])


def test_same_seed_gives_identical_events() -> None:
    """A seed always produces the same history, byte for byte."""
    first = [orjson.dumps(e) for e in simulate(SimulationConfig(days=20, seed=3))]
    second = [orjson.dumps(e) for e in simulate(SimulationConfig(days=20, seed=3))]
    assert first == second


def test_different_seeds_give_different_events() -> None:
    """Another seed produces another history."""
    first = list(simulate(SimulationConfig(days=20, seed=3)))
    second = list(simulate(SimulationConfig(days=20, seed=4)))
    assert first != second


def test_every_event_is_accepted_by_the_decoder(settings: Settings, sixty_days: Events) -> None:
    """Every simulated event passes revmon's own decoder with the default config."""
    assert _rejections(settings, sixty_days) == []


def test_all_event_types_appear_in_sixty_days(sixty_days: Events) -> None:
    """A 60-day run exercises all 13 event types of SPEC §1."""
    assert {e["type"] for e in sixty_days} == set(EVENT_TYPES)


def test_events_are_sorted_by_occurred_at(sixty_days: Events) -> None:
    """The history comes out in event-time order."""
    times = [_at(e) for e in sixty_days]
    assert times == sorted(times)


def test_event_ids_are_unique(sixty_days: Events) -> None:
    """No two events share an event_id."""
    ids = [e["event_id"] for e in sixty_days]
    assert len(ids) == len(set(ids))


def test_timestamps_are_utc_with_offset_and_amounts_are_decimal_strings(
    sixty_days: Events,
) -> None:
    """Timestamps carry `Z`; money is a decimal string with cents."""
    assert all(e["occurred_at"].endswith("Z") for e in sixty_days)
    amounts = [e[k] for e in sixty_days for k in ("amount", "mrr") if k in e]
    assert amounts
    assert all(isinstance(a, str) and re.fullmatch(r"\d+\.\d\d", a) for a in amounts)


@pytest.mark.parametrize(
    "start",
    [
        pytest.param(DEFAULT_START, id="default-midnight"),
        pytest.param(datetime(2031, 6, 17, 14, 37, 5, tzinfo=UTC), id="mid-day"),
        pytest.param(
            datetime(2026, 3, 1, 4, 30, tzinfo=timezone(timedelta(hours=-5))),
            id="non-utc-offset",
        ),
    ],
)
def test_events_fall_inside_the_requested_span(start: datetime) -> None:
    """Every event lies in [start, start + days), whatever time of day the history starts."""
    events = list(simulate(SimulationConfig(days=10, seed=5, start=start)))
    assert events
    assert _at(events[0]) >= start
    assert _at(events[-1]) < start + timedelta(days=10)


def test_naive_start_is_refused() -> None:
    """A start without a time zone is a configuration error."""
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulationConfig(days=1, seed=1, start=datetime(2025, 1, 1))  # noqa: DTZ001


@pytest.mark.parametrize(
    "funnels",
    [
        pytest.param(
            {
                "lead": {"stages": ["new", "working"], "converted": "won_lead", "dropped": []},
                "opportunity": {"stages": ["open"], "converted": "closed_won", "dropped": []},
            },
            id="short-funnels-without-dropped-stages",
        ),
        pytest.param(
            {
                "lead": {
                    "stages": ["raw", "mql", "sal", "sql", "accepted"],
                    "converted": "deal",
                    "dropped": ["junk", "nurture"],
                },
                "opportunity": {
                    "stages": ["s1", "s2", "s3", "s4", "s5", "s6"],
                    "converted": "closed_won",
                    "dropped": ["closed_lost", "no_decision"],
                },
            },
            id="long-funnels-with-two-dropped-stages",
        ),
    ],
)
def test_custom_funnels_produce_valid_events(funnels: dict[str, Any]) -> None:
    """Stages come from the settings, so a custom funnel still gets only valid events."""
    custom = load_settings(funnels=funnels, marketing={"channels": ["web", "tv"]})
    events = list(simulate(SimulationConfig.from_settings(custom, days=90, seed=2)))
    assert _rejections(custom, events) == []
    lead_stages = {e["stage"] for e in events if e["type"] == "lead.stage_changed"}
    assert custom.funnels.lead.converted in lead_stages
    assert {e.get("channel") for e in events if e["type"] == "lead.created"} >= {"web", "tv"}


def _reached(events: Events, created: str, changed: str, key: str) -> dict[str, set[str]]:
    stages: dict[str, set[str]] = collections.defaultdict(set)
    for event in events:
        if event["type"] in (created, changed):
            stages[event[key]].add(event.get("stage", ""))
    return stages


def test_lead_to_mql_rate_is_realistic(one_year: Events) -> None:
    """About a third of new names become MQLs."""
    stages = _reached(one_year, "lead.created", "lead.stage_changed", "lead_id")
    rate = sum("mql" in s for s in stages.values()) / len(stages)
    assert 0.2 <= rate <= 0.5


def test_new_business_win_rate_is_realistic(one_year: Events) -> None:
    """About a quarter of closed new-business deals are won."""
    new_business = {
        e["opportunity_id"]
        for e in one_year
        if e["type"] == "opportunity.created" and e["kind"] == "new_business"
    }
    closes = {
        e["opportunity_id"]: e["stage"]
        for e in one_year
        if e["type"] == "opportunity.stage_changed" and e["stage"] in ("won", "lost")
    }
    outcomes = [stage for opp, stage in closes.items() if opp in new_business]
    assert 0.15 <= outcomes.count("won") / len(outcomes) <= 0.4


def test_some_accounts_hold_several_subscriptions(one_year: Events) -> None:
    """Expansions into a second product give some accounts two or more subscriptions."""
    per_account = collections.Counter(
        e["account_id"] for e in one_year if e["type"] == "subscription.started"
    )
    assert sum(1 for n in per_account.values() if n >= 2) >= 5


def test_customers_churn_over_a_year(one_year: Events) -> None:
    """Some subscriptions are canceled, but far from all of them."""
    started = sum(1 for e in one_year if e["type"] == "subscription.started")
    canceled = sum(1 for e in one_year if e["type"] == "subscription.canceled")
    assert 0.03 * started <= canceled <= 0.4 * started


def test_expense_to_revenue_is_plausible(one_year: Events) -> None:
    """Costs of the revenue engine run at roughly 0.3-0.8 of revenue over the year."""
    total: dict[str, float] = collections.defaultdict(float)
    for event in one_year:
        total[event["type"]] += float(event.get("amount", 0))
    revenue = total["invoice.paid"] - total["refund.issued"]
    expense = total["expense.recorded"] + total["campaign.spend"]
    assert 0.25 <= expense / revenue <= 0.85


def test_write_jsonl_round_trips(tmp_path: Path) -> None:
    """The JSON-lines file holds every event, one per line, unchanged."""
    events = list(simulate(SimulationConfig(days=5, seed=9)))
    path = tmp_path / "history.jsonl"
    assert write_jsonl(iter(events), path) == len(events)
    lines = path.read_bytes().splitlines()
    assert [orjson.loads(line) for line in lines] == events


def test_the_opening_book_is_loaded_as_snapshots(sixty_days: Events) -> None:
    """v2: open leads and deals of the opening book arrive as snapshots, entered before."""
    snapshots = [e for e in sixty_days if e.get("snapshot") is True]
    types = {e["type"] for e in snapshots}

    assert types == {"lead.created", "opportunity.created"}
    assert all(e["entered_at"] <= e["occurred_at"] for e in snapshots)
    assert any(e["entered_at"] < e["occurred_at"] for e in snapshots)


def test_deals_carry_lead_sources_and_some_have_no_account(sixty_days: Events) -> None:
    """v2: deals carry their lead's channel, and some are exported without an account."""
    deals = [e for e in sixty_days if e["type"] == "opportunity.created"]

    assert sum(1 for e in deals if "channel" in e) >= len(deals) // 4
    assert any("account_id" not in e for e in deals)


def test_snapshots_can_be_turned_off() -> None:
    """`snapshot_load=False` opens the history with plain creations."""
    events = list(simulate(SimulationConfig(days=3, seed=2, snapshot_load=False)))

    assert not [e for e in events if "snapshot" in e]


@pytest.mark.parametrize("market", [800, 1_500])
def test_a_market_bounds_the_accounts_new_leads_come_from(market: int) -> None:
    """With `market`, accounts stop being new once that many were seen (steady long runs)."""

    def accounts_and_leads(**knobs: Any) -> tuple[int, int]:
        config = SimulationConfig(days=120, seed=3, leads_per_day=40, **knobs)
        events = list(simulate(config))
        accounts = {e["account_id"] for e in events if "account_id" in e}
        return len(accounts), sum(e["type"] == "lead.created" for e in events)

    accounts, leads = accounts_and_leads(market=market)
    assert accounts <= market < leads  # leads went on coming, from known accounts
    assert accounts_and_leads()[0] > 2 * market  # without a market, new accounts


def test_a_market_of_no_accounts_is_refused() -> None:
    with pytest.raises(ValueError, match="market"):
        SimulationConfig(days=1, seed=1, market=0)


def test_without_growth_and_wave_the_lead_rate_is_steady() -> None:
    """`lead_growth=0, yearly_wave=0` (the soak's steady business): each quarter brings
    about as many new names; with the default wave the quarters differ."""

    def per_quarter(**knobs: Any) -> list[int]:
        config = SimulationConfig(days=360, seed=5, leads_per_day=40, **knobs)
        counts = collections.Counter(
            int((_at(e) - config.start).days // 90)
            for e in simulate(config)
            if e["type"] == "lead.created" and not e.get("snapshot")
        )
        return [counts[q] for q in range(4)]

    steady = per_quarter(lead_growth=0.0, yearly_wave=0.0)
    assert max(steady) / min(steady) < 1.05, steady
    waving = per_quarter(lead_growth=0.0)
    assert max(waving) / min(waving) > 1.1, waving

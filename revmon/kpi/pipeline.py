"""Pipeline, targets and gaps (SPEC §3.4): the opportunity book of one input partition.

The book applies the funnel's answer (`revmon.kpi.funnel`) for each opportunity event and
keeps what the pipeline metrics and the forecast (§3.8, `kpi/forecast.py`) need:

- `records`: one record per opportunity (see `Opportunity`);
- `windows`: created, won and lost counts and amounts, cycle seconds, and the §3.8
  reached/won counts, each dated by the event that caused it.

An opportunity's close is counted once, at its latest close: re-opening retracts the
earlier close's points (negative points at the earlier close time), so a lost deal that
is re-opened and won is one win, and a re-opened deal that is still open is no close.

Expiry (SPEC §2, v2): an open opportunity that can expire is also in `Deadlines`, with
what it would take out of the open totals and add to the losses when its deadline
passes; `partials(now)` applies that for every deadline at or before `now` until the
next event about the opportunity writes the loss into the state (`Move.expired`).
Snapshots (v2) are open opportunities that were not created: no pipeline created, and
their cycle starts at `entered_at`. An opportunity's `channel` (v2) attributes its
creation and its win to a lead source (SPEC §3.3).

Open totals per (kind, stage) and per (kind, expected close date) are derived indexes,
kept incrementally in exact decimals and rebuilt from the records by `rebuild()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from typing import TypeAlias, TypeVar, get_args
from zoneinfo import ZoneInfo

from revmon.events import (
    OpportunityAmountChanged,
    OpportunityCreated,
    OpportunityKind,
    OpportunityStageChanged,
)
from revmon.kpi.expiry import Deadlines
from revmon.kpi.funnel import (
    FINITE_BUCKETS,
    Effect,
    FunnelSpec,
    Move,
    Position,
    bucket_of,
    create,
    deadline,
    forgotten,
    move,
    spec_of,
    touch,
)
from revmon.kpi.inventory import le_label
from revmon.kpi.ledger import Records, Sample, Windows, component
from revmon.kpi.marketing import CHANNEL_CREATED, CHANNEL_WON, channel_label
from revmon.kpi.opportunities import Opportunity, expiry_contribution
from revmon.kpi.periods import Period, current_targets
from revmon.settings import Settings, Window

OpportunityEvent: TypeAlias = (
    OpportunityCreated | OpportunityStageChanged | OpportunityAmountChanged
)

KINDS: tuple[str, ...] = get_args(OpportunityKind)
DAY = 86_400.0
PACE_WINDOWS = (Window("30d", 30 * DAY), Window("90d", 90 * DAY))
FORECAST_HORIZON = 365 * DAY

# Partial (summable component) names; keys are `name|label|...` in the order documented.
OPEN = "pipeline_open"  # |kind|stage
OPEN_AMOUNT = "pipeline_open_amount"  # |kind|stage
CREATED = "pipeline_created"  # |kind|window, and every flow name below
CREATED_AMOUNT = "pipeline_created_amount"
WON = "pipeline_won"
WON_AMOUNT = "pipeline_won_amount"
LOST = "pipeline_lost"
LOST_AMOUNT = "pipeline_lost_amount"
CYCLE = "pipeline_cycle_seconds_sum"  # Σ cycles: `revmon_pipeline_cycle_seconds_gsum`
CYCLE_BUCKET = "pipeline_cycle_seconds_bucket"  # |kind|window|le, cumulative
CYCLE_FAMILY = "revmon_pipeline_cycle_seconds"  # a gauge histogram (v2)
_CYCLE_BUCKET = "cycle_bucket"  # series |kind|le: wins whose cycle falls in that bucket only
_CHANNEL_CREATED = "channel_created"  # series |channel
_CHANNEL_WON = "channel_won"  # series |channel
PACE_AMOUNT = "pipeline_pace_created_amount"  # |kind|30d and |kind|90d
PERIOD_WON = "pipeline_period_won_amount"  # |period|kind
COVERAGE_OPEN = "pipeline_coverage_open_amount"  # |period|kind
STAGE_REACHED = "pipeline_stage_reached"  # |kind|stage, closed in 365d
STAGE_REACHED_WON = "pipeline_stage_reached_won"  # |kind|stage, closed in 365d
FLOWS = (CREATED, CREATED_AMOUNT, WON, WON_AMOUNT, LOST, LOST_AMOUNT, CYCLE)

_K = TypeVar("_K")

# Open amounts are added and taken away for every move; decimals keep them exact.
_MONEY = Context(prec=80)


@dataclass(slots=True)
class _Total:
    """Count and exact amount of the open opportunities under one index key."""

    count: int = 0
    amount: Decimal = Decimal(0)


def opportunity_spec(settings: Settings) -> FunnelSpec:
    """The opportunity funnel of `settings`; a closed opportunity may be re-opened."""
    return spec_of("opportunity", settings.funnels.opportunity, can_reopen=True)


def opportunity_move(spec: FunnelSpec, current: Position | None, event: OpportunityEvent) -> Move:
    """The funnel's answer for an opportunity event (what `FunnelBook.apply` returns)."""
    if isinstance(event, OpportunityCreated):
        return create(
            spec, current, event.stage, event.at, snapshot=event.is_snapshot, since=event.since
        )
    if isinstance(event, OpportunityStageChanged):
        return move(spec, current, event.stage, event.at)
    return touch(spec, current, event.at)


@dataclass(slots=True)
class PipelineBook:
    """The pipeline state of one input partition (SPEC §3.4, §3.8, and §3.3 attribution)."""

    settings: Settings
    spec: FunnelSpec
    records: Records
    windows: Windows
    # Derived from `records`: open opportunities by (kind, stage) and (kind, close date),
    # and the pending expiries of those that can expire.
    _open: dict[tuple[str, str], _Total] = field(init=False, default_factory=dict)
    _closing: dict[tuple[str, str | None], _Total] = field(init=False, default_factory=dict)
    _deadlines: Deadlines = field(init=False, default_factory=Deadlines)
    _channels: frozenset[str] = field(init=False, default=frozenset())

    def __post_init__(self) -> None:
        self._channels = frozenset(self.settings.marketing.labels)
        self.rebuild()

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineBook:
        """An empty book; windows keep what the longest window, 90d pace and 365d forecast see."""
        longest = max((w.seconds for w in settings.window_list), default=0.0)
        retention = max(longest, PACE_WINDOWS[-1].seconds, FORECAST_HORIZON)
        return cls(settings, opportunity_spec(settings), Records(), Windows(retention))

    def position(self, opportunity_id: str) -> Position | None:
        """Where the opportunity is (what `funnel.create`/`funnel.move` take), or None."""
        value = self.records.get(opportunity_id)
        return None if value is None else Opportunity.position_of(value)

    def apply(self, event: OpportunityEvent, move: Move | None, line: float | None = None) -> bool:
        """Apply one opportunity event, given the funnel's `move` for it.

        An opportunity closed before `line` (`closed_retention` behind the newest event) is
        forgotten first, as the funnel book does: the event finds it unknown.

        Returns:
            True when the event was late (SPEC §1): it changed nothing.
        """
        key = event.opportunity_id
        self._forget(key, line)
        if move is None:
            move = opportunity_move(self.spec, self.position(key), event)
        if move.effect is Effect.LATE:
            return True
        value = self.records.get(key)
        if value is None:
            if move.position is not None and not isinstance(event, OpportunityAmountChanged):
                self._enter(key, self._new(event, move.position))
            return False
        opp = Opportunity.from_record(value)
        if move.position is None and not isinstance(event, OpportunityAmountChanged):
            return False  # a repeat creation, a same-stage move, a closed deal: nothing
        was_open = self.spec.is_open(opp.stage)
        if not was_open and move.position is None:
            return False  # re-values open opportunities only
        if was_open:
            self._index(key, opp, -1)
        if move.expired is not None:
            # SPEC §2: lost at its deadline, at its amount, before the event applies.
            opp.stage, opp.entered_at = move.expired.to, move.expired.at
            self._close(opp, +1.0)
        if isinstance(event, OpportunityAmountChanged):
            if self.spec.is_open(opp.stage):
                opp.amount = event.amount  # re-values open opportunities only
        elif move.effect in (Effect.MOVED, Effect.REOPENED):
            if move.effect is Effect.REOPENED:
                self._close(opp, -1.0)
            if event.amount is not None:
                opp.amount = event.amount
        if move.position is not None:
            opp.stage, opp.entered_at = move.position.stage, move.position.entered_at
            opp.expires = move.position.expires
        if self.spec.is_open(opp.stage):
            if opp.stage not in opp.reached:
                opp.reached.append(opp.stage)
            self._index(key, opp, +1)
        elif move.effect is Effect.MOVED:
            self._close(opp, +1.0)
        self.records.put(key, opp.to_record())
        return False

    def _new(
        self, event: OpportunityCreated | OpportunityStageChanged, at: Position
    ) -> Opportunity:
        if isinstance(event, OpportunityStageChanged):
            # SPEC §1: a stage change creates an unknown opportunity, but not as a creation.
            amount = event.amount if event.amount is not None else Decimal(0)
            return Opportunity(
                "new_business", amount, at.stage, at.entered_at, at.entered_at, None, [], False
            )
        close_date = (
            None if event.expected_close_date is None else event.expected_close_date.isoformat()
        )
        channel = None if event.channel is None else channel_label(event.channel, self._channels)
        created = not event.is_snapshot  # a snapshot is not pipeline created (v2)
        opp = Opportunity(
            event.kind,
            event.amount,
            at.stage,
            at.entered_at,
            at.entered_at,
            close_date,
            [],
            created,
            channel,
        )
        if created:
            self.windows.add(component(CREATED, opp.kind), event.at)
            self.windows.add(component(CREATED_AMOUNT, opp.kind), event.at, float(opp.amount))
            if channel is not None:
                self.windows.add(component(_CHANNEL_CREATED, channel), event.at, float(opp.amount))
        return opp

    def _enter(self, key: str, opp: Opportunity) -> None:
        """Count a new opportunity in its stage and store it."""
        if self.spec.is_open(opp.stage):
            opp.reached.append(opp.stage)
            self._index(key, opp, +1)
        else:
            self._close(opp, +1.0)
        self.records.put(key, opp.to_record())

    def _close(self, opp: Opportunity, sign: float) -> None:
        """Add (sign +1) or retract (sign -1) the points of the opportunity's close."""
        at, kind, won = opp.entered_at, opp.kind, opp.stage == self.spec.converted
        add = self.windows.add
        add(component(WON if won else LOST, kind), at, sign)
        add(component(WON_AMOUNT if won else LOST_AMOUNT, kind), at, sign * float(opp.amount))
        if won:
            cycle = at - opp.created_at
            add(component(CYCLE, kind), at, sign * cycle)
            add(component(_CYCLE_BUCKET, kind, bucket_of(cycle)), at, sign)
            if opp.channel is not None:
                add(component(_CHANNEL_WON, opp.channel), at, sign * float(opp.amount))
        for stage in opp.reached:
            add(component(STAGE_REACHED, kind, stage), at, sign)
            if won:
                add(component(STAGE_REACHED_WON, kind, stage), at, sign)

    def _index(self, key: str, opp: Opportunity, sign: int) -> None:
        """Add (+1) or remove (-1) an open opportunity from the derived open totals."""
        amount = opp.amount if sign > 0 else opp.amount.copy_negate()
        _bump(self._open, (opp.kind, opp.stage), sign, amount)
        _bump(self._closing, (opp.kind, opp.close_date), sign, amount)
        if sign < 0:
            self._deadlines.remove(key)
            return
        end = deadline(self.spec, opp.position)
        if end is not None:
            self._deadlines.add(key, end, expiry_contribution(opp))

    def _forget(self, key: str, line: float | None) -> bool:
        """Forget the opportunity when it closed before `line`; True when it did."""
        value = self.records.get(key) if line is not None else None
        if value is None or not forgotten(self.spec, Opportunity.position_of(value), line):
            return False
        opp = Opportunity.from_record(value)
        if self.spec.is_open(opp.stage):
            self._index(key, opp, -1)  # expired, not yet written: no longer counted anywhere
        self.records.delete(key)
        return True

    def retire(self, line: float) -> int:
        """Forget every opportunity closed before `line` (what `apply` would forget on its
        next event anyway, so when this runs changes no number); how many."""
        return sum(self._forget(key, line) for key in [key for key, _ in self.records.items()])

    def rebuild(self) -> None:
        """Recompute the derived open totals from `records` (after `records.load()`)."""
        self._open.clear()
        self._closing.clear()
        self._deadlines = Deadlines()
        for key, value in self.records.items():
            opp = Opportunity.from_record(value)
            if self.spec.is_open(opp.stage):
                self._index(key, opp, +1)

    def partials(self, now: float) -> dict[str, float]:
        """The summable components at `now` (keys: see the name constants of this module)."""
        out: dict[str, float] = {}
        windows = self.windows
        gone = self._deadlines.through(now)  # expired by now, not yet written (SPEC §2)
        lost = {w.label: self._deadlines.between(now, w.seconds) for w in self.settings.window_list}
        recent = self._deadlines.between(now, FORECAST_HORIZON)
        for kind in KINDS:
            for stage in self.spec.stages:
                total = self._open.get((kind, stage), _Total())
                count = total.count - gone.get(f"open|{kind}|{stage}", 0)
                amount = _MONEY.subtract(total.amount, gone.get(f"amount|{kind}|{stage}", 0))
                out[component(OPEN, kind, stage)] = float(count)
                out[component(OPEN_AMOUNT, kind, stage)] = float(amount)
                for name in (STAGE_REACHED, STAGE_REACHED_WON):
                    series = component(name, kind, stage)
                    out[series] = windows.sum(series, now, FORECAST_HORIZON)
                reached = recent.get(f"reached|{kind}|{stage}", 0)
                out[component(STAGE_REACHED, kind, stage)] += float(reached)
            for window in self.settings.window_list:
                for name in FLOWS:
                    out[component(name, kind, window.label)] = windows.sum(
                        component(name, kind), now, window.seconds
                    )
                expired = lost[window.label]
                out[component(LOST, kind, window.label)] += float(expired.get(f"lost|{kind}", 0))
                lost_amount = float(expired.get(f"amount|{kind}", 0))
                out[component(LOST_AMOUNT, kind, window.label)] += lost_amount
                self._cycle_buckets(out, kind, window, now)
            for window in PACE_WINDOWS:
                out[component(PACE_AMOUNT, kind, window.label)] = windows.sum(
                    component(CREATED_AMOUNT, kind), now, window.seconds
                )
        self._channel_partials(out, now)
        out.update(self._target_partials(now, gone))
        return out

    def _cycle_buckets(self, out: dict[str, float], kind: str, window: Window, now: float) -> None:
        cumulative = 0.0
        for bound in FINITE_BUCKETS:
            le = le_label(bound)
            cumulative += self.windows.sum(component(_CYCLE_BUCKET, kind, le), now, window.seconds)
            out[component(CYCLE_BUCKET, kind, window.label, le)] = cumulative

    def _channel_partials(self, out: dict[str, float], now: float) -> None:
        for window in self.settings.window_list:
            for channel in self.settings.marketing.labels:
                for name, series in (
                    (CHANNEL_CREATED, _CHANNEL_CREATED),
                    (CHANNEL_WON, _CHANNEL_WON),
                ):
                    out[component(name, channel, window.label)] = self.windows.sum(
                        component(series, channel), now, window.seconds
                    )

    def _target_partials(
        self, now: float, gone: Mapping[str, Decimal]
    ) -> Iterator[tuple[str, float]]:
        zone = ZoneInfo(self.settings.timezone)
        for period, target in current_targets(self.settings.targets, now, zone):
            kinds = KINDS if target.kind == "all" else (target.kind,)
            start = period.start(zone)
            won = math.fsum(
                _since(self.windows, component(WON_AMOUNT, k), start, now) for k in kinds
            )
            yield component(PERIOD_WON, period.label, target.kind), won
            yield (
                component(COVERAGE_OPEN, period.label, target.kind),
                self._open_closing_in(period, kinds, gone),
            )

    def _open_closing_in(
        self, period: Period, kinds: tuple[str, ...], gone: Mapping[str, Decimal]
    ) -> float:
        """Open amount of `kinds` without an expected close date or with one inside `period`."""
        amount = Decimal(0)
        for (kind, day), total in self._closing.items():
            if kind in kinds and (day is None or period.has_day(day)):
                amount = _MONEY.add(amount, total.amount)
                expired = gone.get(f"closing|{kind}|{day or ''}", 0)
                amount = _MONEY.subtract(amount, expired)
        return float(amount)


def _bump(index: dict[_K, _Total], key: _K, count: int, amount: Decimal) -> None:
    total = index.setdefault(key, _Total())
    total.count += count
    total.amount = _MONEY.add(total.amount, amount)
    if total.count == 0:
        del index[key]  # no open opportunity left: no stray zero or rounding residue


def _since(windows: Windows, key: str, start: float, now: float) -> float:
    """The total of series `key` over `[start, now]` (start included, unlike a window).

    The window ends just below `start` (the next float down), so nothing before `start`
    and everything at or after it is counted; both subtractions are exact for event
    times of this century and spans under a year.
    """
    return windows.sum(key, now, now - math.nextafter(start, -math.inf))


class SeriesList:
    """Samples grouped by metric name (a family's series together, families in first-seen order)."""

    def __init__(self) -> None:
        self._families: dict[str, list[Sample]] = {}

    def add(self, name: str, labels: tuple[tuple[str, str], ...], value: float) -> None:
        """Add one series."""
        self._families.setdefault(name, []).append(Sample(name, labels, value))

    def samples(self) -> list[Sample]:
        """Every series added, grouped by family."""
        return [sample for family in self._families.values() for sample in family]


def samples(settings: Settings, partials: Mapping[str, float], now: float) -> list[Sample]:
    """The §3.4 series from partials summed over partitions; ratios only where defined."""
    out = SeriesList()

    def get(*key: str) -> float:
        return partials.get(component(*key), 0.0)

    for kind in KINDS:
        for stage in settings.funnels.opportunity.stages:
            labels = (("kind", kind), ("stage", stage))
            out.add("revmon_pipeline_open", labels, get(OPEN, kind, stage))
            out.add("revmon_pipeline_open_amount", labels, get(OPEN_AMOUNT, kind, stage))
    for kind in KINDS:
        open_count = math.fsum(get(OPEN, kind, s) for s in settings.funnels.opportunity.stages)
        for window in settings.window_list:
            labels = (("kind", kind), ("window", window.label))
            flow = {name: get(name, kind, window.label) for name in FLOWS}
            for name, value in flow.items():
                if name != CYCLE:
                    out.add(f"revmon_{name}", labels, value)
            won, lost, cycle = flow[WON], flow[LOST], flow[CYCLE]
            for bound in FINITE_BUCKETS:
                le = le_label(bound)
                bucket = get(CYCLE_BUCKET, kind, window.label, le)
                out.add(f"{CYCLE_FAMILY}_bucket", (*labels, ("le", le)), bucket)
            out.add(f"{CYCLE_FAMILY}_bucket", (*labels, ("le", "+Inf")), won)
            out.add(f"{CYCLE_FAMILY}_gcount", labels, won)
            out.add(f"{CYCLE_FAMILY}_gsum", labels, cycle)
            if won + lost > 0:
                out.add("revmon_pipeline_win_ratio", labels, won / (won + lost))
            if won > 0 and cycle > 0:
                mean_cycle_days = cycle / won / DAY
                deal = flow[WON_AMOUNT] / won
                velocity = open_count * (won / (won + lost)) * deal / mean_cycle_days
                out.add("revmon_pipeline_velocity_amount_per_day", labels, velocity)
    for kind in KINDS:
        recent, quarter = (get(PACE_AMOUNT, kind, w.label) for w in PACE_WINDOWS)
        if quarter > 0:
            out.add(
                "revmon_pipeline_creation_pace_ratio", (("kind", kind),), recent / (quarter / 3)
            )
    _target_samples(settings, get, now, out)
    return out.samples()


def _target_samples(
    settings: Settings, get: Callable[..., float], now: float, out: SeriesList
) -> None:
    coverage = float(settings.pipeline.required_coverage)
    for period, target in current_targets(settings.targets, now, ZoneInfo(settings.timezone)):
        labels = (("period", period.label), ("kind", target.kind))
        amount = float(target.amount)
        won = get(PERIOD_WON, period.label, target.kind)
        open_amount = get(COVERAGE_OPEN, period.label, target.kind)
        remainder = amount - won
        out.add("revmon_target_amount", labels, amount)
        out.add("revmon_period_won_amount", labels, won)
        if remainder > 0:
            out.add("revmon_pipeline_coverage_ratio", labels, open_amount / remainder)
        out.add("revmon_pipeline_gap_amount", labels, max(0.0, coverage * remainder - open_amount))

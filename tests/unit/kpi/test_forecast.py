"""Stage win ratios and the expected pipeline amount (revmon/kpi/forecast.py)."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from revmon.kpi import forecast
from revmon.kpi.pipeline import PipelineBook
from tests.unit.kpi.test_pipeline import (
    DAY,
    NOW,
    Event,
    assert_subset,
    config,
    created,
    exported,
    feed,
    moved,
)


def run(events: Iterable[Event], now: float = NOW) -> dict[str, float]:
    """The §3.8 series of one book fed `events`, at `now`."""
    cfg = config()
    book = PipelineBook.from_settings(cfg)
    feed(book, events)
    return exported(forecast.samples(cfg, book.partials(now), now))


def ratio(stage: str, kind: str = "new_business") -> str:
    """The series name of a stage win ratio."""
    return f"revmon_stage_win_ratio{{kind={kind},stage={stage}}}"


def expected(kind: str = "new_business") -> str:
    """The series name of an expected amount."""
    return f"revmon_pipeline_expected_amount{{kind={kind}}}"


def closed_deals() -> list[Event]:
    """Three closed new-business deals; one skips discovery, one regresses."""
    t = NOW - 100 * DAY
    return [
        created("a", t, "100"),
        moved("a", t + DAY, "proposal"),  # skips discovery
        moved("a", t + 2 * DAY, "won"),
        created("b", t, "100"),
        moved("b", t + DAY, "discovery"),
        moved("b", t + 2 * DAY, "lost"),
        created("c", t, "100"),
        moved("c", t + DAY, "negotiation"),
        moved("c", t + 2 * DAY, "qualification"),  # back again: still reached once
        moved("c", t + 3 * DAY, "won"),
    ]


def test_empty_book_has_expected_amounts_at_zero_and_no_ratio() -> None:
    """Before any close there is no stage ratio, and every expected amount is 0."""
    got = run([])

    assert got == {expected(kind): 0.0 for kind in ("new_business", "expansion", "renewal")}


def test_stage_win_ratio_counts_reached_stages_only() -> None:
    """Of closed deals that were ever in a stage, the share won; skipped stages are not reached."""
    got = run(closed_deals())

    assert_subset(
        got,
        {
            ratio("qualification"): 2 / 3,  # a, b, c reached it; a and c won
            ratio("discovery"): 0.0,  # only b, lost
            ratio("proposal"): 1.0,  # only a
            ratio("negotiation"): 1.0,  # only c
            ratio("proposal", "expansion"): None,
        },
    )


@pytest.mark.parametrize(
    ("closed_days_ago", "counted"),
    [
        pytest.param(364, True, id="inside-365d"),
        pytest.param(365 - 1 / 86_400, True, id="one-second-inside"),
        pytest.param(365, False, id="exactly-365d-ago-is-outside"),
        pytest.param(400, False, id="long-ago"),
    ],
)
def test_stage_win_ratio_forgets_closes_after_365_days(
    closed_days_ago: float, counted: bool
) -> None:
    """Only closes in (now - 365d, now] count."""
    closed_at = NOW - closed_days_ago * DAY
    events = [created("a", closed_at - DAY, "100"), moved("a", closed_at, "won")]

    assert_subset(run(events), {ratio("qualification"): 1.0 if counted else None})


@pytest.mark.parametrize(
    ("events", "qualification", "proposal"),
    [
        pytest.param(
            [
                created("a", NOW - 30 * DAY, "100"),
                moved("a", NOW - 20 * DAY, "lost"),
                moved("a", NOW - 10 * DAY, "proposal"),
            ],
            None,
            None,
            id="reopened-and-open-is-not-closed",
        ),
        pytest.param(
            [
                created("a", NOW - 30 * DAY, "100"),
                moved("a", NOW - 20 * DAY, "lost"),
                moved("a", NOW - 10 * DAY, "proposal"),
                moved("a", NOW - 5 * DAY, "won"),
            ],
            1.0,
            1.0,
            id="reopened-then-won-counts-once-as-won",
        ),
        pytest.param(
            [
                created("a", NOW - 30 * DAY, "100"),
                moved("a", NOW - 20 * DAY, "won"),
                moved("a", NOW - 10 * DAY, "qualification"),
                moved("a", NOW - 5 * DAY, "lost"),
            ],
            0.0,
            None,
            id="won-reopened-then-lost-counts-once-as-lost",
        ),
        pytest.param(
            [moved("a", NOW - 5 * DAY, "won")],
            None,
            None,
            id="won-without-an-open-stage-reaches-nothing",
        ),
    ],
)
def test_latest_close_counts(
    events: list[Event], qualification: float | None, proposal: float | None
) -> None:
    """A re-open retracts the earlier close; the latest close is the one counted."""
    assert_subset(run(events), {ratio("qualification"): qualification, ratio("proposal"): proposal})


def test_expected_amount_weights_open_amounts_by_stage_ratio() -> None:
    """Σ open amount × its (kind, stage) ratio; a stage without a ratio contributes 0."""
    events = [
        *closed_deals(),  # new business: qualification 2/3, proposal 1, discovery 0
        created("d", NOW - DAY, "300"),  # qualification: 300 × 2/3
        created("e", NOW - DAY, "100", stage="proposal"),  # 100 × 1
        created("f", NOW - DAY, "500", stage="discovery"),  # 500 × 0
        created("g", NOW - DAY, "50", "expansion", stage="proposal"),  # no expansion ratio
    ]

    got = run(events)

    assert_subset(
        got,
        {
            expected(): 300 * 2 / 3 + 100,
            expected("expansion"): 0.0,
            expected("renewal"): 0.0,
        },
    )


def test_ratios_come_from_summed_partials() -> None:
    """Two partitions' closes make one ratio: the ratio of the sums, not a sum of ratios."""
    cfg = config()
    books = [PipelineBook.from_settings(cfg) for _ in range(2)]
    feed(books[0], [created("a", NOW - 9 * DAY, "10"), moved("a", NOW - 8 * DAY, "won")])
    feed(books[1], [created("b", NOW - 9 * DAY, "10"), moved("b", NOW - 8 * DAY, "lost")])
    feed(books[1], [created("c", NOW - 9 * DAY, "10"), moved("c", NOW - 8 * DAY, "lost")])
    feed(books[1], [created("d", NOW - DAY, "90")])
    summed: dict[str, float] = {}
    for book in books:
        for key, value in book.partials(NOW).items():
            summed[key] = summed.get(key, 0.0) + value

    got = exported(forecast.samples(cfg, summed, NOW))

    assert_subset(got, {ratio("qualification"): 1 / 3, expected(): 30.0})

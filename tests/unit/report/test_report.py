"""`revmon report`'s pure parts: weeks, samples, number formats, tiles, charts and the page."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from revmon.errors import ConfigError, InputFileError
from revmon.replay import Cutoff
from revmon.report import formats
from revmon.report.log import Span, midnights, plan
from revmon.report.page import Source, render
from revmon.report.prometheus import FAMILY_LABEL, READ, instants, query_text
from revmon.report.samples import (
    AlertChange,
    Samples,
    Week,
    changes_between,
    key,
    last_week_end,
    parse_exposition,
    week_ends,
)
from revmon.report.tiles import tiles
from revmon.settings import load_settings

UTC = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")


def at(text: str, zone: ZoneInfo = UTC) -> datetime:
    """A moment written as `YYYY-MM-DD HH:MM` in `zone`."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(
    ("moment", "zone", "end"),
    [
        pytest.param("2025-10-08 12:00", UTC, "2025-10-06 00:00", id="midweek"),
        pytest.param("2025-10-06 00:00", UTC, "2025-10-06 00:00", id="on-the-edge"),
        pytest.param("2025-10-05 23:59", UTC, "2025-09-29 00:00", id="sunday-night"),
        pytest.param("2025-11-03 03:00", NEW_YORK, "2025-11-03 00:00", id="after-dst-ends"),
    ],
)
def test_the_last_complete_week_ends_on_the_monday_midnight_before(
    moment: str, zone: ZoneInfo, end: str
) -> None:
    """The last complete week ends at the latest Monday 00:00 (local) at or before a moment."""
    assert last_week_end(at(moment, zone), zone) == at(end, zone)


def test_week_ends_keep_local_midnight_across_a_dst_change() -> None:
    """Week ends are Mondays 00:00 local time, 7 calendar days apart even over a DST change."""
    ends = week_ends(at("2025-11-10 00:00", NEW_YORK), 3)
    assert [f"{e:%Y-%m-%d %H:%M %Z}" for e in ends] == [
        "2025-10-27 00:00 EDT",
        "2025-11-03 00:00 EST",
        "2025-11-10 00:00 EST",
    ]
    assert Week(ends[1], Samples()).start == ends[0]


@pytest.mark.parametrize(
    ("text", "kept", "dropped"),
    [
        pytest.param(
            "2025-09-30",
            "2025-09-30T23:59:59+00:00",
            "2025-10-01T00:00:00+00:00",
            id="a-date-keeps-its-day",
        ),
        pytest.param(
            "2025-09-30T12:00:00+00:00",
            "2025-09-30T12:00:00+00:00",
            "2025-09-30T12:00:01+00:00",
            id="a-timestamp-is-inclusive",
        ),
    ],
)
def test_until_keeps_events_up_to_the_date_or_timestamp(text: str, kept: str, dropped: str) -> None:
    """`--until` keeps a date's whole day and a timestamp's own instant, nothing later."""
    cutoff = Cutoff.parse(text, "UTC")
    assert cutoff.admits(datetime.fromisoformat(kept).timestamp())
    assert not cutoff.admits(datetime.fromisoformat(dropped).timestamp())


@pytest.mark.parametrize("text", ["yesterday", "2025-09-30T12:00:00", "2025-13-01"])
def test_until_refuses_what_is_neither_a_date_nor_a_timestamp_with_offset(text: str) -> None:
    """A bad `--until` is a one-line usage error naming the value."""
    with pytest.raises(ConfigError, match=re.escape(repr(text))):
        Cutoff.parse(text, "UTC")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        pytest.param(formats.money(1234567.4, "USD"), "$1,234,567", id="money"),
        pytest.param(formats.money(-2500, "EUR"), "−€2,500", id="negative-money"),
        pytest.param(formats.money(10, "CHF"), "10 CHF", id="other-currency"),
        pytest.param(formats.money(None, "USD"), "–", id="no-value"),
        pytest.param(formats.short_money(1_250_000, "USD"), "$1.25M", id="axis-millions"),
        pytest.param(formats.short_money(-15_000, "USD"), "−$15k", id="axis-thousands"),
        pytest.param(formats.percent(0.0384), "3.8%", id="percent"),
        pytest.param(formats.ratio(1234.5), "1,234.50", id="ratio"),
        pytest.param(formats.count(12345), "12,345", id="count"),
        pytest.param(formats.months(12.46), "12.5 months", id="months"),
        pytest.param(formats.duration(30 * 86400), "30d", id="duration"),
        pytest.param(formats.week_label(at("2026-02-02 00:00")), "2026-W05", id="iso-week"),
    ],
)
def test_numbers_are_formatted_for_people(value: str, text: str) -> None:
    """Currency, percentages and counts carry symbols and thousands separators."""
    assert value == text


EXPOSITION = b"""\
# TYPE revmon_er_ratio gauge
revmon_er_ratio{window="90d"} 0.5
revmon_er_ratio{window="30d"} 0.7
# TYPE revmon_pipeline_open_amount gauge
revmon_pipeline_open_amount{kind="new_business",stage="proposal"} 100.0
revmon_pipeline_open_amount{kind="expansion",stage="proposal"} 50.0
"""


def test_an_exposition_parses_into_samples_by_name_and_labels() -> None:
    """Samples read by exact labels, by a subset (summed), and grouped by one label."""
    samples = parse_exposition(EXPOSITION)
    assert samples.get("revmon_er_ratio", window="90d") == 0.5
    assert samples.get("revmon_er_ratio") is None
    assert samples.total("revmon_pipeline_open_amount", stage="proposal") == 150.0
    assert samples.by("kind", "revmon_pipeline_open_amount") == {
        "new_business": 100.0,
        "expansion": 50.0,
    }


def message(status: str, starts: str, ends: str | None) -> dict[str, object]:
    """An alerts-topic message (SPEC §6) of ExpenseToRevenueHigh."""
    return {
        "alertname": "ExpenseToRevenueHigh",
        "status": status,
        "labels": {"alertname": "ExpenseToRevenueHigh", "window": "90d", "severity": "warning"},
        "annotations": {"summary": "E:R 0.61"},
        "starts_at": starts,
        "ends_at": ends,
    }


def test_alert_changes_are_dated_by_when_they_fired_or_resolved() -> None:
    """A firing counts in the week it started, a resolution in the week it ended."""
    fired = AlertChange.from_message(message("firing", "2025-10-01T00:00:00+00:00", None))
    resolved = AlertChange.from_message(
        message("resolved", "2025-10-01T00:00:00+00:00", "2025-10-07T00:00:00+00:00")
    )
    week = changes_between([resolved, fired], at("2025-09-29 00:00"), at("2025-10-06 00:00"))
    assert week == (fired,)
    assert changes_between([fired, resolved], at("2025-10-06 00:00"), at("2025-10-13 00:00")) == (
        resolved,
    )


def week_of(end: str, **values: float) -> Week:
    """A week whose samples hold the given unlabelled-window series (name=value, 90d)."""
    series = {key(name, {"window": "90d"}): value for name, value in values.items()}
    series[key("revmon_pipeline_creation_pace_ratio", {"kind": "new_business"})] = 0.8
    series[key("revmon_alerts_firing", {"alertname": "A", "severity": "warning"})] = 1.0
    return Week(at(end), Samples(series))


WEEKS = [
    week_of("2025-10-06 00:00", revmon_er_ratio=0.55, revmon_customer_churn_ratio=0.02),
    week_of("2025-10-13 00:00", revmon_er_ratio=0.65, revmon_customer_churn_ratio=0.01),
]


def test_tiles_compare_with_last_week_and_judge_by_the_rule_thresholds() -> None:
    """Each tile has its value, last week's, and a verdict against the shipped thresholds."""
    settings = load_settings(None)
    got = {t.key: t for t in tiles(WEEKS, settings)}
    assert (got["er"].value, got["er"].previous, got["er"].ok) == (0.65, 0.55, False)
    assert (got["churn"].value, got["churn"].ok) == (0.01, True)
    assert (got["pace"].value, got["pace"].ok) == (0.8, True)
    assert (got["firing"].value, got["firing"].ok) == (1.0, False)
    assert got["coverage"].value is None
    assert got["coverage"].judged_by == "no target configured"


def test_the_page_is_self_contained_with_every_chart_inline() -> None:
    """The page has every tile and chart, inline SVG, and nothing to fetch or run."""
    settings = load_settings(None)
    page = render(WEEKS, settings, Source("test", alerts_note="cannot know"))
    assert page.count('<figure class="chart"') == 7
    assert page.count("<svg") == 7
    assert page.count('data-tile="') == 10
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert "<script" not in page
    assert "week of Mon 6 Oct 2025 (2025-W41)" in page
    assert "cannot know" in page  # the weeks have no alert changes: the source says why


def test_the_page_is_the_same_for_the_same_samples() -> None:
    """Rendering is a pure function: the same weeks give the same bytes."""
    settings = load_settings(None)
    assert render(WEEKS, settings, Source("a")) == render(WEEKS, settings, Source("a"))


def test_the_prometheus_query_reads_each_family_aggregated_across_workers() -> None:
    """Every family is aggregated as the catalogue says, and tagged with its own name."""
    text = query_text()
    assert text.count(" or ") == len(READ) - 1
    assert 'max without (instance, job) (revmon_er_ratio), "' + FAMILY_LABEL in text


def test_week_ends_on_the_event_clock_are_read_before_the_watermark_passes_them() -> None:
    """Each week end is read at the last scrape whose evaluation instant is before it."""
    end = at("2025-01-06 00:00")
    w = end.timestamp()
    points = [(100.0, w - 50), (101.0, w - 1), (102.0, w), (103.0, w + 10)]
    assert instants([end, at("2024-12-30 00:00")], points) == {end: 101.0}


def test_the_page_lists_the_rules_firing_at_the_weeks_end() -> None:
    """Firing instances by rule come from the samples, so both sources list them."""
    page = render(WEEKS, load_settings(None), Source("test"))
    assert "<td>A</td><td>warning</td><td class=n>1</td>" in page


@pytest.mark.parametrize(
    ("first", "last", "count", "ends"),
    [
        pytest.param(
            "2025-01-01 00:00",
            "2025-01-30 12:00",
            3,
            ["2025-01-13", "2025-01-20", "2025-01-27"],
            id="the-last-three-whole-weeks",
        ),
        pytest.param(
            "2025-01-01 00:00",
            "2025-01-14 00:00",
            13,
            ["2025-01-06", "2025-01-13"],
            id="weeks-before-the-history-are-left-out",
        ),
    ],
)
def test_a_log_report_covers_whole_weeks_of_the_history(
    first: str, last: str, count: int, ends: list[str]
) -> None:
    """The last reported week is the latest the history covers; none ends before it starts."""
    span = Span(at(first).timestamp(), at(last).timestamp(), 1)
    assert [f"{e:%Y-%m-%d}" for e in plan(span, UTC, count, None)] == ends


def test_a_history_shorter_than_a_week_has_nothing_to_report() -> None:
    """A history that covers no whole week is an error that says so."""
    span = Span(at("2025-01-01 00:00").timestamp(), at("2025-01-05 00:00").timestamp(), 1)
    with pytest.raises(InputFileError, match="does not cover a whole week"):
        plan(span, UTC, 13, None)


def test_a_log_replay_is_cut_at_every_local_midnight() -> None:
    """Slices end at each midnight in the zone (alert rules evaluated daily), DST included."""
    edges = midnights(
        at("2025-11-01 10:00", NEW_YORK).timestamp(), at("2025-11-04 00:00", NEW_YORK)
    )
    assert [datetime.fromtimestamp(e, NEW_YORK).strftime("%d %H:%M") for e in edges] == [
        "02 00:00",
        "03 00:00",
        "04 00:00",
    ]


def test_the_alerts_of_the_week_are_listed_in_local_time() -> None:
    """A replay's alert changes of the last week are listed with their time in `timezone`."""
    settings = load_settings(None, timezone="America/New_York")
    fired = AlertChange.from_message(message("firing", "2025-10-08T14:30:00+00:00", None))
    weeks = [WEEKS[0], Week(WEEKS[1].end, WEEKS[1].samples, (fired,))]
    page = render(weeks, settings, Source("test"))
    assert "<td>Wed 08 Oct 10:30</td><td>ExpenseToRevenueHigh</td><td>firing</td>" in page
    assert "<td>window=90d</td><td>E:R 0.61</td>" in page

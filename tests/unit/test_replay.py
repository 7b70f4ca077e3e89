"""What `replay` reports: counts from a worker's registry, line numbers of messages."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter

from revmon.produce import ProduceReport
from revmon.replay import Tally


def test_tally_reads_the_operational_counters() -> None:
    """Applied sums every type; rejections are kept by reason, zeros left out."""
    registry = CollectorRegistry()
    events = Counter("revmon_events", "", ["type"], registry=registry)
    rejected = Counter("revmon_events_rejected", "", ["reason"], registry=registry)
    Counter("revmon_events_duplicate", "", registry=registry).inc(2)
    Counter("revmon_events_late", "", registry=registry).inc()
    events.labels(type="lead.created").inc(3)
    events.labels(type="invoice.paid").inc(4)
    rejected.labels(reason="malformed_json").inc(2)
    rejected.labels(reason="too_large")

    tally = Tally.of(registry)

    assert tally == Tally(applied=7, late=1, duplicate=2, rejected={"malformed_json": 2})
    assert tally.summary() == "7 applied (1 late), 2 duplicate, 2 rejected (malformed_json 2)"


@pytest.mark.parametrize(
    ("index", "line"),
    [
        pytest.param(None, 4, id="single-message"),
        pytest.param(0, 4, id="first-of-batch"),
        pytest.param(2, 11, id="third-of-batch"),
        pytest.param(3, None, id="past-the-batch"),
    ],
)
def test_a_message_and_batch_index_map_to_the_file_line(index: int | None, line: int) -> None:
    """The report maps (topic, partition, offset) and a batch index to the file's line."""
    report = ProduceReport(line_numbers={("crm", 1, 7): [4, 9, 11]})

    assert report.line_of("crm", 1, 7, index) == line
    assert report.line_of("crm", 0, 7, index) is None

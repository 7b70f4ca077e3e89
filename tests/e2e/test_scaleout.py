"""One worker and two, on the same log, agree after `sum without (instance)`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path

import pytest

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.produce import produce_file
from revmon.settings import load_settings
from revmon.simulate import SimulationConfig, simulate, write_jsonl
from tests.e2e.workers import (
    Series,
    applied,
    scrape,
    settled,
    start,
    state_metrics,
    wait_caught_up,
    write_config,
)

pytestmark = pytest.mark.e2e


def summed(texts: list[str]) -> dict[Series, float]:
    """`sum without (instance)` over several workers' expositions (state series only)."""
    total: dict[Series, float] = defaultdict(float)
    for text in texts:
        for series, value in state_metrics(text).items():
            total[series] += value
    return dict(total)


def settled_sum(ports: list[int], limit: float = 60) -> dict[Series, float]:
    """The summed expositions once two rounds a second apart agree."""
    deadline = time.monotonic() + limit
    previous: dict[Series, float] | None = None
    while time.monotonic() < deadline:
        texts = [scrape(port) for port in ports]
        if all(text is not None for text in texts):
            current = summed([t for t in texts if t is not None])
            if current == previous:
                return current
            previous = current
        time.sleep(1.0)
    raise AssertionError("the summed metrics did not settle")


def test_one_worker_and_two_workers_agree(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Two `revmon run` processes on one group export what one does, summed over instances."""
    history = tmp_path / "history.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "revmon",
            "simulate",
            "--days",
            "150",
            "--seed",
            "4",
            "--out",
            history,
        ],
        check=True,
        capture_output=True,
    )
    tag = uuid.uuid4().hex[:8]
    servers = broker.bootstrap_servers
    alone = write_config(tmp_path, servers, tag, f"alone-{tag}")
    pair = write_config(tmp_path, servers, tag, f"pair-{tag}")
    settings = load_settings(alone)
    connection = Connection(servers, settings.kafka)
    topics = settings.topics
    asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 2))
    produced = asyncio.run(produce_file(history, connection, topics, batch=20))

    alone_port, first_port, second_port = free_port(), free_port(), free_port()
    start(alone, alone_port, processes)
    start(pair, first_port, processes)
    start(pair, second_port, processes)
    wait_caught_up(connection, f"alone-{tag}", produced.last_offsets)
    wait_caught_up(connection, f"pair-{tag}", produced.last_offsets)

    want = settled(alone_port)
    got = settled_sum([first_port, second_port])
    expected = state_metrics(want)
    assert len(expected) > 300
    assert {k: v for k, v in got.items() if v != pytest.approx(expected.get(k), rel=1e-9)} == {}
    assert set(got) == set(expected)
    # Counters are per worker: their sum over the pair is the lone worker's count.
    pair_texts = [scrape(first_port), scrape(second_port)]
    assert sum(applied(t) for t in pair_texts) == applied(want) == produced.lines


def test_a_worker_joining_mid_stream_takes_over_with_nothing_lost_or_counted_twice(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A second worker joins while the first is busy: partitions move mid-stream (revoked
    from a worker between two batches), and the pair still applies every event exactly
    once and exports what a lone worker does."""
    history = tmp_path / "history.jsonl"
    # Busy enough (~280k events) that the first worker still has a backlog when the second
    # one has joined, a few seconds after.
    config = SimulationConfig.from_settings(load_settings(), days=200, seed=5, leads_per_day=300)
    write_jsonl(simulate(config), history)
    tag = uuid.uuid4().hex[:8]
    servers = broker.bootstrap_servers
    alone = write_config(tmp_path, servers, tag, f"alone-{tag}")
    pair = write_config(tmp_path, servers, tag, f"pair-{tag}")
    settings = load_settings(alone)
    connection = Connection(servers, settings.kafka)
    topics = settings.topics
    asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 2))
    produced = asyncio.run(produce_file(history, connection, topics, batch=5))

    alone_port, first_port, second_port = free_port(), free_port(), free_port()
    start(alone, alone_port, processes)
    start(pair, first_port, processes)
    deadline = time.monotonic() + 60
    while applied(scrape(first_port)) == 0:
        assert time.monotonic() < deadline, "the first worker never started applying"
        time.sleep(0.2)
    start(pair, second_port, processes)
    deadline = time.monotonic() + 60
    while applied(scrape(second_port)) == 0:
        assert time.monotonic() < deadline, "the second worker never took over a partition"
        time.sleep(0.2)
    first_when_joined = applied(scrape(first_port))
    assert first_when_joined < produced.lines  # it did join mid-stream
    wait_caught_up(connection, f"alone-{tag}", produced.last_offsets)
    wait_caught_up(connection, f"pair-{tag}", produced.last_offsets)

    want = settled(alone_port)
    got = settled_sum([first_port, second_port])
    expected = state_metrics(want)
    wrong = {
        k: (v, expected.get(k))
        for k, v in got.items()
        if v != pytest.approx(expected.get(k), rel=1e-9)
    }
    families = sorted({name for name, _ in wrong})
    assert dict(sorted(wrong.items())[:12]) == {}, f"{len(wrong)} series differ: {families}"
    assert set(got) == set(expected)
    pair_texts = [scrape(first_port), scrape(second_port)]
    assert sum(applied(t) for t in pair_texts) == applied(want) == produced.lines

"""One worker and two, on the same log, agree after `sum without (instance)`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.produce import ProduceReport, produce_file
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


def settled_sum(ports: list[int], limit: float = 120) -> dict[Series, float]:
    """The summed expositions once two rounds a second apart agree."""
    deadline = time.monotonic() + limit
    previous: dict[Series, float] | None = None
    changing: list[Series] = []
    while time.monotonic() < deadline:
        texts = [scrape(port) for port in ports]
        if all(text is not None for text in texts):
            current = summed([t for t in texts if t is not None])
            if current == previous:
                return current
            if previous is not None:
                keys = set(current) | set(previous)
                changing = sorted(k for k in keys if current.get(k) != previous.get(k))
            previous = current
        time.sleep(1.0)
    shown = ", ".join(f"{name}{dict(labels)}" for name, labels in changing[:5])
    raise AssertionError(f"the summed metrics did not settle: {len(changing)} changing ({shown})")


@dataclass(frozen=True)
class Groups:
    """One lone worker's group and one pair's, on the same produced history."""

    tag: str
    connection: Connection
    alone: Path  # config files
    pair: Path
    produced: ProduceReport

    def wait_caught_up(self) -> None:
        """Both groups have committed all the input and every account fact it gave."""
        wait_caught_up(self.connection, f"alone-{self.tag}", self.produced.last_offsets)
        wait_caught_up(self.connection, f"pair-{self.tag}", self.produced.last_offsets)


def groups(broker: EmbeddedBroker, tmp_path: Path, history: Path, batch: int) -> Groups:
    """Configs for a lone worker and a pair on this test's topics, with `history` produced."""
    tag = uuid.uuid4().hex[:8]
    servers = broker.bootstrap_servers
    alone = write_config(tmp_path, servers, tag, f"alone-{tag}")
    pair = write_config(tmp_path, servers, tag, f"pair-{tag}")
    settings = load_settings(alone)
    connection = Connection(servers, settings.kafka)
    topics = settings.topics
    asyncio.run(ensure_topics(connection, [*topics.inputs, topics.dead_letter], 2))
    produced = asyncio.run(produce_file(history, connection, topics, batch=batch))
    return Groups(tag, connection, alone, pair, produced)


def assert_pair_matches(alone_port: int, pair_ports: list[int], lines: int) -> None:
    """The pair's exports, summed, are the lone worker's; each event was applied once."""
    want = settled(alone_port)
    got = settled_sum(pair_ports)
    expected = state_metrics(want)
    assert len(expected) > 300
    wrong = {
        k: (v, expected.get(k))
        for k, v in got.items()
        if v != pytest.approx(expected.get(k), rel=1e-9)
    }
    families = sorted({name for name, _ in wrong})
    assert dict(sorted(wrong.items())[:12]) == {}, f"{len(wrong)} series differ: {families}"
    assert set(got) == set(expected)
    # Counters are per worker: their sum over the pair is the lone worker's count.
    pair_texts = [scrape(port) for port in pair_ports]
    assert sum(applied(t) for t in pair_texts) == applied(want) == lines


def test_one_worker_and_two_workers_agree(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """Two `revmon run` processes on one group export what one does, summed over instances."""
    history = tmp_path / "history.jsonl"
    simulate_args = ["simulate", "--days", "150", "--seed", "4", "--out", str(history)]
    subprocess.run(
        [sys.executable, "-m", "revmon", *simulate_args], check=True, capture_output=True
    )
    run = groups(broker, tmp_path, history, batch=20)

    alone_port, first_port, second_port = free_port(), free_port(), free_port()
    start(run.alone, alone_port, processes)
    start(run.pair, first_port, processes)
    start(run.pair, second_port, processes)
    run.wait_caught_up()

    assert_pair_matches(alone_port, [first_port, second_port], run.produced.lines)


def wait_applying(port: int, what: str, limit: float = 60) -> None:
    """Poll until the worker on `port` has applied some input."""
    deadline = time.monotonic() + limit
    while applied(scrape(port)) == 0:
        assert time.monotonic() < deadline, f"{what} never started applying"
        time.sleep(0.2)


def test_a_worker_joining_mid_stream_takes_over_with_nothing_lost_or_counted_twice(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """A second worker joins while the first is busy: partitions move mid-stream (revoked
    from a worker between two batches, records in flight dropped by Faust), and the pair
    still applies every event exactly once and exports what a lone worker does."""
    history = tmp_path / "history.jsonl"
    # Busy enough (~270k events) that the first worker still has a backlog when the second
    # one has joined, a few seconds after.
    config = SimulationConfig.from_settings(load_settings(), days=200, seed=5, leads_per_day=300)
    write_jsonl(simulate(config), history)
    run = groups(broker, tmp_path, history, batch=5)

    alone_port, first_port, second_port = free_port(), free_port(), free_port()
    start(run.alone, alone_port, processes)
    start(run.pair, first_port, processes)
    wait_applying(first_port, "the first worker")
    start(run.pair, second_port, processes)
    wait_applying(second_port, "the second worker")
    assert applied(scrape(first_port)) < run.produced.lines  # it did join mid-stream
    run.wait_caught_up()

    assert_pair_matches(alone_port, [first_port, second_port], run.produced.lines)

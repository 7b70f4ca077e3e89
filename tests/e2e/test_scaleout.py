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

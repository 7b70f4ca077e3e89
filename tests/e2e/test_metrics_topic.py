"""The metrics topic, materialized by a consumer, is `/metrics`: one worker, two, takeover."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from revmon.broker import EmbeddedBroker, free_port
from revmon.compacted import read_table
from revmon.exposition import family_of
from revmon.families import state_families
from revmon.produce import produce_file
from revmon.publish import series_key
from revmon.schemas import MetricMessage
from revmon.settings import load_settings
from tests.e2e.test_scaleout import Groups, groups
from tests.e2e.workers import Series, applied, scrape, start, wait_caught_up

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "examples" / "metrics_consumer.py"
PUBLISHED = {f.name for f in state_families()} | {"revmon_watermark_seconds"}


def published_series(text: str | None) -> dict[Series, float]:
    """The §3.1–§3.8 series and the watermark of an exposition (what the topic carries)."""
    if text is None:
        return {}
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if family_of(sample.name) in PUBLISHED  # the parser splits `_gcount` off its family
    }


def materialize(run: Groups, topic: str) -> dict[Series, float]:
    """A consumer's view: read from the beginning, keep the last value per key."""
    table = asyncio.run(read_table(run.connection, topic))
    out: dict[Series, float] = {}
    for key, raw in table.items():
        message = MetricMessage.model_validate_json(raw)
        assert message.schema_version == 1
        labels = tuple(sorted(message.labels.items()))
        assert key.decode() == series_key(message.name, labels)
        if message.value is not None:  # deleted, its tombstone follows
            out[(message.name, labels)] = message.value
    return out


def with_publish_interval(config: Path, interval: str = "1s") -> Path:
    """The config, publishing every `interval`."""
    data = yaml.safe_load(config.read_text())
    data["publish_interval"] = interval
    config.write_text(yaml.safe_dump(data))
    return config


def topic_matches_metrics(run: Groups, topic: str, ports: list[int], limit: float = 90) -> int:
    """Poll until the topic, materialized, equals the workers' exports (which must have
    settled); returns the number of series."""
    deadline = time.monotonic() + limit
    want: dict[Series, float] = {}
    got: dict[Series, float] = {}
    while time.monotonic() < deadline:
        before = {}
        for port in ports:
            before.update(published_series(scrape(port)))
        got = materialize(run, topic)
        want = {}
        for port in ports:
            want.update(published_series(scrape(port)))
        if len(want) > 300 and want == before and got == want:
            return len(want)
        time.sleep(1.0)
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    wrong = sorted((k, got[k], v) for k, v in want.items() if k in got and got[k] != v)[:5]
    raise AssertionError(f"topic != /metrics: missing {missing}, extra {extra}, wrong {wrong}")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated 90-day history."""
    path = tmp_path_factory.mktemp("metrics-topic") / "history.jsonl"
    subprocess.run(
        [sys.executable, "-m", "revmon", "simulate", "--days", "90", "--seed", "3", "--out", path],
        check=True,
        capture_output=True,
    )
    return path


def _owner(ports: list[int]) -> int:
    """The port of the worker exporting the revenue metrics."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for port in ports:
            if "revmon_funnel_open{" in (scrape(port) or ""):
                return port
        time.sleep(0.5)
    raise AssertionError("no worker exports the revenue metrics")


def test_one_worker_the_topic_materializes_to_its_metrics(
    broker: EmbeddedBroker,
    history: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """One worker: last value per key on the topic == its §3.1–§3.8 series and watermark."""
    run = groups(broker, tmp_path, history, batch=20)
    config = with_publish_interval(run.alone)
    port = free_port()
    start(config, port, processes)
    wait_caught_up(run.connection, f"alone-{run.tag}", run.produced.last_offsets)
    topic_matches_metrics(run, f"k{run.tag}.metrics", [port])

    # The example consumer another team copies prints the values it materialized.
    example = subprocess.run(
        [
            sys.executable,
            str(EXAMPLE),
            *("--bootstrap", broker.bootstrap_servers, "--topic", f"k{run.tag}.metrics"),
            *("--exit-after", "8"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    metrics = published_series(scrape(port))
    er = metrics[("revmon_er_ratio", (("window", "90d"),))]
    pace = metrics[("revmon_pipeline_creation_pace_ratio", (("kind", "new_business"),))]
    assert f"E:R ratio window=90d: {er:.3f}" in example.stdout
    assert f"creation pace kind=new_business: {pace:.3f}" in example.stdout


def test_two_workers_then_the_owner_killed_the_topic_follows_the_owner(
    broker: EmbeddedBroker,
    history: Path,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
) -> None:
    """Two workers, then the owner SIGKILLed: the topic always materializes to the exports."""
    lines = history.read_text().splitlines(keepends=True)
    before, after = tmp_path / "before.jsonl", tmp_path / "after.jsonl"
    before.write_text("".join(lines[: len(lines) * 3 // 4]))
    after.write_text("".join(lines[len(lines) * 3 // 4 :]))
    run = groups(broker, tmp_path, before, batch=20)
    config = with_publish_interval(run.pair)
    ports = [free_port(), free_port()]
    workers = {port: start(config, port, processes) for port in ports}
    topic = f"k{run.tag}.metrics"
    wait_caught_up(run.connection, f"pair-{run.tag}", run.produced.last_offsets)
    assert topic_matches_metrics(run, topic, ports, limit=180) > 300

    owner = _owner(ports)
    os.killpg(workers[owner].pid, signal.SIGKILL)
    workers[owner].wait(timeout=10)
    survivor = next(port for port in ports if port != owner)
    topics = load_settings(config).topics
    rest = asyncio.run(produce_file(after, run.connection, topics, batch=20))
    wait_caught_up(run.connection, f"pair-{run.tag}", rest.last_offsets, limit=180)
    _owner([survivor])
    series = topic_matches_metrics(run, topic, [survivor], limit=180)
    # The new owner sent every series once, changed or not.
    deadline = time.monotonic() + 30
    while applied(scrape(survivor), "revmon_metric_messages") < series:
        assert time.monotonic() < deadline, "the new owner did not send every series"
        time.sleep(0.5)

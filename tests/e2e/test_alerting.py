"""Alerts end to end: `revmon run` pushing to the real Alertmanager, the real Prometheus
evaluating the generated rules, a killed owner, and a replay's `--alerts-out`."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, TopicPartition

from revmon.broker import Connection, EmbeddedBroker, ensure_topics, free_port
from revmon.endoffsets import true_end_offsets
from revmon.produce import produce_file
from revmon.schemas import AlertMessage
from revmon.settings import load_settings
from tests.e2e.workers import committed, gauge, scrape, start, write_config
from tests.support import pipe, tour
from tests.support.servers import Alertmanager, Prometheus, Webhook, wait_for

pytestmark = pytest.mark.e2e

THINNING = {
    "name": "NewBusinessPipelineThinning",
    "metric": "revmon_pipeline_creation_pace_ratio",
    "labels": {"kind": "new_business"},
    "op": "<",
    "threshold": 0.6,
    "severity": "critical",
    "summary": "New-business pipeline created in 30d is {{ value }} of the 90d pace",
}


def configure(path: Path, **extra: Any) -> Path:
    """Add keys to a worker config written by `write_config`."""
    config = yaml.safe_load(path.read_text())
    config.update(extra)
    path.write_text(yaml.safe_dump(config))
    return path


def produce(servers: str, config: Path, path: Path) -> dict[tuple[str, int], int]:
    """Send a JSON-lines file to the config's input topics; the last acked offsets."""
    settings = load_settings(config)
    connection = Connection(servers, settings.kafka)

    async def go() -> dict[tuple[str, int], int]:
        # With the config's partition count: the broker would create them with its own.
        await ensure_topics(connection, settings.topics.inputs, settings.partitions)
        return (await produce_file(path, connection, settings.topics)).last_offsets

    return asyncio.run(go())


def firing(port: int, alertname: str) -> float | None:
    """`revmon_alerts_firing` of one rule on the worker at `port`."""
    return gauge(scrape(port), "revmon_alerts_firing", alertname=alertname)


def notifications(port: int, result: str) -> float:
    """`revmon_alert_notifications_total` to Alertmanager with that result."""
    found = gauge(
        scrape(port), "revmon_alert_notifications_total", receiver="alertmanager", result=result
    )
    return found or 0.0


def watermark_day(port: int) -> float:
    """The worker's evaluation instant as a day of the history (-1 before any)."""
    value = gauge(scrape(port), "revmon_watermark_seconds")
    return -1 if value is None else (value - pipe.START.timestamp()) / 86400


def topic_messages(servers: str, topic: str) -> list[dict[str, Any]]:
    """Every message on a topic, to its true end, in order per partition."""

    async def go() -> list[dict[str, Any]]:
        options = Connection(servers, load_settings(None).kafka).aiokafka_options()
        consumer = AIOKafkaConsumer(**options, group_id=None, enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await consumer.topics()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(partitions)]
            ends = await true_end_offsets(options, tps)
            tps = [tp for tp in tps if ends[tp] > 0]
            out: list[dict[str, Any]] = []
            if not tps:
                return out
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            pending = set(tps)
            while pending:
                for records in (await consumer.getmany(timeout_ms=200)).values():
                    out.extend(orjson.loads(r.value) for r in records if r.value)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            return out
        finally:
            await consumer.stop()

    return asyncio.run(go())


def wait_committed(connection: Connection, group: str, last: dict[tuple[str, int], int]) -> None:
    """Poll until the group has committed every acknowledged input offset."""
    wait_for(
        lambda: all(
            done > last[tp]
            for tp, done in asyncio.run(committed(connection, group, list(last))).items()
        ),
        90,
        "the worker committed its input",
        poll=0.5,
    )


def replay_alerts(history: Path, config: Path, *options: str) -> list[dict[str, Any]]:
    """`revmon replay --alerts-out` as a user runs it: the messages it wrote, validated."""
    alerts_out = history.with_suffix(".alerts.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "revmon", "replay", str(history), "--config", str(config),
         "--metrics-out", str(history.with_suffix(".prom")), "--alerts-out", str(alerts_out),
         *options],
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    messages = [orjson.loads(line) for line in alerts_out.read_bytes().splitlines()]
    for message in messages:
        AlertMessage.model_validate(message)
    return messages


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    """The receiver Alertmanager routes to."""
    hook = Webhook()
    yield hook
    hook.close()


def test_alertmanager_and_prometheus_both_fire_and_resolve_and_survive_an_outage(
    broker: EmbeddedBroker,
    tmp_path: Path,
    processes: list[subprocess.Popen[bytes]],
    webhook: Webhook,
) -> None:
    """The thinning pipe pages through revmon→Alertmanager and through Prometheus' rules;
    an Alertmanager outage neither stalls revmon nor loses the alert."""
    alertmanager = Alertmanager(tmp_path, webhook)
    alertmanager.start()
    tag = uuid.uuid4().hex[:8]
    servers = broker.bootstrap_servers
    config = configure(
        write_config(tmp_path, servers, tag, f"am-{tag}"),
        partitions=1,  # every event in file order: no partition runs ahead of another
        alertmanager_url=alertmanager.url,
        alerts_interval="1s",
        alerts_resend="2s",
        alerts=[THINNING],
    )
    rules = tmp_path / "rules.yml"
    rules.write_bytes(
        subprocess.run(
            [sys.executable, "-m", "revmon", "rules", "--config", str(config)],
            check=True,
            capture_output=True,
        ).stdout
    )
    port = free_port()
    worker = start(config, port, processes, log=tmp_path / "revmon.log")
    prometheus = Prometheus(tmp_path, [f"127.0.0.1:{port}"], [rules])
    name = THINNING["name"]
    try:
        # Steady for 100 days, then 21 days without new business: the pace ratio falls to 0.5.
        produce(servers, config, pipe.write(tmp_path / "a.jsonl", itertools.chain(
            pipe.steady(0, 99), pipe.quiet(100, 120)
        )))  # fmt: skip
        fired = wait_for(lambda: webhook.alerts(name, "firing"), 90, "Alertmanager got the page")
        assert fired[0]["labels"] == {
            "alertname": name,
            "kind": "new_business",
            "severity": "critical",
        }
        assert "of the 90d pace" in fired[0]["annotations"]["summary"]
        wait_for(lambda: prometheus.firing(name), 60, "Prometheus' rule fires")

        # Three a day for 20 days: the pipe recovers; both paths resolve.
        produce(servers, config, pipe.write(tmp_path / "b.jsonl", pipe.steady(121, 140, 3, "r")))
        wait_for(lambda: webhook.alerts(name, "resolved"), 60, "Alertmanager got the resolution")
        wait_for(lambda: not prometheus.firing(name), 60, "Prometheus' alert resolves")

        # Alertmanager down; the pipe thins again: revmon keeps processing and keeps the alert.
        alertmanager.stop()
        before = len(webhook.alerts(name, "firing"))
        produce(servers, config, pipe.write(tmp_path / "c.jsonl", pipe.quiet(141, 175, "c")))
        wait_for(lambda: firing(port, name) == 1, 60, "revmon fires while Alertmanager is down")
        wait_for(lambda: notifications(port, "failed") > 0, 30, "the failed sends are counted")
        produce(servers, config, pipe.write(tmp_path / "d.jsonl", pipe.quiet(176, 180, "d")))
        wait_for(lambda: watermark_day(port) >= 180, 60, "processing goes on meanwhile")
        assert worker.poll() is None

        # Alertmanager back: the firing alert reaches the receiver.
        alertmanager.start()
        wait_for(
            lambda: len(webhook.alerts(name, "firing")) > before, 60, "the alert arrives after all"
        )
        assert worker.poll() is None
        assert notifications(port, "sent") > 0
    finally:
        prometheus.stop()
        alertmanager.stop()


def test_a_killed_owner_neither_fires_again_nor_loses_an_alert_and_for_keeps_counting(
    broker: EmbeddedBroker, tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGKILL while an alert fires and another is pending: the restarted worker keeps the
    firing one without a second message, and the pending one fires on its original clock."""
    tag = uuid.uuid4().hex[:8]
    servers = broker.bootstrap_servers
    long_rule = {**THINNING, "name": "ThinningForThreeDays", "for": "3d"}
    config = configure(
        write_config(tmp_path, servers, tag, f"kill-{tag}", "rocksdb"),
        partitions=1,  # every event in file order: no partition runs ahead of another
        alerts_interval="1s",
        alerts=[THINNING, long_rule],
    )
    settings = load_settings(config)
    connection = Connection(servers, settings.kafka)
    port = free_port()
    victim = start(config, port, processes)

    # The pace first falls below 0.6 on day 115: the page fires, the 3-day rule is pending.
    produce(servers, config, pipe.write(tmp_path / "a.jsonl", itertools.chain(
        pipe.steady(0, 99), pipe.quiet(100, 115)
    )))  # fmt: skip
    wait_for(lambda: firing(port, THINNING["name"]) == 1, 90, "the page fires")
    # Two more days (day 117), committed, then the kill.
    last = produce(servers, config, pipe.write(tmp_path / "b.jsonl", pipe.quiet(116, 117, "b")))
    wait_committed(connection, f"kill-{tag}", last)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=10)

    restarted = free_port()
    start(config, restarted, processes)
    wait_for(lambda: firing(restarted, THINNING["name"]) == 1, 90, "the firing alert is kept")
    # Day 118 = day 115 + 3 days: the pending rule fires now only if its pending time
    # survived (a restarted clock would have started it on day 117, and fire on day 120).
    produce(servers, config, pipe.write(tmp_path / "c.jsonl", pipe.quiet(118, 118, "c")))
    wait_for(lambda: firing(restarted, "ThinningForThreeDays") == 1, 60, "for kept counting")

    messages = topic_messages(servers, settings.topics.alerts)
    for message in messages:
        AlertMessage.model_validate(message)
    page = [(m["alertname"], m["status"]) for m in messages if m["alertname"] == THINNING["name"]]
    assert page == [(THINNING["name"], "firing")]
    long = [m for m in messages if m["alertname"] == "ThinningForThreeDays"]
    assert [m["status"] for m in long] == ["firing"]
    assert long[0]["starts_at"] == pipe.day(118).isoformat().replace("+00:00", "Z")


def test_replay_alerts_out_fires_and_resolves_once_and_the_clear_band_holds(
    tmp_path: Path,
) -> None:
    """A replay of a pipe that thins, flaps and recovers: the rule with `clear` fires and
    resolves once; the same rule without it fires twice."""
    # Pace by day: 0.57 on day 115 (pending), 0.5 on 117; six created on day 118 lift it to
    # 0.66 (inside the band 0.6-0.8), it sinks to 0.57 on day 121, then three a day lift
    # it past 0.8 for good.
    history = pipe.write(
        tmp_path / "history.jsonl",
        itertools.chain(
            pipe.steady(0, 99),
            pipe.quiet(100, 117, "g"),
            pipe.steady(118, 118, 6, "k"),
            pipe.quiet(119, 122, "h"),
            pipe.steady(123, 140, 3, "r"),
        ),
    )
    config = tmp_path / "config.yaml"
    band = {**THINNING, "name": "ThinningWithBand", "clear": 0.8, "for": "1d"}
    config.write_text(yaml.safe_dump({"alerts": [{**THINNING, "for": "1d"}, band]}))
    messages = replay_alerts(history, config, "--batch", "1")
    band_trace = [m["status"] for m in messages if m["alertname"] == "ThinningWithBand"]
    assert band_trace == ["firing", "resolved"]
    fired, resolved = [m for m in messages if m["alertname"] == "ThinningWithBand"]
    assert fired["starts_at"] == resolved["starts_at"]
    assert resolved["value"] > 0.8
    # Without a band the same flapping pages twice.
    plain = [m["status"] for m in messages if m["alertname"] == THINNING["name"]]
    assert plain == ["firing", "resolved", "firing", "resolved"]


def test_a_replay_crossing_every_shipped_threshold_fires_each_alert_once_and_resolves_it(
    tmp_path: Path,
) -> None:
    """The shipped rules on a history built to cross each of them (tests/support/tour.py):
    exactly these pages, on these days, each resolved when its number recovers."""
    history = pipe.write(tmp_path / "tour.jsonl", tour.events())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"targets": tour.TARGETS}))
    messages = replay_alerts(history, config)
    trace = [
        (m["alertname"], m["labels"].get("stage", ""), m["status"], m["as_of"][:10])
        for m in messages
    ]
    assert trace == [
        ("KeyAccountsUndercovered", "", "firing", "2026-02-02"),
        ("KeyAccountsUndercovered", "", "resolved", "2026-02-20"),
        ("LeadConversionDrop", "mql", "firing", "2026-03-28"),
        ("LeadConversionDrop", "mql", "resolved", "2026-04-17"),
        ("ExpenseToRevenueHigh", "", "firing", "2026-04-21"),
        ("NewBusinessPipelineThinning", "", "firing", "2026-04-27"),
        ("CustomerChurnHigh", "", "firing", "2026-05-03"),
        ("NewBusinessPipelineThinning", "", "resolved", "2026-05-11"),
        ("PipelineCoverageLow", "", "firing", "2026-07-02"),
        ("PipelineCoverageLow", "", "resolved", "2026-07-05"),
        ("StaleOpportunities", "qualification", "firing", "2026-07-26"),
        ("StaleOpportunities", "qualification", "resolved", "2026-08-01"),
        ("CustomerChurnHigh", "", "resolved", "2026-08-01"),
        ("ExpenseToRevenueHigh", "", "resolved", "2026-08-02"),
    ]
    # The E:R alert resolved only past its clear value, not at the threshold.
    resolved_er = [m for m in messages if m["alertname"] == "ExpenseToRevenueHigh"][-1]
    assert resolved_er["value"] < 0.55

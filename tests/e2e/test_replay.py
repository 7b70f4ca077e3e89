"""`revmon replay`: a simulated history with duplicates and bad input, counted exactly."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from revmon import __version__
from revmon.broker import EmbeddedBroker
from tests.e2e.running import Result, clean_env, revmon, sample, samples

pytestmark = pytest.mark.e2e

# SPEC §1, written out here so the test does not trust revmon's own lists.
EVENT_TYPES = (
    "lead.created",
    "lead.stage_changed",
    "opportunity.created",
    "opportunity.stage_changed",
    "opportunity.amount_changed",
    "activity.logged",
    "campaign.spend",
    "expense.recorded",
    "invoice.paid",
    "refund.issued",
    "subscription.started",
    "subscription.changed",
    "subscription.canceled",
)
REASONS = (
    "malformed_json",
    "not_an_event",
    "unknown_type",
    "invalid_field",
    "currency_mismatch",
    "too_large",
)
DAY = 86400.0
# Duplicates are only promised within `dedupe_horizon` (30 d) of the newest event applied,
# and which event is newest when a duplicate arrives depends on how the worker interleaves
# topics. Copying only events within 28 d of the newest in the file keeps every copy
# recognisable whatever the interleaving.
COPY_WITHIN = 28 * DAY
MIB = 1024 * 1024


def unix(timestamp: str) -> float:
    """Unix seconds of an RFC 3339 timestamp with an offset."""
    parsed = datetime.fromisoformat(timestamp)
    assert parsed.tzinfo is not None, timestamp
    return parsed.timestamp()


def dumps(value: Any) -> bytes:
    """Compact JSON bytes, as a producer would write a line."""
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Crafted:
    """A replay input file and the counters a correct replay of it must end with."""

    path: Path
    lines: int
    valid: Counter[str]
    rejected: Counter[str]
    duplicates: int
    watermark: float
    dead_letters: list[tuple[str, bytes]]  # (reason, the exact bytes dead-lettered)


def craft(
    simulated: list[bytes], path: Path, *, duplicates: int, seed: int, huge: bool = False
) -> Crafted:
    """Write `simulated` plus duplicates, blank lines and bad lines to `path`; expect counts.

    Every simulated line must be a valid event with a unique `event_id` (checked here).
    """
    rng = random.Random(seed)
    events = [json.loads(line) for line in simulated]
    assert len({e["event_id"] for e in events}) == len(events), "simulated ids are unique"
    assert {e["type"] for e in events} <= set(EVENT_TYPES), "the history has only known types"
    times = [unix(e["occurred_at"]) for e in events]
    valid: Counter[str] = Counter(e["type"] for e in events)
    rejected: Counter[str] = Counter()
    after: dict[int, list[bytes]] = {}  # lines to insert after simulated line i

    def insert(index: int, line: bytes) -> None:
        after.setdefault(index, []).append(line)

    newest = max(times)
    # Two valid events at the very end of time, given with a non-UTC offset, in a batch
    # line with one bad element between them.
    last = datetime.fromtimestamp(newest + 5400, timezone(timedelta(hours=5, minutes=30)))
    batch_line = [
        {
            "event_id": "extra-1",
            "type": "lead.created",
            "occurred_at": last.isoformat(),
            "lead_id": "extra-lead",
            "channel": "tv",
        },
        {
            "event_id": "extra-2",
            "type": "invoice.paid",
            "occurred_at": last.isoformat(),
            "amount": "-1.00",  # negative: invalid_field
            "account_id": "extra-account",
        },
        {
            "event_id": "extra-3",
            "type": "expense.recorded",
            "occurred_at": (last - timedelta(days=3)).isoformat(),
            "category": "tools",
            "amount": 12.5,
        },
    ]
    insert(rng.randrange(len(simulated)), dumps(batch_line))
    valid.update(["lead.created", "expense.recorded"])
    rejected["invalid_field"] += 1
    dead_letters = [("invalid_field", dumps(batch_line[1]))]
    newest += 5400

    # Duplicates: copies of distinct lines, some right behind their original (the same
    # batch when batching), some thousands of lines later.
    recent = [i for i, at in enumerate(times) if at >= newest - COPY_WITHIN]
    assert len(recent) > 4 * duplicates
    chosen = rng.sample(recent[: len(recent) // 2], duplicates)
    for n, original in enumerate(chosen):
        if n % 2 == 0:
            position = min(original + rng.randint(0, 20), len(simulated) - 1)
        else:
            position = rng.randint(original + len(recent) // 3, len(simulated) - 1)
        insert(position, simulated[original])

    # Bad lines, each with the reason SPEC §1 gives it.
    on_time = events[len(events) // 2]["occurred_at"]
    bad: list[tuple[str, bytes]] = [
        ("malformed_json", b'{"event_id": "bad-1", "type": "lead.created", "lead_id": "l'),
        ("malformed_json", b"this is not json"),
        ("not_an_event", b"[]"),
        ("not_an_event", b"42"),
        ("not_an_event", dumps({"event_id": "bad-5", "lead_id": "x", "occurred_at": on_time})),
        (
            "unknown_type",
            dumps(
                {
                    "event_id": "bad-6",
                    "type": "lead.deleted",
                    "occurred_at": on_time,
                    "lead_id": "x",
                }
            ),
        ),
        (
            "invalid_field",  # naive timestamp
            dumps(
                {
                    "event_id": "bad-7",
                    "type": "lead.created",
                    "occurred_at": "2025-01-20T10:00:00",
                    "lead_id": "bad-lead-7",
                }
            ),
        ),
        (
            "invalid_field",  # negative amount
            dumps(
                {
                    "event_id": "bad-8",
                    "type": "campaign.spend",
                    "occurred_at": on_time,
                    "campaign_id": "bad-campaign",
                    "amount": -5,
                }
            ),
        ),
        (
            "invalid_field",  # a stage the lead funnel does not have
            dumps(
                {
                    "event_id": "bad-9",
                    "type": "lead.stage_changed",
                    "occurred_at": on_time,
                    "lead_id": "bad-lead-9",
                    "stage": "unicorn",
                }
            ),
        ),
        (
            "currency_mismatch",
            dumps(
                {
                    "event_id": "bad-10",
                    "type": "invoice.paid",
                    "occurred_at": on_time,
                    "account_id": "bad-account",
                    "amount": "100.00",
                    "currency": "EUR",
                }
            ),
        ),
    ]
    if huge:
        big = {
            "event_id": "bad-11",
            "type": "lead.created",
            "occurred_at": on_time,
            "lead_id": "bad-lead-11",
            "notes": "x" * (MIB + 1000),
        }
        bad.append(("too_large", dumps(big)))
    for reason, line in bad:
        insert(rng.randrange(len(simulated)), line)
        rejected[reason] += 1
        dead_letters.append((reason, line))
    for _ in range(6):
        insert(rng.randrange(len(simulated)), rng.choice([b"", b"   ", b"\t"]))

    with path.open("wb") as out:
        for line in after.get(-1, []):
            out.write(line + b"\n")
        for i, line in enumerate(simulated):
            out.write(line + b"\n")
            for extra in after.get(i, []):
                out.write(extra + b"\n")
    nonblank = sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
    return Crafted(path, nonblank, valid, rejected, duplicates, newest, dead_letters)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The lines of `revmon simulate --days 60 --seed 3`."""
    out = tmp_path_factory.mktemp("history") / "history.jsonl"
    result = revmon(
        "simulate", "--days", "60", "--seed", "3", "--out", str(out), cwd=out.parent, timeout=60
    )
    assert result.code == 0, result.stderr
    lines = [line for line in out.read_bytes().splitlines() if line.strip()]
    assert str(len(lines)) in result.stderr
    return lines


def counters(exposition: str) -> dict[str, float]:
    """The operational series of an exposition, by sample name and labels (lag excluded)."""
    return {
        name + "".join(f"{k}={v}" for k, v in sorted(labels)): value
        for (name, labels), value in samples(exposition).items()
        if name.startswith("revmon_events") or name == "revmon_watermark_seconds"
    }


def assert_counts(exposition: str, crafted: Crafted) -> None:
    """The exposition holds exactly the counts `crafted` expects."""
    for event_type in EVENT_TYPES:
        got = sample(exposition, "revmon_events_total", type=event_type)
        assert got == crafted.valid[event_type], event_type
    for reason in REASONS:
        got = sample(exposition, "revmon_events_rejected_total", reason=reason)
        assert got == crafted.rejected[reason], reason
    assert sample(exposition, "revmon_events_duplicate_total") == crafted.duplicates
    assert sample(exposition, "revmon_events_late_total") == 0
    assert sample(exposition, "revmon_watermark_seconds") == crafted.watermark


def replay(
    path: Path, *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> Result:
    """`revmon replay PATH ARGS...` with a bounded run time."""
    return revmon("replay", str(path), *args, env=env, cwd=path.parent, timeout=timeout)


def test_replay_counts_every_event_duplicate_and_rejection_exactly(
    history: list[bytes], tmp_path: Path
) -> None:
    """60 simulated days plus 25 duplicates and every kind of bad line replay to exact counters."""
    crafted = craft(history, tmp_path / "input.jsonl", duplicates=25, seed=11)
    metrics_out, alerts_out = tmp_path / "final.prom", tmp_path / "alerts.jsonl"

    result = replay(
        crafted.path, "--metrics-out", str(metrics_out), "--alerts-out", str(alerts_out)
    )

    assert result.code == 0, result.stderr[-3000:]
    assert result.seconds < 60
    assert "Traceback" not in result.stderr
    assert f"replayed {crafted.lines} lines" in result.stderr
    assert_counts(metrics_out.read_text(), crafted)
    assert sample(metrics_out.read_text(), "revmon_build_info", version=__version__) == 1
    for line in alerts_out.read_text().splitlines():
        assert isinstance(json.loads(line), dict)


def test_batch_of_one_and_default_batching_count_the_same(
    history: list[bytes], tmp_path: Path
) -> None:
    """`--batch 1` and the default batching end with identical, exact counters."""
    crafted = craft(history[:2500], tmp_path / "input.jsonl", duplicates=10, seed=5)
    metrics_out = tmp_path / "final.prom"

    with ThreadPoolExecutor(max_workers=2) as pool:
        one = pool.submit(replay, crafted.path, "--batch", "1")
        default = pool.submit(replay, crafted.path, "--metrics-out", str(metrics_out))
        by_one, by_default = one.result(), default.result()

    assert by_one.code == 0, by_one.stderr[-3000:]
    assert by_default.code == 0, by_default.stderr[-3000:]
    assert by_default.stdout == ""  # the exposition went to the file
    assert counters(by_one.stdout) == counters(metrics_out.read_text())
    assert_counts(by_one.stdout, crafted)


async def read_topic(servers: str, topic: str, partitions: int, expect: int) -> list[Any]:
    """The records of `topic` from the start, once `expect` arrived or 20 s passed."""
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(records) < expect and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            records.extend(r for rs in batch.values() for r in rs)
        return records
    finally:
        await consumer.stop()


def test_replay_on_an_external_broker_dead_letters_every_rejection_unchanged(
    broker: EmbeddedBroker, history: list[bytes], tmp_path: Path
) -> None:
    """Replay on a given broker writes each rejected line or element unchanged, with headers."""
    crafted = craft(history[:400], tmp_path / "input.jsonl", duplicates=3, seed=7)
    tag = uuid.uuid4().hex[:10]
    names = ("crm", "marketing", "billing", "dead_letter", "metrics", "alerts")
    topics = {name: f"e2e-{tag}.{name}" for name in names}
    env = clean_env(
        REVMON_BROKER=f"kafka://{broker.bootstrap_servers}",
        REVMON_PARTITIONS="2",
        **{f"REVMON_TOPICS__{name.upper()}": topic for name, topic in topics.items()},
    )

    result = replay(crafted.path, env=env)

    assert result.code == 0, result.stderr[-3000:]
    assert_counts(result.stdout, crafted)
    records = asyncio.run(
        read_topic(broker.bootstrap_servers, topics["dead_letter"], 2, len(crafted.dead_letters))
    )
    got = []
    for record in records:
        headers = {name: value.decode() for name, value in record.headers}
        assert headers["revmon-source-topic"] in (
            topics["crm"],
            topics["marketing"],
            topics["billing"],
        )
        assert headers["revmon-source-partition"] in ("0", "1")
        assert headers["revmon-source-offset"].isdigit()
        got.append((headers["revmon-reason"], record.value))
    assert sorted(got) == sorted(crafted.dead_letters)


def adjacent_copies(lines: Iterable[bytes], every: int, first: int, stop: int) -> list[bytes]:
    """`lines` with each CRM line at index first, first+every, ... below stop repeated at once."""
    out: list[bytes] = []
    for i, line in enumerate(lines):
        out.append(line)
        crm = json.loads(line)["type"].split(".")[0] in ("lead", "opportunity", "activity")
        if first <= i < stop and (i - first) % every == 0 and crm:
            out.append(line)
    return out


def test_an_immediate_repeat_is_a_duplicate_anywhere_in_the_history(
    history: list[bytes], tmp_path: Path
) -> None:
    """A CRM line repeated on the next line is a duplicate, even early in a 60-day history."""
    lines = adjacent_copies(history, every=100, first=2000, stop=5000)
    copies = len(lines) - len(history)
    path = tmp_path / "repeats.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")

    result = replay(path)

    assert result.code == 0, result.stderr[-3000:]
    assert sample(result.stdout, "revmon_events_duplicate_total") == copies


def test_a_line_over_one_mebibyte_is_rejected_and_the_replay_goes_on(
    history: list[bytes], tmp_path: Path
) -> None:
    """A line over 1 MiB is counted as too_large, dead-lettered, and the replay exits 0."""
    crafted = craft(history[:300], tmp_path / "input.jsonl", duplicates=2, seed=3, huge=True)

    result = replay(crafted.path, "--timeout", "10", timeout=20)

    assert result.code == 0, result.stderr[-3000:]
    assert_counts(result.stdout, crafted)

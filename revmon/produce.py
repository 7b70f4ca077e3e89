"""`revmon produce`: JSON-lines files to the input topics, keyed by entity, optionally batched."""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from revmon import shutdown
from revmon.broker import Connection
from revmon.errors import BrokerError, InputFileError
from revmon.events import MAX_MESSAGE_BYTES
from revmon.settings import Topics

log = structlog.get_logger(__name__)

_KEY_FIELDS = (
    "lead_id",
    "opportunity_id",
    "subscription_id",
    "account_id",
    "campaign_id",
    "category",
)
_TOPIC_BY_PREFIX = {
    "lead": "crm",
    "opportunity": "crm",
    "activity": "crm",
    "campaign": "marketing",
    "expense": "billing",
    "invoice": "billing",
    "refund": "billing",
    "subscription": "billing",
}
# Leave room under the daemon's 1 MiB limit for a batch's brackets and commas.
_BATCH_BYTES = MAX_MESSAGE_BYTES - 64 * 1024


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line of the file, with where it goes."""

    number: int
    raw: bytes
    topic: str
    key: bytes | None
    batchable: bool
    at: float | None = None  # occurred_at, unix seconds, when the line has a readable one


@dataclass
class ProduceReport:
    """What was sent: lines, messages, the last acknowledged offset of each partition, and
    (`replay` asks for it) the file's line numbers in each acknowledged message."""

    lines: int = 0
    messages: int = 0
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    line_numbers: dict[tuple[str, int, int], list[int]] | None = None
    #: With `edges`: the latest edge the file has gone past (every line sent so far is
    #: before it, the next one at or after it); None before the first edge.
    passed: float | None = None

    def line_of(self, topic: str, partition: int, offset: int, index: int | None) -> int | None:
        """The file's line number of a message (or of element `index` of a batch)."""
        numbers = (self.line_numbers or {}).get((topic, partition, offset))
        if not numbers:
            return None
        position = index or 0
        return numbers[position] if position < len(numbers) else None


def route(raw: bytes, topics: Topics) -> tuple[str, bytes | None, bool]:
    """(topic, key, batchable) of one line: by `type`, keyed by its entity (SPEC §7)."""
    topic, key, batchable, _ = _route(raw, topics)
    return topic, key, batchable


def _route(raw: bytes, topics: Topics) -> tuple[str, bytes | None, bool, float | None]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return topics.crm, None, False, None
    if not isinstance(data, dict):
        return topics.crm, None, False, None
    kind = data.get("type")
    prefix = kind.split(".", 1)[0] if isinstance(kind, str) else ""
    topic = getattr(topics, _TOPIC_BY_PREFIX.get(prefix, "crm"))
    at = _timestamp(data.get("occurred_at"))
    for name in _KEY_FIELDS:
        value = data.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return topic, str(value).encode(), True, at
    return topic, None, True, at


def _timestamp(value: object) -> float | None:
    """An occurred_at with an offset as unix seconds; None for anything else (the daemon
    judges the line; here it only decides where a replay slice ends)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


def check_readable(path: Path) -> None:
    """Fail early, before any broker starts, when `path` cannot be read.

    Raises:
        InputFileError: the file cannot be opened.
    """
    _open(path).close()


def _open(path: Path) -> BinaryIO:
    try:
        return path.open("rb")
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror}") from exc


def read_lines(path: Path, topics: Topics) -> Iterator[Line]:
    """The file's non-blank lines, routed.

    Raises:
        InputFileError: the file cannot be opened.
    """
    with _open(path) as handle:
        for number, raw_line in enumerate(handle, start=1):
            raw = raw_line.strip()
            if raw:
                topic, key, batchable, at = _route(raw, topics)
                yield Line(number, raw, topic, key, batchable, at)


class _Sender:
    """Groups lines per partition and sends them, keeping the last acked offset per partition."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        partitions: dict[str, list[int]],
        batch: int,
        *,
        line_numbers: bool = False,
        report: ProduceReport | None = None,
    ) -> None:
        self._producer = producer
        self._partitions = partitions
        self._partitioner = DefaultPartitioner()
        self._batch = batch
        self._groups: dict[tuple[str, int], tuple[bytes | None, list[Line], int]] = {}
        self._pending: list[asyncio.Future[Any]] = []
        self.report = report if report is not None else ProduceReport()
        if line_numbers and self.report.line_numbers is None:
            self.report.line_numbers = {}

    def partition_of(self, line: Line) -> int:
        partitions = self._partitions[line.topic]
        if line.key is None:
            return partitions[line.number % len(partitions)]
        return int(self._partitioner(line.key, partitions, partitions))

    async def add(self, line: Line) -> None:
        self.report.lines += 1
        tp = (line.topic, self.partition_of(line))
        if self._batch <= 1 or not line.batchable:
            await self._flush_group(tp)
            await self._send(tp, line.key, line.raw, [line.number])
            return
        key, items, size = self._groups.get(tp, (line.key, [], 0))
        if items and size + len(line.raw) + 1 > _BATCH_BYTES:
            await self._flush_group(tp)
            key, items, size = line.key, [], 0
        items.append(line)
        self._groups[tp] = (key, items, size + len(line.raw) + 1)
        if len(items) >= self._batch:
            await self._flush_group(tp)

    async def _flush_group(self, tp: tuple[str, int]) -> None:
        group = self._groups.pop(tp, None)
        if group is not None:
            key, items, _ = group
            value = b"[" + b",".join(item.raw for item in items) + b"]"
            await self._send(tp, key, value, [item.number for item in items])

    async def _send(
        self, tp: tuple[str, int], key: bytes | None, value: bytes, numbers: list[int]
    ) -> None:
        future = await self._producer.send(tp[0], value=value, key=key, partition=tp[1])
        future.add_done_callback(lambda f, tp=tp: self._acked(tp, f, numbers))
        self._pending.append(future)
        self.report.messages += 1
        if len(self._pending) >= 10_000:
            await self._drain()

    def _acked(self, tp: tuple[str, int], future: asyncio.Future[Any], numbers: list[int]) -> None:
        if not future.cancelled() and future.exception() is None:
            offset = future.result().offset
            if offset > self.report.last_offsets.get(tp, -1):
                self.report.last_offsets[tp] = offset
            if self.report.line_numbers is not None:
                self.report.line_numbers[(tp[0], tp[1], offset)] = numbers

    async def _drain(self) -> None:
        pending, self._pending = self._pending, []
        results = await asyncio.gather(*pending, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise BrokerError(f"{len(errors)} messages were not acknowledged: {errors[0]!r}")

    async def close(self) -> ProduceReport:
        """Send every group and wait until every message sent is acknowledged."""
        for tp in list(self._groups):
            await self._flush_group(tp)
        await self._drain()
        return self.report


#: Called at the end of each slice with everything acknowledged so far.
SliceDone = Callable[[ProduceReport], Awaitable[None]]


async def produce_file(
    path: Path,
    connection: Connection,
    topics: Topics,
    *,
    batch: int = 1,
    slice_seconds: float | None = None,
    on_slice: SliceDone | None = None,
    line_numbers: bool = False,
    report: ProduceReport | None = None,
    edges: Sequence[float] | None = None,
    admit: Callable[[float], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ProduceReport:
    """Send every non-blank line of `path`; returns once every message is acknowledged.

    With `slice_seconds`, the file is sent in slices of event time (a slice ends before
    the first line whose occurred_at lies that far past the slice's first one): after
    each, every message is acknowledged and `on_slice` is awaited (`replay` waits there
    until the worker has applied the slice, then evaluates the alert rules). With
    `line_numbers`, the report maps each message to the file's lines in it. `report` is
    the report to fill, for a caller that reads it while the file is being sent. With `edges`
    (sorted unix seconds) instead, slices end at those instants of event time: a line at
    or after an edge starts a new slice (`report` cuts at midnights and week ends).
    With `admit`, only lines whose occurred_at it admits are sent (`replay --until`);
    lines without a readable occurred_at are always sent (the daemon judges them).
    `progress` is called with 1 for every line sent (a progress bar's update).

    Raises:
        InputFileError: the file cannot be read.
        BrokerError: the broker refused or could not be reached.
    """
    shutdown.phase(f"sending {path} to {connection.bootstrap_servers}")
    producer = AIOKafkaProducer(
        **connection.aiokafka_options(),
        acks="all",
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=4 * MAX_MESSAGE_BYTES,
    )
    try:
        await producer.start()
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot connect to {connection.bootstrap_servers}: {exc}") from exc
    try:
        partitions = {t: sorted(await producer.partitions_for(t)) for t in topics.inputs}
        sender = _Sender(producer, partitions, batch, line_numbers=line_numbers, report=report)
        began: float | None = None
        passed = 0
        for line in read_lines(path, topics):
            if admit is not None and line.at is not None and not admit(line.at):
                continue
            if edges is not None and line.at is not None:
                crossed = bisect_right(edges, line.at)
                if crossed > passed:
                    if sender.report.lines and on_slice is not None:
                        sender.report.passed = edges[crossed - 1]
                        await on_slice(await sender.close())
                    passed = crossed
            elif slice_seconds is not None and line.at is not None:
                if began is None:
                    began = line.at
                elif line.at >= began + slice_seconds:
                    if on_slice is not None:
                        await on_slice(await sender.close())
                    began = line.at
            await sender.add(line)
            if progress is not None:
                progress(1)
        report = await sender.close()
    finally:
        await producer.stop()
    log.info("produced", lines=report.lines, messages=report.messages, file=str(path))
    return report

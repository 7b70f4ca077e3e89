"""Publishing the revenue metrics on the metrics topic (SPEC §6): change-only, one writer.

Two halves. The pure half (`series_key`, `encode`, `plan`) decides what to send: every
series whose value changed since it was last published, every series after a start or a
change of owner, and for a series that disappeared a `null` value then a tombstone. The
service half (`Publisher`) runs it every `publish_interval` on its own task, beside the
event processing, which never waits for it.

The one writer is the worker that exports the SPEC §3.1–§3.8 series (the owner of input
partition 0, SPEC §4). On becoming the writer it reads the topic as a table
(`revmon.compacted.read_table`): what the previous owner published is what the topic
holds, so the series it published that no longer exist get their `null` and tombstone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import structlog
from aiokafka import AIOKafkaProducer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from mode import Service

from revmon.broker import MAX_RECORD_BYTES, Connection
from revmon.compacted import read_table
from revmon.errors import BrokerError
from revmon.kpi.ledger import Evaluation

log = structlog.get_logger(__name__)

#: Version of the message value (the `"schema"` field, SPEC §6).
SCHEMA_VERSION = 1
WATERMARK = "revmon_watermark_seconds"

MetricType = Literal["gauge", "counter"]


@dataclass(frozen=True, slots=True)
class Series:
    """One series as the topic carries it."""

    name: str
    labels: tuple[tuple[str, str], ...]  # sorted by label name
    value: float | None
    type: MetricType = "gauge"

    @property
    def key(self) -> str:
        """The message key: the series as Prometheus writes it, labels sorted."""
        return series_key(self.name, self.labels)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_key(name: str, labels: Iterable[tuple[str, str]]) -> str:
    """`name{a="1",b="2"}` with labels sorted and escaped as in the text exposition.

    A series without labels is its bare name, as Prometheus writes it.
    """
    pairs = sorted(labels)
    if not pairs:
        return name
    return name + "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def rfc3339(timestamp: float) -> str:
    """Unix seconds as an RFC 3339 UTC timestamp (`2026-11-30T12:00:00.5Z`)."""
    text = datetime.fromtimestamp(timestamp, UTC).isoformat()
    return text.replace("+00:00", "Z")


def current_series(evaluation: Evaluation) -> dict[str, Series]:
    """Every series to publish at this evaluation, by key: the §3.1–§3.8 samples and the
    watermark (`now`)."""
    out: dict[str, Series] = {}
    for sample in evaluation.samples:
        series = Series(sample.name, tuple(sorted(sample.labels)), sample.value)
        out[series.key] = series
    watermark = Series(WATERMARK, (), evaluation.now)
    out[watermark.key] = watermark
    return out


def encode(series: Series, *, as_of: float, emitted_at: float) -> bytes:
    """The message value of `series` (SPEC §6)."""
    return orjson.dumps(
        {
            "name": series.name,
            "labels": dict(series.labels),
            "type": series.type,
            "value": series.value,
            "as_of": rfc3339(as_of),
            "emitted_at": rfc3339(emitted_at),
            "schema": SCHEMA_VERSION,
        }
    )


def decode(key: bytes, value: bytes) -> Series:
    """A published series from its message; one revmon cannot read keeps its key only."""
    try:
        data = orjson.loads(value)
        labels = tuple(sorted((str(k), str(v)) for k, v in data["labels"].items()))
        number = data["value"]
        return Series(str(data["name"]), labels, None if number is None else float(number))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return Series(key.decode(errors="replace"), (), None, "gauge")


@dataclass(frozen=True, slots=True)
class Plan:
    """What one publish round sends."""

    #: Series whose value to send (changed, new, or everything after a change of owner).
    send: list[Series] = field(default_factory=list)
    #: Series gone since they were published: a `null` value, then a tombstone.
    delete: list[Series] = field(default_factory=list)
    #: Keys whose `null` is on the topic already: the tombstone only.
    tombstone: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.send) + 2 * len(self.delete) + len(self.tombstone)


def plan(
    current: Mapping[str, Series], published: Mapping[str, Series], *, full: bool = False
) -> Plan:
    """What to send so that the topic holds `current`, given what it holds (`published`).

    Args:
        current: every series that exists now, by key.
        published: the last value on the topic of every key (a `null` value is a series
            deleted but not yet tombstoned).
        full: send every current series, changed or not (after a start or a change of owner).
    """
    send = [
        series
        for key, series in current.items()
        if full or key not in published or published[key].value != series.value
    ]
    gone = [key for key in published if key not in current]
    delete = [published[key] for key in gone if published[key].value is not None]
    tombstone = [key for key in gone if published[key].value is None]
    return Plan(send, delete, tombstone)


class Publisher(Service):  # type: ignore[misc]  # mode is untyped
    """Sends the metrics every `interval` seconds while this worker is the one writer.

    A mode service with its own producer (records of at most 1 MiB) and its own task:
    a slow or unreachable broker delays the next round, never the event processing. A
    record that fails is not marked published, so the next round sends it again.
    """

    def __init__(
        self,
        connection: Connection,
        topic: str,
        *,
        evaluate: Callable[[], Evaluation | None],
        interval: float,
        sent: Callable[[int], None],
        wall_clock: Callable[[], float],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._connection = connection
        self._topic = topic
        self._evaluate = evaluate
        self._interval = interval
        self._sent = sent
        self._wall = wall_clock
        #: What the topic holds, as far as this worker knows; None: read it first.
        self._published: dict[str, Series] | None = None
        self._epoch = 0
        self._producer: AIOKafkaProducer | None = None
        self._loop: asyncio.Task[None] | None = None

    def lost(self) -> None:
        """Ownership may have moved: read the topic again before the next round."""
        self._published = None
        self._epoch += 1

    async def on_start(self) -> None:
        """Connect, and start the publishing loop."""
        self._producer = AIOKafkaProducer(
            **self._connection.aiokafka_options(),
            linger_ms=20,
            acks="all",
            max_request_size=MAX_RECORD_BYTES,
        )
        await self._producer.start()
        self._loop = asyncio.create_task(self._run())

    async def on_stop(self) -> None:
        """Stop the loop; unsent changes are sent by the next owner (a full send)."""
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop
        if self._producer is not None:
            await self._producer.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.publish()
            except (BrokerError, KafkaError, OSError) as exc:
                log.warning("metrics_not_published", error=str(exc))
            except Exception:  # a bug must not end publishing for the life of the worker
                log.exception("metrics_publish_failed")
                self.lost()

    async def publish(self) -> int:
        """One round: send what changed; returns the number of records written."""
        evaluation = self._evaluate()
        if evaluation is None or self._producer is None:
            self.lost()  # not the writer (or not ready): whoever is may write meanwhile
            return 0
        epoch = self._epoch
        full = self._published is None
        if self._published is None:
            table = await read_table(self._connection, self._topic)
            if epoch != self._epoch:
                return 0
            self._published = {k.decode(): decode(k, v) for k, v in table.items()}
            log.info("metrics_topic_read", series=len(self._published))
            evaluation = self._evaluate()  # the read took a while
            if evaluation is None:
                return 0
        todo = plan(current_series(evaluation), self._published, full=full)
        if not todo:
            return 0
        return await self._send(todo, evaluation.now, epoch)

    async def _send(self, todo: Plan, now: float, epoch: int) -> int:
        assert self._producer is not None
        emitted = self._wall()
        pending: list[tuple[asyncio.Future[Any], str, Series | None]] = []
        for series in todo.send:
            value = encode(series, as_of=now, emitted_at=emitted)
            pending.append((await self._record(series.key, value), series.key, series))
        for series in todo.delete:
            gone = Series(series.name, series.labels, None, series.type)
            value = encode(gone, as_of=now, emitted_at=emitted)
            pending.append((await self._record(series.key, value), series.key, gone))
            pending.append((await self._record(series.key, None), series.key, None))
        for key in todo.tombstone:
            pending.append((await self._record(key, None), key, None))
        results = await asyncio.gather(*(f for f, _, _ in pending), return_exceptions=True)
        written = 0
        failed: BaseException | None = None
        for result, (_, key, landed) in zip(results, pending, strict=True):
            if isinstance(result, BaseException):
                failed = result
                continue
            written += 1
            if self._published is not None and epoch == self._epoch:
                if landed is None:
                    self._published.pop(key, None)
                else:
                    self._published[key] = landed
        self._sent(written)
        if failed is not None:
            log.warning("metric_messages_failed", error=str(failed), written=written)
        return written

    async def _record(self, key: str, value: bytes | None) -> asyncio.Future[Any]:
        assert self._producer is not None
        future: asyncio.Future[Any] = await self._producer.send(
            self._topic, value, key=key.encode()
        )
        return future

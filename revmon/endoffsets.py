"""True partition end offsets, found by reading, and a Faust app wired to use them.

Why: Tansu 0.6 answers ListOffsets(latest) with the base offset of the partition's last
record batch plus one, not with the offset after the last record (5 single records and
then one 10-record batch: end 6, not 15). Everything that reads "up to the end" by end
offsets stops early and says nothing. Faust's table recovery is such a reader: it takes
the changelog highwaters from `end_offsets` (`Recovery._build_highwaters` ->
`Consumer.highwaters` -> `AIOKafkaConsumerThread._highwaters`), so a table recovers all
but the tail of each partition's last batch.

The fix reads the tail: take the reported end, seek a dedicated consumer to one before it,
fetch until the position reaches the highwater that the fetch response carries (that one
is right on Tansu), and answer with the position. On a correct broker (Kafka) the probe
reads one record in one fetch and gives the same answer as `end_offsets`. Because fetch
highwaters are right, aiokafka's cached `highwater()` (Faust's lag monitor) needs no fix.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped, unused-ignore]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped, unused-ignore]
from aiokafka.structs import TopicPartition  # type: ignore[import-untyped, unused-ignore]
from faust.transport.drivers import aiokafka as faust_aiokafka

from revmon.errors import BrokerError

__all__ = [
    "DEFAULT_FETCH_TIMEOUT",
    "DEFAULT_TIME_LIMIT",
    "TrueEndConsumer",
    "TrueEndConsumerThread",
    "TrueEndTransport",
    "probe_end_offsets",
    "true_end_offsets",
    "use_true_end_offsets",
]

#: Seconds one fetch of the probe may wait for records.
DEFAULT_FETCH_TIMEOUT = 0.2
#: Seconds a whole probe may take, connecting included.
DEFAULT_TIME_LIMIT = 15.0
#: How long the worker's consumer lets the broker hold a fetch that found nothing (an
#: app may set `fetch_max_wait_ms` for its own: `revmon replay` waits less).
WORKER_FETCH_MAX_WAIT_MS = 100


async def probe_end_offsets(
    consumer: AIOKafkaConsumer,
    tps: Iterable[TopicPartition],
    *,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
) -> dict[TopicPartition, int]:
    """True end offsets, read with a started consumer that nobody else reads with.

    The consumer must have no group (`group_id=None`): its assignment is replaced by the
    partitions that hold records and their positions are moved. Not bounded in time by
    itself; `true_end_offsets` puts a deadline around it.

    Raises:
        KafkaError: the broker refused a request.
    """
    # aiokafka wants its own TopicPartition type (Faust passes its TP tuples); answer with
    # the caller's objects as keys.
    asked = {TopicPartition(tp.topic, tp.partition): tp for tp in tps}
    if not asked:
        return {}
    reported: Mapping[TopicPartition, int] = await consumer.end_offsets(list(asked))
    ends = {tp: int(reported[tp]) for tp in asked}
    pending = {tp for tp in asked if ends[tp] > 0}
    if not pending:
        return {asked[tp]: end for tp, end in ends.items()}
    # A fresh assignment: no highwater from an earlier fetch is left to mislead the loop.
    # Seek before the next await so that the first fetch already starts there.
    consumer.assign(sorted(pending))
    for tp in pending:
        consumer.seek(tp, ends[tp] - 1)
    # The highwater in a fetch response is right on Tansu (only ListOffsets is wrong): read
    # up to the first one seen. Waiting for an empty fetch instead would never end on a
    # partition that is being written to (a standby changelog, say).
    targets: dict[TopicPartition, int] = {}
    timeout_ms = max(1, int(fetch_timeout * 1000))
    while pending:
        await consumer.getmany(*pending, timeout_ms=timeout_ms)
        for tp in list(pending):
            position = int(await consumer.position(tp))
            ends[tp] = max(ends[tp], position)
            if tp not in targets and (highwater := consumer.highwater(tp)) is not None:
                targets[tp] = int(highwater)
            if tp in targets and position >= targets[tp]:
                pending.discard(tp)
    return {asked[tp]: end for tp, end in ends.items()}


async def true_end_offsets(
    options: Mapping[str, Any],
    tps: Iterable[TopicPartition],
    *,
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT,
    time_limit: float = DEFAULT_TIME_LIMIT,
) -> dict[TopicPartition, int]:
    """End offset of each partition (offset after its last record), exact on Tansu too.

    Args:
        options: aiokafka client options, as `Connection.aiokafka_options()` returns them.
        tps: the partitions; duplicates are asked once.
        fetch_timeout: seconds one fetch may wait.
        time_limit: seconds the whole probe may take.

    Raises:
        BrokerError: the broker cannot be reached, refuses, or the probe ran out of time.
    """
    wanted = list(dict.fromkeys(tps))
    if not wanted:
        return {}
    deadline = asyncio.get_running_loop().time() + time_limit
    settings: dict[str, Any] = {
        "client_id": "revmon-endoffsets",
        # With the reported end wrong, "latest" would be wrong too; "earliest" only
        # applies if the log start passed end - 1, and then it is the end.
        "auto_offset_reset": "earliest",
        "fetch_max_wait_ms": max(1, int(fetch_timeout * 500)),
        # Bounds connecting: start() is not cancelled, because a start() cancelled while
        # it connects leaves an open connection behind that stop() does not close.
        "request_timeout_ms": max(1000, int(time_limit * 1000)),
        **options,
        "enable_auto_commit": False,
        "group_id": None,
    }
    consumer = AIOKafkaConsumer(**settings)
    try:
        await consumer.start()
        async with asyncio.timeout_at(deadline):
            return await probe_end_offsets(consumer, wanted, fetch_timeout=fetch_timeout)
    except TimeoutError as exc:
        raise BrokerError(
            f"end offsets of {len(wanted)} partitions not found within {time_limit:g}s"
        ) from exc
    except (KafkaError, OSError) as exc:
        raise BrokerError(f"cannot read end offsets: {exc}") from exc
    finally:
        await consumer.stop()


class TrueEndConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):  # type: ignore[misc]
    """Faust's aiokafka consumer thread, but `highwaters()` answers with true end offsets.

    Recovery (active and standby changelogs) reads its highwaters through `highwaters()`,
    nothing else does. In a transaction (exactly-once) Faust answers with the last stable
    offset instead, which is left as it is.
    """

    def _create_worker_consumer(self, transport: Any) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Faust hard-codes a 1.5 s fetch wait. Tansu holds a fetch that found nothing for
        # that long even when records arrive meanwhile, so new input would wait up to
        # 1.5 s per hop (input, then account facts); on Kafka a fetch returns as soon as
        # records arrive, and a shorter wait only means more empty polls when idle.
        wait = getattr(self.app, "fetch_max_wait_ms", WORKER_FETCH_MAX_WAIT_MS)
        consumer._fetch_max_wait_ms = wait
        return consumer

    async def _highwaters(self, partitions: Iterable[TopicPartition]) -> Mapping[Any, int]:
        if self.consumer.in_transaction:
            result: Mapping[Any, int] = await super()._highwaters(partitions)
            return result
        return await true_end_offsets(self.probe_options(), partitions)

    def probe_options(self) -> dict[str, Any]:
        """Client options of the probe: the servers and credentials of Faust's own consumer."""
        conf = self.app.conf
        transport = self.transport
        auth = faust_aiokafka.credentials_to_aiokafka_auth(
            conf.broker_credentials, conf.ssl_context
        )
        return {
            "bootstrap_servers": faust_aiokafka.server_list(transport.url, transport.default_port),
            "client_id": f"{conf.broker_client_id}-endoffsets",
            **auth,
        }


class TrueEndConsumer(faust_aiokafka.Consumer):  # type: ignore[misc]
    """Faust's aiokafka consumer running a `TrueEndConsumerThread`."""

    def _new_consumer_thread(self) -> TrueEndConsumerThread:
        return TrueEndConsumerThread(self, loop=self.loop, beacon=self.beacon)


class TrueEndTransport(faust_aiokafka.Transport):  # type: ignore[misc]
    """Faust's aiokafka (`kafka://`) transport creating `TrueEndConsumer`s.

    `use_true_end_offsets` is the usual way in; this class is for code that builds the
    transport itself (an `App._new_transport` override, a `faust.transports` entry point).
    """

    Consumer = TrueEndConsumer


def use_true_end_offsets(app: faust.App) -> None:
    """Make the Faust `app` recover its tables up to the true end of each changelog partition.

    Call it once the app is configured and before it starts (before anything touches
    `app.consumer`); calling it again does nothing. Only this app changes: its consumer
    transport creates a `TrueEndConsumer` (Faust's `App._new_consumer` asks
    `app.transport.create_consumer`, which builds `transport.Consumer`).

    Raises:
        RuntimeError: the app already has its consumer, or does not use the aiokafka driver.
    """
    consumer = app._consumer
    if consumer is not None:
        if isinstance(consumer, TrueEndConsumer):
            return
        raise RuntimeError("use_true_end_offsets(app) must be called before the app starts")
    transport = app.transport
    if not isinstance(transport, faust_aiokafka.Transport):
        raise RuntimeError(f"use_true_end_offsets needs the kafka:// transport, not {transport!r}")
    if not issubclass(transport.Consumer, TrueEndConsumer):
        # The app may have built its transport already (declaring a table or agent does), so
        # set the consumer class on this transport object rather than replace the transport.
        transport.Consumer = TrueEndConsumer

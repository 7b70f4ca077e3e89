"""Batch delivery: Faust's consumer hands fetched input to revmon a batch at a time.

Why: Faust delivers every message on its own, through the conductor, a channel queue and a
stream, and its fetch loop (`Consumer._drain_messages`) wraps each delivery in
`Service.wait_first`, two asyncio tasks and an `asyncio.wait` per message. On this kind of
machine that is ~80 µs per message: the whole cost of a bare agent. revmon processes its
input synchronously and in batches anyway (state writes are coalesced per batch), so for
the topics it names, the fetch loop collects the messages of one fetch and calls a batch
handler with them, then acknowledges them.

What stays Faust's: group membership and rebalancing, the fetching consumer thread, flow
control, offset commits (from the acknowledgements, after Faust flushes its producer),
tables with their changelogs and recovery. Topics without a handler (the table
changelogs while recovering) take Faust's usual path, message by message.

Safety: a handler runs to completion with no `await` between the fetch's messages and
their acknowledgement, so no rebalance can happen in between; Faust's `getmany` stops
yielding as soon as flow is suspended or the group generation changes, and pending
messages are delivered before anything awaits.

Contiguity: Faust drops fetched records in several places (flow stopped for a rebalance,
a generation change in the middle of a fetch, a partition not active yet) and counts on
seeking back to the committed offsets afterwards; but that seek skips partitions with
nothing committed, and a fetch taken before a seek can still be handed out after it. Both
lost input for good when a worker joined mid-stream. So each handler gets each of its
partitions as one contiguous run of offsets, from the committed offset (or the log's
beginning) on: `Contiguity` notices a record that comes after a hole and rewinds the
partition to the hole; a hole that a fetch started after the rewind still shows is real
(compaction, transaction markers) and is passed over.
"""

from __future__ import annotations

import asyncio
import enum
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.errors import IllegalStateError  # type: ignore[import-untyped, unused-ignore]
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

from revmon.endoffsets import TrueEndConsumer

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BatchConsumer",
    "BatchHandler",
    "CompleteFlushProducer",
    "Contiguity",
    "Verdict",
    "use_batch_delivery",
]

#: Called with the messages of one fetch (in order within each partition); acknowledged
#: when it returns. An exception crashes the worker: nothing is acknowledged.
BatchHandler = Callable[[Sequence[Any]], None]

#: Bytes of message values after which a batch is handed over (~5,000 typical events).
DEFAULT_MAX_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Delivery:
    handlers: Mapping[str, BatchHandler]  # topic name -> handler
    max_batch: int  # messages
    max_bytes: int  # of message values: one message may hold a large batch of events


_DELIVERIES: weakref.WeakKeyDictionary[Any, _Delivery] = weakref.WeakKeyDictionary()


class Verdict(enum.Enum):
    """What to do with a fetched record of a partition delivered in batches."""

    DELIVER = "deliver"  # the next offset owed to the handler
    SKIP = "skip"  # delivered already, or fetched before the partition was (re)positioned
    REWIND = "rewind"  # records before it went missing: seek back to the next offset owed
    GAP = "gap"  # re-read after a rewind and still past the hole: nothing is there


@dataclass
class Contiguity:
    """Per partition, the next offset owed to the handler, and any rewind in progress.

    Pure bookkeeping (no I/O): the consumer positions a partition (`position`), asks
    `judge` about each fetched record, and reports what it delivered (`delivered`) and
    where it rewound (`rewound`). Fetches are numbered in the order they start; a fetch
    started after a rewind reads from the rewound offset, so if its first record still
    lies past that offset, the records in between do not exist (compacted away,
    transaction markers) rather than having been dropped on the way.
    """

    owed: dict[Any, int] = field(default_factory=dict)
    #: tp -> (offset rewound to, number of the last fetch started before the rewind)
    rewinds: dict[Any, tuple[int, int]] = field(default_factory=dict)

    def position(self, tp: Any, offset: int) -> None:
        """The partition was sought to `offset`: that is the next one owed."""
        self.owed[tp] = offset
        self.rewinds.pop(tp, None)

    def forget(self, tps: Iterable[Any]) -> None:
        """The partitions were revoked: nothing is owed until they are positioned again."""
        for tp in tps:
            self.owed.pop(tp, None)
            self.rewinds.pop(tp, None)

    def judge(self, tp: Any, offset: int, fetch: int) -> Verdict:
        """What to do with the record at `offset` of `tp`, from fetch number `fetch`."""
        owed = self.owed.get(tp)
        if owed is None or offset < owed:
            return Verdict.SKIP  # not positioned yet (the seek re-reads it), or delivered
        if offset == owed:
            return Verdict.DELIVER
        rewind = self.rewinds.get(tp)
        if rewind is None or rewind[0] != owed:
            return Verdict.REWIND
        return Verdict.GAP if fetch > rewind[1] else Verdict.SKIP

    def delivered(self, tp: Any, offset: int) -> None:
        """The record at `offset` went to the handler."""
        self.owed[tp] = offset + 1
        self.rewinds.pop(tp, None)

    def rewound(self, tp: Any, fetch: int) -> None:
        """`tp` was sought back to its owed offset during fetch number `fetch`."""
        self.rewinds[tp] = (self.owed[tp], fetch)


class CompleteFlushProducer(faust_aiokafka.Producer):  # type: ignore[misc]
    """Faust's aiokafka producer, but `flush()` returns once everything queued before it
    is acknowledged by the broker, and does not wait for what is queued after.

    Faust flushes its producer before it commits offsets and when partitions are revoked,
    and revmon relies on that: a batch's state record and account facts must be in the
    log before its input offsets are committed, and before another worker recovers the
    partition. But Faust's `ProducerBuffer.flush()` gives up as soon as handing one
    message to aiokafka takes over 0.1 s (a full accumulator under load), leaving the rest
    queued: the commit then runs ahead of the state, and a worker taking over recovers an
    older state than the offsets say (events lost). And while messages keep arriving
    within 0.1 s of each other it keeps going, so under a steady load a commit waited
    for a minute and more. This flush waits for exactly the messages queued before it
    (each `send_soon` future resolves when the broker acknowledges the message) and
    raises if one of them failed, so nothing is committed past a lost message.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unacknowledged: list[asyncio.Future[Any]] = []

    def send_soon(self, fut: Any) -> None:
        """Queue the message (Faust), and remember it until the broker has it."""
        super().send_soon(fut)
        unacknowledged = self.unacknowledged
        unacknowledged.append(fut)
        if len(unacknowledged) >= _PRUNE_AT:  # no commit for a while: drop what is done well
            self.unacknowledged = [f for f in unacknowledged if not _succeeded(f)]

    async def flush(self) -> None:
        """Wait until the broker acknowledged every message queued so far.

        Raises:
            Exception: a message queued so far was not sent (the send's own error).
        """
        # A copy, not a hand-over: a flush that starts while this one waits (a revocation
        # during a periodic commit) must wait for these messages too.
        waiting = list(self.unacknowledged)
        if waiting:
            await asyncio.wait(waiting)
        self.unacknowledged = [f for f in self.unacknowledged if not _succeeded(f)]
        for fut in waiting:
            if fut.cancelled():
                raise RuntimeError("a message was cancelled before the broker had it")
            error = fut.exception()
            if error is not None:
                raise error


_PRUNE_AT = 100_000


def _succeeded(fut: asyncio.Future[Any]) -> bool:
    return fut.done() and not fut.cancelled() and fut.exception() is None


class BatchConsumer(TrueEndConsumer):
    """Faust's aiokafka consumer (with true end offsets) delivering some topics in batches."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.contiguity = Contiguity()
        self._seeking = asyncio.Lock()

    async def on_partitions_revoked(self, revoked: Any) -> None:
        """Faust's revocation, and nothing is owed on the revoked partitions any more."""
        self.contiguity.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def perform_seek(self) -> None:
        """Seek every partition to its committed offset, the uncommitted ones included.

        Faust calls this after every rebalance and after dropping a fetch, to read again
        what it dropped; its own version leaves partitions with no commit (or a commit at
        0) where the fetcher got, past the dropped records. Here every partition delivered
        in batches is sought to its committed offset, or to the log's beginning
        (`auto_offset_reset` earliest, as revmon configures it), and its read, committed
        and acknowledged offsets start again from there: a commit interrupted by a
        revocation writes its offsets back after the revocation cleared them, and an
        acknowledgement below such a stale commit would never be committed. Messages read
        again are at most delivered again, and revmon's state skips what it applied.
        """
        delivery = _DELIVERIES.get(self.app)
        if delivery is None:
            await super().perform_seek()
            return
        async with self._seeking:  # one seek at a time: the last one read the newest commits
            committed: Mapping[Any, int | None] = await self.seek_to_committed()
            # No await from here on: the seek and what is owed change together. (aiokafka
            # has sought each committed partition already, but while it asked for the next
            # partition's commit, records from there may have been fetched, and skipped.)
            for tp, offset in committed.items():
                known = offset if offset is not None and offset > 0 else None
                self._read_offset[tp] = known
                self._committed_offset[tp] = known
                if tp.topic not in delivery.handlers:
                    continue
                self._acked.pop(tp, None)
                self._acked_index.pop(tp, None)
                self._gap.pop(tp, None)
                # With no commit, from the beginning: 0, or past a log start that retention
                # moved (the fetch resets to the earliest offset, and the first record read
                # after a rewind proves the records before it are gone).
                start = known or 0
                try:
                    self._thread.seek(tp, start)
                except IllegalStateError:  # revoked meanwhile: the next rebalance seeks it
                    continue
                self.contiguity.position(tp, start)

    async def _drain_messages(self, fetcher: Any) -> None:
        delivery = _DELIVERIES.get(self.app)
        if delivery is None:
            await super()._drain_messages(fetcher)
            return
        handlers, max_batch, max_bytes = delivery.handlers, delivery.max_batch, delivery.max_bytes
        callback = self.callback
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        commit_every = self._commit_every
        contiguity = self.contiguity
        pending: dict[BatchHandler, list[Any]] = {}
        held = held_bytes = fetch = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetch += 1
                this_fetch = fetch
                batches = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    break
                async for tp, message in batches:
                    offset = message.offset
                    handler = handlers.get(tp.topic)
                    if handler is not None:
                        verdict = contiguity.judge(tp, offset, this_fetch)
                        if verdict is Verdict.SKIP:
                            continue
                        if verdict is not Verdict.DELIVER:
                            held = held_bytes = self._deliver(pending)
                            owed = contiguity.owed[tp]
                            if verdict is Verdict.REWIND:
                                self.log.info(
                                    "Records %s..%s of %s were dropped; reading them again",
                                    owed,
                                    offset - 1,
                                    tp,
                                )
                                try:
                                    self._thread.seek(tp, owed)
                                except IllegalStateError:
                                    continue  # revoked: positioned again when reassigned
                                contiguity.rewound(tp, this_fetch)
                                continue
                            # Compacted away or transaction markers: commits may pass them.
                            self.log.warning("No records %s..%s in %s", owed, offset - 1, tp)
                            await self._add_gap(tp, owed, offset - 1)
                            if not self.flow_active:
                                break  # a rebalance began: the next seek repositions
                        pending.setdefault(handler, []).append(message)
                        contiguity.delivered(tp, offset)
                        held += 1
                        held_bytes += len(message.value or b"")
                        read_offset[tp] = offset
                    else:
                        last = read_offset[tp]
                        if last is not None and offset < last:
                            continue  # read before (Faust drops these too)
                        held = held_bytes = self._deliver(pending)
                        if last and offset - last > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, last + 1, offset)
                            if not self.flow_active:
                                break
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offset[tp] = offset
                    if held >= max_batch or held_bytes >= max_bytes:
                        held = held_bytes = self._deliver(pending)
                        await asyncio.sleep(0)  # let the web endpoints and timers in
                held = held_bytes = self._deliver(pending)
                if commit_every is not None and self._acked_since_commit() >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _acked_since_commit(self) -> int:
        acked: int = self._n_acked
        return acked

    def _deliver(self, pending: dict[BatchHandler, list[Any]]) -> int:
        """Hand each handler its messages, then acknowledge them; returns 0 (none held)."""
        for handler, messages in pending.items():
            handler(messages)
            ack = self.ack
            for message in messages:
                ack(message)
        pending.clear()
        return 0


def use_batch_delivery(
    app: faust.App,
    routes: Iterable[tuple[faust.TopicT, BatchHandler]],
    *,
    max_batch: int,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> None:
    """Deliver each topic's messages to its handler, at most `max_batch` messages at a time.

    A batch also ends once its messages' values reach `max_bytes` (a message may hold
    hundreds of events), so that one batch never keeps the event loop long.

    The app subscribes to the topics (acknowledged, so their offsets are committed) without
    an agent: Faust's stream machinery never sees their messages. Its producer flushes
    completely before every commit (`CompleteFlushProducer`), so what a handler sends is
    in the log before the input it came from is committed. Call once, before the app
    starts (before anything creates its producer); its consumer also reads true end
    offsets (`revmon.endoffsets`).

    Raises:
        RuntimeError: the app already has its consumer, or does not use the aiokafka driver.
    """
    if app._consumer is not None or app._producer is not None:
        raise RuntimeError("use_batch_delivery(app) must be called before the app starts")
    transport = app.transport
    if not isinstance(transport, faust_aiokafka.Transport):
        raise RuntimeError(f"batch delivery needs the kafka:// transport, not {transport!r}")
    transport.Consumer = BatchConsumer
    transport.Producer = CompleteFlushProducer
    handlers: dict[str, BatchHandler] = {}
    for topic, handler in routes:
        handlers.update(dict.fromkeys(topic.topics, handler))
        app.topics.add(topic)
    _DELIVERIES[app] = _Delivery(handlers, max_batch, max_bytes)

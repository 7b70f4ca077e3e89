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
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

from revmon.endoffsets import TrueEndConsumer

__all__ = [
    "DEFAULT_MAX_BYTES",
    "BatchConsumer",
    "BatchHandler",
    "CompleteFlushProducer",
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


class CompleteFlushProducer(faust_aiokafka.Producer):  # type: ignore[misc]
    """Faust's aiokafka producer, but `flush()` returns only once everything is sent.

    Faust flushes its producer before it commits offsets and when partitions are revoked,
    and revmon relies on that: a batch's state record and account facts must be in the
    log before its input offsets are committed, and before another worker recovers the
    partition. But Faust's `ProducerBuffer.flush()` gives up as soon as handing one
    message to aiokafka takes over 0.1 s (a full accumulator under load), leaving the rest
    queued: the commit then runs ahead of the state, and a worker taking over recovers
    an older state than the offsets say (events lost). This flush waits for the buffer
    to drain, then for aiokafka to have every message acknowledged.
    """

    async def flush(self) -> None:
        buffer = self.buffer
        while buffer.size:
            await buffer.flush_atmost(None)
        await super().flush()


class BatchConsumer(TrueEndConsumer):
    """Faust's aiokafka consumer (with true end offsets) delivering some topics in batches."""

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
        pending: dict[BatchHandler, list[Any]] = {}
        held = held_bytes = 0
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                batches = self.getmany(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    break
                async for tp, message in batches:
                    offset = message.offset
                    last = read_offset[tp]
                    if last is not None and offset < last:
                        continue  # read before (Faust drops these too)
                    handler = handlers.get(tp.topic)
                    if last and offset - last > 1 and acks_enabled_for(message.topic):
                        # Compacted away or transaction markers: commits may pass them.
                        # Faust's `_add_gap` yields to the loop: nothing may be pending.
                        held = held_bytes = self._deliver(pending)
                        await self._add_gap(tp, last + 1, offset)
                        if not self.flow_active:
                            break  # a rebalance began; Faust seeks back to the commits
                    if handler is None:
                        held = held_bytes = self._deliver(pending)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                    else:
                        pending.setdefault(handler, []).append(message)
                        held += 1
                        held_bytes += len(message.value or b"")
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

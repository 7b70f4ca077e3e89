"""The producer flush revmon's commits rely on (the consumer side runs on the real broker:
tests/integration/test_delivery.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka

from revmon import delivery
from revmon.delivery import CompleteFlushProducer, Contiguity, Verdict


class SlowBuffer:
    """A Faust producer buffer whose flush hands over one message and gives up, as Faust's
    does when handing one message to aiokafka takes over 0.1 s."""

    def __init__(self, size: int) -> None:
        self.size = size

    def put(self, fut: object) -> None:
        """Queue one message."""
        self.size += 1

    async def flush_atmost(self, max_messages: int | None) -> int:
        """Hand over one message, then give up."""
        if self.size:
            self.size -= 1
            return 1
        return 0

    async def flush(self) -> None:
        """Faust's flush: one `flush_atmost` call."""
        await self.flush_atmost(None)


def _producer(cls: type[faust_aiokafka.Producer], queued: int = 0) -> Any:
    producer = object.__new__(cls)
    producer.buffer = SlowBuffer(queued)
    producer._producer = None  # no aiokafka producer to flush
    producer._transaction_producers = {}
    producer.unacknowledged = []
    return producer


async def test_stock_flush_returns_with_messages_still_queued() -> None:
    """Faust's own flush gives up after one slow hand-over: a commit after it could run
    ahead of the state it covers (why revmon has its own)."""
    stock = _producer(faust_aiokafka.Producer, queued=5)
    await stock.flush()
    assert stock.buffer.size == 4


async def test_flush_waits_until_the_broker_has_every_message_queued_before_it() -> None:
    """Each queued message's future resolves when the broker acknowledges it; the flush
    returns only after the last of them."""
    producer = _producer(CompleteFlushProducer)
    loop = asyncio.get_running_loop()
    messages = [loop.create_future() for _ in range(3)]
    for message in messages:
        producer.send_soon(message)

    async def acknowledge() -> None:
        for message in messages:
            await asyncio.sleep(0.01)
            message.set_result(None)

    acks = asyncio.create_task(acknowledge())
    await producer.flush()
    assert all(message.done() for message in messages)
    await acks


async def test_flush_does_not_wait_for_messages_queued_after_it() -> None:
    """A steady stream of new messages does not hold a commit up."""
    producer = _producer(CompleteFlushProducer)
    loop = asyncio.get_running_loop()
    early = loop.create_future()
    producer.send_soon(early)
    flushing = asyncio.create_task(producer.flush())
    await asyncio.sleep(0)
    late = loop.create_future()
    producer.send_soon(late)  # never acknowledged
    early.set_result(None)
    await asyncio.wait_for(flushing, timeout=5)
    assert producer.unacknowledged == [late]  # the next flush waits for it


async def test_a_flush_started_during_another_waits_for_its_messages_too() -> None:
    """A revocation's flush during a periodic commit's: neither returns before the broker
    has every message queued before it started."""
    producer = _producer(CompleteFlushProducer)
    loop = asyncio.get_running_loop()
    message = loop.create_future()
    producer.send_soon(message)
    first = asyncio.create_task(producer.flush())
    await asyncio.sleep(0)
    second = asyncio.create_task(producer.flush())
    await asyncio.sleep(0.05)
    assert not first.done()
    assert not second.done()
    message.set_result(None)
    await asyncio.wait_for(asyncio.gather(first, second), timeout=5)


@pytest.mark.parametrize("failure", ["error", "cancelled"])
async def test_a_message_the_broker_never_got_fails_the_flush(failure: str) -> None:
    """Nothing is committed past a lost message: the flush raises."""
    producer = _producer(CompleteFlushProducer)
    loop = asyncio.get_running_loop()
    ok, lost = loop.create_future(), loop.create_future()
    producer.send_soon(ok)
    producer.send_soon(lost)
    ok.set_result(None)
    if failure == "error":
        lost.set_exception(OSError("broker gone"))
        with pytest.raises(OSError, match="broker gone"):
            await producer.flush()
    else:
        lost.cancel()
        with pytest.raises(RuntimeError, match="cancelled"):
            await producer.flush()


async def test_acknowledged_messages_are_let_go_between_flushes() -> None:
    """Without a flush for a long while, only messages not yet acknowledged (or failed)
    are kept."""
    producer = _producer(CompleteFlushProducer)
    loop = asyncio.get_running_loop()
    kept = loop.create_future()
    producer.send_soon(kept)
    for _ in range(delivery._PRUNE_AT - 1):  # the last one reaches the bound
        done = loop.create_future()
        done.set_result(None)
        producer.send_soon(done)
    assert producer.unacknowledged == [kept]


TP = ("topic", 0)


def _positioned(offset: int = 10) -> Contiguity:
    contiguity = Contiguity()
    contiguity.position(TP, offset)
    return contiguity


@pytest.mark.parametrize(
    ("offset", "verdict"),
    [
        (10, Verdict.DELIVER),  # the next one owed
        (9, Verdict.SKIP),  # delivered before (a re-fetch, or below the commit)
        (0, Verdict.SKIP),
        (11, Verdict.REWIND),  # 10 went missing on the way
        (500, Verdict.REWIND),
    ],
)
def test_a_positioned_partition_owes_exactly_the_next_offset(offset: int, verdict: Verdict) -> None:
    """After a seek to 10, only 10 is delivered; a later record means records were dropped."""
    assert _positioned(10).judge(TP, offset, fetch=1) is verdict


def test_nothing_is_delivered_before_the_partition_is_positioned() -> None:
    """Records fetched before the seek after an assignment are read again after it."""
    contiguity = Contiguity()
    assert contiguity.judge(TP, 0, fetch=1) is Verdict.SKIP
    contiguity.position(TP, 0)
    assert contiguity.judge(TP, 0, fetch=1) is Verdict.DELIVER


def test_delivering_moves_the_owed_offset() -> None:
    """Each delivered record makes the next offset the owed one."""
    contiguity = _positioned(10)
    contiguity.delivered(TP, 10)
    assert contiguity.judge(TP, 10, fetch=1) is Verdict.SKIP
    assert contiguity.judge(TP, 11, fetch=1) is Verdict.DELIVER
    assert contiguity.judge(TP, 12, fetch=1) is Verdict.REWIND


@pytest.mark.parametrize(
    ("fetch", "offset", "verdict"),
    [
        (3, 15, Verdict.SKIP),  # same fetch as the rewind: taken before it, wait for the re-read
        (2, 15, Verdict.SKIP),
        (4, 10, Verdict.DELIVER),  # the re-read brings the missing record
        (4, 15, Verdict.GAP),  # a fetch after the rewind still starts past 10: nothing there
    ],
)
def test_after_a_rewind_only_a_later_fetch_can_prove_a_real_gap(
    fetch: int, offset: int, verdict: Verdict
) -> None:
    """A rewind during fetch 3 to offset 10: records of fetch 3 or before are stale."""
    contiguity = _positioned(10)
    assert contiguity.judge(TP, 15, fetch=3) is Verdict.REWIND
    contiguity.rewound(TP, fetch=3)
    assert contiguity.judge(TP, offset, fetch=fetch) is verdict


def test_a_new_position_or_a_revocation_ends_a_rewind() -> None:
    """Seeking again (a rebalance) restarts the count; a revoked partition owes nothing."""
    contiguity = _positioned(10)
    contiguity.rewound(TP, fetch=3)
    contiguity.position(TP, 7)
    assert contiguity.judge(TP, 15, fetch=9) is Verdict.REWIND
    contiguity.forget([TP])
    assert contiguity.judge(TP, 7, fetch=9) is Verdict.SKIP


def test_partitions_are_independent() -> None:
    """What one partition owes says nothing about another."""
    other = ("topic", 1)
    contiguity = _positioned(10)
    contiguity.position(other, 0)
    contiguity.delivered(other, 0)
    assert contiguity.judge(TP, 10, fetch=1) is Verdict.DELIVER
    assert contiguity.judge(other, 1, fetch=1) is Verdict.DELIVER

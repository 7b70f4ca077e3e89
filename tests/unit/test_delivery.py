"""The producer flush revmon's commits rely on (the consumer side runs on the real broker:
tests/integration/test_delivery.py)."""

from __future__ import annotations

from faust.transport.drivers import aiokafka as faust_aiokafka

from revmon.delivery import CompleteFlushProducer


class SlowBuffer:
    """A Faust producer buffer whose flush hands over one message and gives up, as Faust's
    does when handing one message to aiokafka takes over 0.1 s."""

    def __init__(self, size: int) -> None:
        self.size = size

    async def flush_atmost(self, max_messages: int | None) -> int:
        """Hand over one message, then give up."""
        if self.size:
            self.size -= 1
            return 1
        return 0

    async def flush(self) -> None:
        """Faust's flush: one `flush_atmost` call."""
        await self.flush_atmost(None)


def _producer(cls: type[faust_aiokafka.Producer], queued: int) -> faust_aiokafka.Producer:
    producer = object.__new__(cls)
    producer.buffer = SlowBuffer(queued)
    producer._producer = None  # no aiokafka producer to flush
    producer._transaction_producers = {}
    return producer


async def test_flush_waits_for_every_queued_message() -> None:
    """Faust's flush returns with messages still queued (so a commit could run ahead of
    the state it covers); revmon's returns only once the buffer is empty."""
    stock = _producer(faust_aiokafka.Producer, queued=5)
    complete = _producer(CompleteFlushProducer, queued=5)

    await stock.flush()
    await complete.flush()

    assert stock.buffer.size == 4
    assert complete.buffer.size == 0

"""Faust-side adapters: the state journal on a Faust table, dead letters on a Faust topic."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from faust.streams import _current_event

from revmon.events import Rejection
from revmon.processors import Message, dead_letter_headers, dead_letter_value
from revmon.state import belongs_to


@contextlib.contextmanager
def _as_partition(event: Any) -> Iterator[None]:
    """Make Faust treat table writes as belonging to `event`'s partition.

    Faust routes a table write to the changelog partition (and RocksDB shard) of the
    event being processed. revmon writes once per batch, after many messages of several
    partitions and with no Faust event at all (`revmon.delivery`), so it names the
    partition explicitly through Faust's own context variable, with an `_Anchor`.
    """
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class _Anchor:
    """What a Faust table write reads off "the current event": its source message."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, message: Any) -> None:
        self.message = message


class FaustStateTable:
    """`revmon.state.StateTable` on a Faust table (raw bytes keys and values)."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._anchors: dict[int, _Anchor] = {}

    def anchor(self, partition: int, message: Any) -> None:
        """Remember an input message (Faust's) of `partition`: that partition's writes go
        to its changelog partition."""
        self._anchors[partition] = _Anchor(message)

    def records(self, partition: int) -> Iterable[tuple[str, bytes]]:
        """Every record of `partition`: journal, snapshot chunks and marker (keys carry the
        partition, so a scan)."""
        return [
            (text, value)
            for key, value in list(self._table.data.items())
            if belongs_to(text := key.decode(), partition)
        ]

    def put(self, partition: int, key: str, value: bytes) -> None:
        """Write one record: one changelog message on `partition`."""
        with _as_partition(self._anchors[partition]):
            self._table[key.encode()] = value

    def delete(self, partition: int, key: str) -> None:
        """Delete one record: one tombstone on `partition`."""
        with _as_partition(self._anchors[partition]):
            self._table.pop(key.encode(), None)


class FaustDeadLetters:
    """Rejected input to the dead-letter topic with the `revmon-*` headers: unchanged, or
    its first 64 KiB when it was too large (SPEC §9)."""

    def __init__(self, topic: Any) -> None:
        self._topic = topic

    def send(self, message: Message, rejection: Rejection) -> None:
        """Queue the message; Faust flushes its producer before it commits input offsets."""
        self._topic.send_soon(
            key=message.key,
            value=dead_letter_value(rejection),
            headers=dead_letter_headers(message, rejection),
        )

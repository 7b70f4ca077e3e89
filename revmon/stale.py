"""A local table store that no longer matches the cluster is discarded and rebuilt, not fatal.

Why: RocksDB keeps table state across restarts, with the last changelog offset it holds
(its "persisted offset"). When the cluster was recreated, or the data directory comes
from another cluster, that offset can lie beyond the end of the changelog it claims to
mirror. Faust then refuses to start (`ConsistencyError`), and a supervisor restarts it
into the same refusal: a crash loop no operator action short of deleting files ends.

The local store is only a cache of the changelog, which is the truth. So when Faust has
read the changelog ends and the persisted offsets (`Recovery._build_offsets`, right
before its consistency check), every partition whose persisted offset is past the end
of its changelog has its local store closed and deleted, with one warning naming the
partitions and both offsets; Faust then recovers that partition from the
start of its changelog, as on a fresh disk. Partitions that match are kept.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

log = structlog.get_logger(__name__)


def discard_stale_local_state(app: Any) -> None:
    """Make Faust `app`'s table recovery discard partitions whose local store is ahead of
    their changelog, instead of failing. Call once, before the app starts."""
    recovery = app.tables.recovery
    if getattr(recovery, "_revmon_stale_check", False):
        return
    build_offsets = recovery._build_offsets

    async def checked(
        consumer: Any, tps: Iterable[Any], destination: MutableMapping[Any, Any], title: str
    ) -> None:
        tps = set(tps)
        await build_offsets(consumer, tps, destination, title)
        highwaters = (
            recovery.active_highwaters if title == "active" else recovery.standby_highwaters
        )
        stale: dict[Any, tuple[int, int]] = {}
        for tp in tps:
            offset, highwater = destination.get(tp), highwaters.get(tp)
            if offset is not None and highwater is not None and offset > highwater:
                stale[tp] = (offset, highwater + 1)
        if not stale:
            return
        log.warning(
            "local_state_discarded",
            reason="the local store is ahead of its changelog (a recreated or another "
            "cluster): it is discarded and rebuilt from the changelog",
            partitions=[
                f"{tp.topic}[{tp.partition}] local {offset} > end {end}"
                for tp, (offset, end) in sorted(stale.items())
            ],
            data_dir=str(app.conf.datadir),
        )
        for tp in stale:
            table = recovery.tp_to_table.get(tp)
            if table is not None:
                _discard(table.data, tp.partition)
            destination[tp] = None
        await build_offsets(consumer, set(stale), destination, title)

    recovery._build_offsets = checked
    recovery._revmon_stale_check = True


def _discard(store: Any, partition: int) -> None:
    """Close and delete one partition of a RocksDB store; it reopens empty when next used."""
    dbs = getattr(store, "_dbs", None)
    if dbs is None or not hasattr(store, "partition_path"):
        return  # not a store with local files (the memory store is never stale)
    db = dbs.pop(partition, None)
    if db is not None:
        with contextlib.suppress(Exception):
            db.close()
    key_index = getattr(store, "_key_index", None)
    if key_index is not None:
        key_index.clear()  # a cache of key -> partition: some keys pointed into the dropped db
    shutil.rmtree(store.partition_path(partition), ignore_errors=True)

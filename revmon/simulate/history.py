"""The whole simulated event history, in time order, and its JSON-lines file."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from revmon.simulate import billing, leads, marketing
from revmon.simulate.config import SimulationConfig
from revmon.simulate.world import World


def simulate(config: SimulationConfig) -> Iterator[dict[str, Any]]:
    """Every event of the history, sorted by occurred_at (ties in a deterministic order).

    Lazy: only pending actions of live entities are held, never the history itself.
    """
    world = World(config)
    marketing.start(world)
    billing.open_book(world)
    leads.open_book(world)
    yield from world.run()


def write_jsonl(events: Iterable[dict[str, Any]], path: Path) -> int:
    """Write one JSON object per line; return how many."""
    count = 0
    with path.open("wb") as out:
        for event in events:
            out.write(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            count += 1
    return count

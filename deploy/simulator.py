"""The docker-compose demo feed: a simulated revenue engine sending events to the cluster.

It sends `HISTORY_DAYS` of history at once, then events as they fall due, `SPEED`
simulated seconds per second (1: real time, which suits the wall clock of `revmon run`).
The events are keyed and routed as `revmon produce` does. Configured by revmon's own
config (`REVMON_CONFIG`, `REVMON_*`) and the variables SIMULATOR_SEED, HISTORY_DAYS, SPEED.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

from revmon.app import prepare_topics
from revmon.broker import Connection
from revmon.demo import feed
from revmon.settings import load_settings
from revmon.simulate import SimulationConfig


async def main() -> None:
    """Create the topics, then feed until stopped."""
    settings = load_settings(None)
    servers = settings.bootstrap_servers
    if servers is None:
        raise SystemExit("simulator: set `broker: kafka://host:port`")
    connection = Connection(servers, settings.kafka)
    await prepare_topics(settings, connection)
    days = int(os.environ.get("HISTORY_DAYS", "180"))
    now = datetime.now(UTC).replace(microsecond=0)
    config = SimulationConfig.from_settings(
        settings,
        days=days + 3650,
        seed=int(os.environ.get("SIMULATOR_SEED", "7")),
        start=now - timedelta(days=days),
    )
    speed = float(os.environ.get("SPEED", "1"))
    await feed(connection, settings, config, speed, now.timestamp())


if __name__ == "__main__":
    asyncio.run(main())

"""Running a built worker: as the `run` daemon, or inside a command until a condition holds."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import structlog

from revmon import shutdown
from revmon.app import Revmon
from revmon.broker import probe
from revmon.errors import RevmonError
from revmon.web import WebServer

log = structlog.get_logger(__name__)


async def watch_broker(revmon: Revmon, every: float = 1.0, misses: int = 2) -> None:
    """Keep `revmon.broker_reachable` up to date: false after `misses` probes without an
    answer in a row, true again at the first answer. /readyz says 503 while it is false;
    each change is one log line."""
    connection = revmon.connection
    if connection is None:
        return
    missed = 0
    while True:
        problem = await probe(connection, within=2.0)
        missed = 0 if problem is None else missed + 1
        if problem is None and not revmon.broker_reachable:
            revmon.broker_reachable = True
            log.info("broker_reachable", servers=connection.bootstrap_servers)
        elif missed >= misses and revmon.broker_reachable:
            revmon.broker_reachable = False
            log.warning("broker_unreachable", servers=connection.bootstrap_servers, problem=problem)
        await asyncio.sleep(every)


def _phase(revmon: Revmon) -> str:
    if not revmon.broker_reachable:
        return "waiting for the broker to answer again"
    if not revmon.ready():
        return "joining the consumer group and recovering state"
    return "processing"


async def serve(revmon: Revmon) -> None:
    """The `run` daemon: the worker and its web endpoints until the task is cancelled
    (by SIGINT or SIGTERM through `revmon.shutdown.run`).

    Raises:
        WebError: the web port cannot be bound.
        RevmonError: the worker stopped by itself (a crash).
    """
    settings = revmon.settings
    server = WebServer.for_settings(settings, revmon.registry, revmon.ready)
    await run_until(revmon, lambda: False, limit=math.inf, web=server)


async def run_until(
    revmon: Revmon,
    done: Callable[[], bool],
    *,
    limit: float,
    poll: float = 0.1,
    web: WebServer | None = None,
) -> bool:
    """Start the worker in this event loop, wait until `done()` or `limit` seconds, stop it.

    Returns whether `done()` became true.

    Raises:
        WebError: the web port cannot be bound.
        RevmonError: the worker stopped by itself (a crash).
    """
    app = revmon.app
    if web is not None:
        await web.start()
        log.info("web_started", url=web.url, metrics=f"{web.url}/metrics")
    watch = asyncio.create_task(watch_broker(revmon))
    deadline = time.monotonic() + limit
    try:
        shutdown.phase("joining the consumer group")
        await app.start()
        while time.monotonic() < deadline:
            if done():
                return True
            if app.should_stop or app.crashed:
                raise RevmonError(f"the worker stopped: {app.crash_reason!r}")
            shutdown.phase(_phase(revmon))
            await asyncio.sleep(poll)
        return done()
    finally:
        shutdown.phase("stopping the worker")
        log.info("worker_stopping")
        watch.cancel()
        await app.stop()
        if web is not None:
            await web.stop()

"""Running a built worker: as the `run` daemon, or inside a command until a condition holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import faust
import structlog
from mode import Service

from revmon.app import Revmon
from revmon.web import WebServer

log = structlog.get_logger(__name__)


class WebService(Service):  # type: ignore[misc]  # mode is untyped
    """The HTTP endpoints as a mode service, so they live and die with the worker."""

    def __init__(self, server: WebServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server

    async def on_start(self) -> None:
        await self.server.start()
        log.info("web_started", url=self.server.url, metrics=f"{self.server.url}/metrics")

    async def on_stop(self) -> None:
        await self.server.stop()


def run_forever(revmon: Revmon, *, loglevel: str = "WARNING") -> None:
    """Run the worker and its web endpoints until SIGINT or SIGTERM.

    Raises:
        SystemExit: always, when the worker stops (mode's Worker exits that way).
    """
    settings = revmon.settings
    server = WebServer.for_settings(settings, revmon.registry, revmon.ready)
    worker = faust.Worker(
        revmon.app,
        WebService(server),
        loglevel=loglevel,
        quiet=True,
        redirect_stdouts=False,
        override_logging=False,
    )
    worker.execute_from_commandline()


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
    """
    app = revmon.app
    if web is not None:
        await web.start()
    await app.start()
    deadline = time.monotonic() + limit
    try:
        while time.monotonic() < deadline:
            if done():
                return True
            if app.should_stop or app.crashed:
                raise RuntimeError(f"worker stopped: {app.crash_reason!r}")
            await asyncio.sleep(poll)
        return done()
    finally:
        await app.stop()
        if web is not None:
            await web.stop()

"""The HTTP endpoints: /metrics (Prometheus text), /healthz (alive), /readyz (ready to serve)."""

from __future__ import annotations

import socket
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from revmon.errors import WebError
from revmon.exposition import render


def make_app(registry: CollectorRegistry, ready: Callable[[], bool]) -> web.Application:
    """The aiohttp application serving the three endpoints."""

    async def metrics(_: web.Request) -> web.Response:
        body = render(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(
            status=503,
            text="not ready: joining the group, recovering state, or the broker does not answer\n",
        )

    application = web.Application()
    application.router.add_get("/metrics", metrics)
    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", readyz)
    return application


def check_bindable(host: str, port: int) -> None:
    """Fail before anything starts when `host:port` cannot be bound (port 0: any port).

    Raises:
        WebError: the port is in use, or the address is not this machine's.
    """
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebError(f"cannot serve on {host}:{port} (web_host): {exc.strerror}") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise WebError(
                f"cannot serve on {host}:{port} (web_host, web_port): {exc.strerror}"
            ) from exc


class WebServer:
    """Serves `make_app` on host:port; started before the worker joins its group."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> None:
        self._host = host
        self._port = port
        self._runner = web.AppRunner(make_app(registry, ready), access_log=None)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}"

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            WebError: the address cannot be bound (most often: the port is in use).
        """
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise WebError(
                f"cannot serve on {self._host}:{self._port} (web_host, web_port): "
                f"{exc.strerror or exc}"
            ) from exc

    async def stop(self) -> None:
        """Stop serving."""
        await self._runner.cleanup()

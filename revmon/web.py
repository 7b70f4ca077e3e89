"""The HTTP endpoints: /metrics (Prometheus text), /healthz (alive), /readyz (ready to serve).

With a `web_config` (revmon.webconfig) they serve HTTPS and, with `basic_auth_users`,
every path but /healthz needs basic auth, as exporter-toolkit does for any exporter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from revmon.errors import WebError
from revmon.exposition import render
from revmon.settings import Settings
from revmon.webconfig import PasswordCache, WebConfig, load_web_config

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
#: Paths a liveness probe reaches without credentials (SPEC §9).
OPEN_PATHS = frozenset({"/healthz"})
#: Password checks running at once; the rest wait, so a flood of guesses cannot take every core.
_CONCURRENT_CHECKS = 2


def _credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) of a `Basic` Authorization header, or None when absent or malformed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _auth_middleware(
    config: WebConfig,
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    cache = PasswordCache()
    checks = asyncio.Semaphore(_CONCURRENT_CHECKS)

    async def allowed(request: web.Request) -> bool:
        given = _credentials(request.headers.get("Authorization"))
        if given is None:
            return False
        user, password = given
        if cache.known(user, password):
            return True
        async with checks:
            ok = await asyncio.to_thread(config.check_password, user, password)
        if ok:
            cache.add(user, password)
        return ok

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in OPEN_PATHS and not await allowed(request):
            return web.Response(
                status=401,
                text="Unauthorized\n",
                headers={"WWW-Authenticate": 'Basic realm="revmon", charset="UTF-8"'},
            )
        return await handler(request)

    return middleware


def _headers_middleware(
    headers: dict[str, str],
) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        response.headers.update(headers)
        return response

    return middleware


def make_app(
    registry: CollectorRegistry, ready: Callable[[], bool], config: WebConfig | None = None
) -> web.Application:
    """The aiohttp application serving the three endpoints (behind `config`'s basic auth)."""

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

    middlewares: list[Any] = []  # aiohttp's own Middleware type is not exported
    if config is not None and config.headers:
        middlewares.append(_headers_middleware(dict(config.headers)))
    if config is not None and config.auth_required:
        middlewares.append(_auth_middleware(config))
    application = web.Application(middlewares=middlewares, client_max_size=64 * 1024)
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
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        ready: Callable[[], bool],
        config: WebConfig | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._tls = config.tls if config is not None else None
        self._runner = web.AppRunner(make_app(registry, ready, config), access_log=None)

    @classmethod
    def for_settings(
        cls, settings: Settings, registry: CollectorRegistry, ready: Callable[[], bool]
    ) -> WebServer:
        """The server `web_host`, `web_port` and `web_config` describe."""
        config = load_web_config(settings.web_config) if settings.web_config else None
        return cls(settings.web_host, settings.web_port, registry, ready, config)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        """Bind and serve.

        Raises:
            WebError: the address cannot be bound (most often: the port is in use).
        """
        await self._runner.setup()
        context = self._tls.context() if self._tls is not None else None
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=context)
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

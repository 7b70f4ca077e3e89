"""Headless Chromium (Debian package) driven over the DevTools protocol: open a page as a
person would, collect its console errors and network requests, measure, screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from revmon.broker import free_port
from tests.conftest import require_tool


@dataclass
class Visit:
    """What the browser saw: errors in the console, requests made, what a script measured."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    measured: Any = None
    screenshot: bytes = b""


class _Session:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, visit: Visit) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._visit = visit

    async def pump(self) -> None:
        async for message in self._ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._waiting.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(str(data["error"])))
                else:
                    future.set_result(data.get("result", {}))
                continue
            self._on_event(data["method"], data.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            texts = [str(a.get("value", a.get("description", ""))) for a in params["args"]]
            self._visit.errors.append("console: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            self._visit.errors.append("exception: " + str(params["exceptionDetails"]))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self._visit.errors.append("log: " + str(params["entry"].get("text")))
        elif method == "Network.requestWillBeSent":
            self._visit.requests.append(str(params["request"]["url"]))
        self._events.setdefault(method, asyncio.Event()).set()

    async def call(self, method: str, **params: Any) -> Any:
        ident = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_str(json.dumps({"id": ident, "method": method, "params": params}))
        return await asyncio.wait_for(future, 30)

    async def event(self, method: str) -> None:
        await asyncio.wait_for(self._events.setdefault(method, asyncio.Event()).wait(), 30)


async def _visit(port: int, url: str, script: str, width: int) -> Visit:
    visit = Visit()
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 30
        targets: list[dict[str, Any]] = []
        while not targets:
            try:
                async with http.get(f"http://127.0.0.1:{port}/json/list") as reply:
                    targets = [t for t in await reply.json() if t["type"] == "page"]
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            session = _Session(ws, visit)
            pump = asyncio.create_task(session.pump())
            for domain in ("Runtime", "Log", "Network", "Page"):
                await session.call(f"{domain}.enable")
            await session.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=900,
                deviceScaleFactor=1,
                mobile=False,
            )
            await session.call("Page.navigate", url=url)
            await session.event("Page.loadEventFired")
            result = await session.call("Runtime.evaluate", expression=script, returnByValue=True)
            visit.measured = result["result"].get("value")
            metrics = await session.call("Page.getLayoutMetrics")
            height = int(metrics["cssContentSize"]["height"])
            await session.call(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            shot = await session.call("Page.captureScreenshot", format="png")
            visit.screenshot = base64.b64decode(shot["data"])
            pump.cancel()
    return visit


def visit(page: Path, script: str, *, width: int = 1360) -> Visit:
    """Open `page` in headless Chromium, run `script` (its value is `measured`), screenshot it."""
    binary = require_tool("chromium")
    port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",  # containers run the tests as root
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return asyncio.run(_visit(port, page.resolve().as_uri(), script, width))
        finally:
            proc.terminate()
            proc.wait(timeout=10)

"""Alert delivery: message shapes, the Alertmanager queue (retry, drops), ordered writes."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiohttp import web

from revmon.alerts import Instance, Status
from revmon.notify import (
    AlertmanagerSender,
    TopicWriter,
    alertmanager_alert,
    rfc3339,
    topic_message,
)

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


def instance(status: Status = Status.FIRING, **overrides: Any) -> Instance:
    """A firing instance of the E:R rule."""
    base: dict[str, Any] = {
        "rule": "ExpenseToRevenueHigh",
        "fingerprint": "6dea3a6daa1c6d4b",
        "labels": (
            ("alertname", "ExpenseToRevenueHigh"),
            ("severity", "warning"),
            ("window", "90d"),
        ),
        "status": status,
        "active_at": T0 - 86400,
        "value": 0.7,
        "fired_at": T0,
        "annotations": (("summary", "E:R 0.7"),),
    }
    if status is Status.RESOLVED:
        base.update(resolved_at=T0 + 3600, resolved_wall=T0 + 3600)
    base.update(overrides)
    return Instance(**base)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        pytest.param(T0, "2026-09-21T14:13:20Z", id="whole-seconds"),
        pytest.param(T0 + 0.25, "2026-09-21T14:13:20.250Z", id="milliseconds"),
    ],
)
def test_rfc3339(seconds: float, text: str) -> None:
    """Times are RFC 3339 in UTC with a Z."""
    assert rfc3339(seconds) == text


def test_topic_message_of_a_firing_and_a_resolved_instance() -> None:
    """SPEC §6: every field, `ends_at` null while firing, `as_of` the transition's instant."""
    firing = topic_message(instance(), 0.6)
    assert firing == {
        "alertname": "ExpenseToRevenueHigh",
        "fingerprint": "6dea3a6daa1c6d4b",
        "labels": {"alertname": "ExpenseToRevenueHigh", "severity": "warning", "window": "90d"},
        "annotations": {"summary": "E:R 0.7"},
        "status": "firing",
        "value": 0.7,
        "threshold": 0.6,
        "starts_at": "2026-09-21T14:13:20Z",
        "ends_at": None,
        "as_of": "2026-09-21T14:13:20Z",
        "schema": 1,
    }
    resolved = topic_message(instance(Status.RESOLVED), 0.6)
    assert resolved["status"] == "resolved"
    assert resolved["ends_at"] == resolved["as_of"] == "2026-09-21T15:13:20Z"
    assert resolved["starts_at"] == "2026-09-21T14:13:20Z"


def test_alertmanager_alert_ends_in_the_future_while_firing_and_when_resolved_after() -> None:
    """endsAt: now + 4 × max(interval, resend) while firing; the resolution time after."""
    firing = alertmanager_alert(
        instance(), wall=T0 + 10, ends_after=240, generator_url="http://revmon/metrics"
    )
    assert firing["startsAt"] == "2026-09-21T14:13:20Z"
    assert firing["endsAt"] == rfc3339(T0 + 250)
    assert firing["generatorURL"] == "http://revmon/metrics"
    assert firing["labels"]["alertname"] == "ExpenseToRevenueHigh"
    resolved = alertmanager_alert(
        instance(Status.RESOLVED), wall=T0 + 7200, ends_after=240, generator_url=""
    )
    assert resolved["endsAt"] == rfc3339(T0 + 3600)


def test_a_resolution_in_event_time_ahead_of_the_wall_clock_ends_now() -> None:
    """On the event clock the resolution instant may lie ahead of the wall clock: it ends now."""
    resolved = alertmanager_alert(
        instance(Status.RESOLVED), wall=T0 + 60, ends_after=240, generator_url=""
    )
    assert resolved["endsAt"] == rfc3339(T0 + 60)


class FakeAlertmanager:
    """A real HTTP server answering `POST /api/v2/alerts` with scripted statuses."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.received: list[list[dict[str, Any]]] = []
        self.auth: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self.auth.append(request.headers.get("Authorization"))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status)

    async def serve(self) -> tuple[web.AppRunner, int]:
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner, port


async def until(condition: Any, limit: float = 10.0) -> None:
    """Poll until `condition()` holds, for at most `limit` seconds."""
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel a sender's task and wait until it has closed its connections."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_alertmanager_sender_retries_with_backoff_until_it_is_back() -> None:
    """Refused sends are counted `failed` and retried; then the alert arrives, `sent`."""
    server = FakeAlertmanager([503, 503])
    runner, port = await server.serve()
    counts: dict[str, int] = {}
    sender = AlertmanagerSender(
        f"http://127.0.0.1:{port}",
        lambda result, n: counts.__setitem__(result, counts.get(result, 0) + n),
        auth=("user", "secret"),
    )
    task = asyncio.create_task(sender.run())
    try:
        sender.push({"fp1": {"labels": {"alertname": "A"}}})
        await until(lambda: counts.get("sent") == 1)
        assert counts == {"failed": 2, "sent": 1}
        assert len(server.received) == 3
        assert server.auth[-1] == "Basic dXNlcjpzZWNyZXQ="
        assert sender.pending() == 0
    finally:
        await stop(task)
        await runner.cleanup()


async def test_unreachable_alertmanager_never_raises_and_the_queue_drops_the_oldest() -> None:
    """Nothing listens: sends fail quietly; past capacity the oldest alerts are dropped."""
    counts: dict[str, int] = {}
    sender = AlertmanagerSender(
        "http://127.0.0.1:9",  # discard port: nothing answers
        lambda result, n: counts.__setitem__(result, counts.get(result, 0) + n),
        capacity=2,
        timeout=0.5,
    )
    task = asyncio.create_task(sender.run())
    try:
        sender.push({f"fp{i}": {"labels": {"i": str(i)}} for i in range(3)})
        assert counts["dropped"] == 1
        await until(lambda: counts.get("failed", 0) >= 2)
        assert not task.done()
        assert sender.pending() == 2
    finally:
        await stop(task)


def test_a_newer_payload_replaces_a_queued_one() -> None:
    """The queue keeps one payload per fingerprint: the newest."""
    sender = AlertmanagerSender("http://127.0.0.1:9", lambda result, n: None)
    sender.push({"fp": {"v": 1}})
    sender.push({"fp": {"v": 2}})
    assert sender.pending() == 1


async def test_topic_writer_retries_a_failed_record_and_keeps_the_order() -> None:
    """A record that fails is retried before the next; alerts-topic records are counted."""
    written: list[bytes] = []
    failures = [RuntimeError("broker down")]

    async def send(topic: str, key: bytes | None, value: bytes | None) -> None:
        if failures:
            raise failures.pop()
        written.append(value or b"")

    counts: dict[str, int] = {}
    writer = TopicWriter(
        send, lambda result, n: counts.__setitem__(result, counts.get(result, 0) + n), "alerts"
    )
    task = asyncio.create_task(writer.run())
    try:
        writer.put("state", b"k", b"1")
        writer.put("alerts", b"k", b"2")
        assert await writer.drain(10)
        assert written == [b"1", b"2"]
        assert counts == {"sent": 1}
    finally:
        await stop(task)

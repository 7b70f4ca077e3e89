"""Alert delivery (SPEC §5, §6): the alerts topic and Alertmanager, each behind its own queue.

Prometheus' `notifier` is the model: evaluation only enqueues, a sender per receiver
drains its queue with a timeout per attempt, and `revmon_alert_notifications_total
{receiver,result}` counts what was `sent`, what `failed` and what was `dropped`. Unlike
Prometheus, a failed attempt is retried with backoff rather than discarded, so an
Alertmanager that comes back gets every firing alert even before the next re-send; the
Alertmanager queue keeps the newest payload per fingerprint and, when full, drops the
oldest. Nothing here ever blocks event processing or raises into the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog

from revmon.alerts import Instance, Status

log = structlog.get_logger(__name__)

SCHEMA_VERSION = 1
#: Alerts the Alertmanager queue holds (Prometheus' default queue capacity).
QUEUE_CAPACITY = 10_000
#: Alerts per POST (Prometheus' default batch size).
BATCH_SIZE = 64
SEND_TIMEOUT = 10.0
BACKOFF_START = 0.5
BACKOFF_MAX = 30.0


def rfc3339(seconds: float) -> str:
    """Unix seconds as RFC 3339 in UTC (`2026-12-06T10:00:00Z`, milliseconds when present)."""
    moment = datetime.fromtimestamp(seconds, UTC)
    text = moment.isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def topic_message(instance: Instance, threshold: float) -> dict[str, Any]:
    """The alerts-topic value of an instance's transition (to firing, or to resolved).

    Every field is taken from the instance as stored, so a message lost in a crash can be
    rebuilt exactly by the next owner. `as_of` is the evaluation instant of the transition.
    """
    labels = dict(instance.labels)
    firing = instance.status is Status.FIRING
    as_of = instance.fired_at if firing else instance.resolved_at
    return {
        "alertname": labels["alertname"],
        "fingerprint": instance.fingerprint,
        "labels": labels,
        "annotations": dict(instance.annotations),
        "status": "firing" if firing else "resolved",
        "value": instance.value,
        "threshold": threshold,
        "starts_at": rfc3339(instance.fired_at or instance.active_at),
        "ends_at": None if firing else rfc3339(instance.resolved_at or 0.0),
        "as_of": rfc3339(as_of or instance.active_at),
        "schema": SCHEMA_VERSION,
    }


def alertmanager_alert(
    instance: Instance, *, wall: float, ends_after: float, generator_url: str
) -> dict[str, Any]:
    """One alert of Alertmanager's `POST /api/v2/alerts`, as Prometheus sends it.

    A firing alert ends at `wall + ends_after` unless it is sent again; a resolved one
    ends when it resolved (no later than now: in the event clock that instant is event time).
    """
    if instance.status is Status.FIRING:
        ends = wall + ends_after
    else:
        ends = min(instance.resolved_at or wall, wall)
    starts = instance.fired_at if instance.fired_at is not None else instance.active_at
    return {
        "labels": dict(instance.labels),
        "annotations": dict(instance.annotations),
        "startsAt": rfc3339(min(starts, ends)),
        "endsAt": rfc3339(ends),
        "generatorURL": generator_url,
    }


Count = Callable[[str, int], None]  # (result, how many)


@dataclass
class _Backoff:
    delay: float = BACKOFF_START

    def failed(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, BACKOFF_MAX)
        return delay

    def succeeded(self) -> None:
        self.delay = BACKOFF_START


class AlertmanagerSender:
    """Posts alerts to Alertmanager from a bounded queue, retrying with backoff.

    `auth` is (user, password) for basic auth; the URL itself carries no credentials
    (the configuration refuses them, since URLs end up in logs).
    """

    def __init__(
        self,
        url: str,
        count: Count,
        *,
        auth: tuple[str, str] | None = None,
        capacity: int = QUEUE_CAPACITY,
        timeout: float = SEND_TIMEOUT,
    ) -> None:
        self._headers = {"Content-Type": "application/json"}
        if auth is not None:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(*auth)
        self._endpoint = f"{url.rstrip('/')}/api/v2/alerts"
        self._count = count
        self._capacity = capacity
        self._timeout = timeout
        self._queue: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._wake = asyncio.Event()
        self._backoff = _Backoff()

    def push(self, alerts: dict[str, dict[str, Any]]) -> None:
        """Queue alerts by fingerprint; a newer payload replaces a queued one."""
        for fingerprint, alert in alerts.items():
            self._queue.pop(fingerprint, None)
            self._queue[fingerprint] = alert
        dropped = 0
        while len(self._queue) > self._capacity:
            self._queue.popitem(last=False)
            dropped += 1
        if dropped:
            self._count("dropped", dropped)
            log.warning("alertmanager_queue_full", dropped=dropped)
        self._wake.set()

    def pending(self) -> int:
        """Alerts waiting to be sent."""
        return len(self._queue)

    async def run(self) -> None:
        """Send until cancelled."""
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._timeout)
        ) as session:
            while True:
                if not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                batch = list(self._queue.items())[:BATCH_SIZE]
                if await self._post(session, [alert for _, alert in batch]):
                    for fingerprint, alert in batch:
                        if self._queue.get(fingerprint) is alert:
                            del self._queue[fingerprint]
                    self._count("sent", len(batch))
                    self._backoff.succeeded()
                else:
                    self._count("failed", len(batch))
                    await asyncio.sleep(self._backoff.failed())

    async def _post(self, session: aiohttp.ClientSession, alerts: list[dict[str, Any]]) -> bool:
        try:
            async with session.post(
                self._endpoint,
                data=orjson.dumps(alerts),
                headers=self._headers,
            ) as response:
                if response.status // 100 == 2:
                    return True
                log.warning("alertmanager_refused", status=response.status)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("alertmanager_unreachable", error=type(exc).__name__)
        return False


Send = Callable[[str, bytes | None, bytes | None], Awaitable[None]]  # topic, key, value


class TopicWriter:
    """Writes records in order (alert state, then alerts-topic messages), retrying with backoff.

    `send` raises on failure; a failed record is retried, never skipped, so the order of
    state and messages holds.
    """

    def __init__(self, send: Send, count: Count, alerts_topic: str) -> None:
        self._send = send
        self._count = count
        self._alerts_topic = alerts_topic
        self._queue: asyncio.Queue[tuple[str, bytes, bytes | None]] = asyncio.Queue()
        self._backoff = _Backoff()
        self._busy = False

    def put(self, topic: str, key: bytes, value: bytes | None) -> None:
        """Queue one record (None: a tombstone)."""
        self._queue.put_nowait((topic, key, value))

    def idle(self) -> bool:
        """True when every queued record has been written."""
        return self._queue.empty() and not self._busy

    async def drain(self, limit: float) -> bool:
        """Wait up to `limit` seconds for every queued record; True when all were written."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=limit)
        return self.idle()

    async def run(self) -> None:
        """Write until cancelled."""
        while True:
            topic, key, value = await self._queue.get()
            self._busy = True
            try:
                while True:
                    try:
                        await self._send(topic, key, value)
                    except Exception as exc:  # any broker failure: retried, never skipped
                        if topic == self._alerts_topic:
                            self._count("failed", 1)
                        log.warning("alert_record_not_written", topic=topic, error=str(exc))
                        await asyncio.sleep(self._backoff.failed())
                        continue
                    self._backoff.succeeded()
                    if topic == self._alerts_topic:
                        self._count("sent", 1)
                    break
            finally:
                self._busy = False
                self._queue.task_done()

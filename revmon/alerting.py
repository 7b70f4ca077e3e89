"""The alert room of a worker: one evaluator per deployment, its state on a compacted topic.

Only the worker that exports the revenue metrics (the owner of input partition 0, SPEC §4)
evaluates the rules. Every instance's state (pending since, firing since, resolved at) is
written to the compacted topic `<app_id>-alerts-state`, keyed by fingerprint, before the
alerts-topic message of a transition; a worker that becomes the owner (after a restart,
a rebalance, or a kill of the previous owner) first reads that topic and the alerts topic
to their true end, takes the instances over (so `for` keeps counting and nothing fires
twice), and sends again any transition message the previous owner had stored but not
yet delivered. Delivery never blocks processing: evaluation only enqueues.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiokafka import AIOKafkaProducer
from mode import Service

from revmon.alerts import Evaluator, Instance, Series, Status, firing_counts
from revmon.broker import MAX_RECORD_BYTES, Connection
from revmon.compacted import read_table
from revmon.errors import BrokerError
from revmon.kpi.ledger import Evaluation
from revmon.notify import (
    AlertmanagerSender,
    TopicWriter,
    alertmanager_alert,
    topic_message,
)
from revmon.settings import Settings

log = structlog.get_logger(__name__)

#: How long a worker that loses ownership waits for its queued state to be written.
RELEASE_DRAIN = 5.0

Samples = Callable[[], Evaluation | None]
Count = Callable[[str, str, int], None]  # receiver, result, how many
FiringGauge = Callable[[str, str, int], None]  # alertname, severity, count


def state_topic(settings: Settings) -> str:
    """The compacted topic of the alert instances' state."""
    return f"{settings.worker.app_id}-alerts-state"


class AlertService(Service):  # type: ignore[misc]  # mode is untyped
    """Evaluates the rules on the owner, stores their state, and hands transitions to notify.

    `tick()` is synchronous: called from a timer every `alerts_interval` (`run`), or by
    the caller (`replay`, `on_timer=False`, after each slice it has applied).
    """

    def __init__(
        self,
        settings: Settings,
        connection: Connection,
        *,
        samples: Samples,
        is_owner: Callable[[], bool],
        set_firing: FiringGauge,
        count: Count,
        wall_clock: Callable[[], float],
        generator_url: str,
        on_timer: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._settings = settings
        self._connection = connection
        self._samples = samples
        self._is_owner = is_owner
        self._set_firing = set_firing
        self._count = count
        self._wall = wall_clock
        self._generator_url = generator_url
        self._on_timer = on_timer
        self._state_topic = state_topic(settings)
        self._alerts_topic = settings.topics.alerts
        self._thresholds = {rule.name: rule.threshold for rule in settings.alerts}
        self.evaluator = Evaluator(settings.alerts)
        #: Every alerts-topic message of this process, in order (`replay --alerts-out`).
        self.messages: list[dict[str, Any]] = []
        self._owner = False
        self._loaded = False
        self._last_resend = float("-inf")
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._writer = TopicWriter(self._send, self._count_topic, self._alerts_topic)
        self._alertmanager = (
            AlertmanagerSender(
                settings.alertmanager_url,
                self._count_alertmanager,
                auth=settings.alertmanager_auth,
            )
            if settings.alertmanager_url
            else None
        )
        self._running: list[asyncio.Task[None]] = []

    # -- life cycle ------------------------------------------------------------------
    async def on_start(self) -> None:
        """Connect the producer and start the writer, the sender and the loop."""
        self._producer = AIOKafkaProducer(
            **self._connection.aiokafka_options(),
            acks="all",
            linger_ms=5,
            max_request_size=MAX_RECORD_BYTES,
        )
        await self._producer.start()
        self._running.append(asyncio.create_task(self._writer.run()))
        if self._alertmanager is not None:
            self._running.append(asyncio.create_task(self._alertmanager.run()))
        self._running.append(asyncio.create_task(self._evaluation_loop()))
        for rule in self._settings.alerts:
            self._set_firing(rule.name, rule.severity, 0)

    async def on_stop(self) -> None:
        """Write what is queued (briefly), then stop every task and the producer."""
        await self._writer.drain(RELEASE_DRAIN)
        for task in self._running:
            task.cancel()
        for task in self._running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            await self._producer.stop()

    def idle(self) -> bool:
        """True when every stored state and alerts-topic message has been written."""
        return self._writer.idle()

    @property
    def evaluating(self) -> bool:
        """True while this worker is the owner and has taken the alert state over."""
        return self._owner and self._loaded

    async def drain(self, limit: float) -> bool:
        """Wait up to `limit` seconds for the queued records."""
        return await self._writer.drain(limit)

    async def on_revoked(self) -> None:
        """Partitions are being revoked: if this worker was the owner, stop and write out."""
        if self._owner:
            self._release()
            await self._writer.drain(RELEASE_DRAIN)

    # -- evaluation ------------------------------------------------------------------
    def tick(self) -> None:
        """Evaluate every rule now, if this worker is the owner and has taken over."""
        if not self._is_owner():
            if self._owner:
                self._release()
            return
        if not self._owner:
            self._owner, self._loaded = True, False
            self._wake.set()  # take over in the loop: reading the topics awaits
            return
        if not self._loaded:
            return
        found = self._samples()
        if found is None:
            return
        now, samples = found.now, found.samples
        wall = self._wall()
        series = [Series(s.name, tuple(sorted(s.labels)), s.value) for s in samples]
        outcome = self.evaluator.evaluate(series, now=now, wall=wall)
        for instance in outcome.changed:
            self._writer.put(self._state_topic, instance.fingerprint.encode(), instance.to_json())
        for fingerprint in outcome.removed:
            self._writer.put(self._state_topic, fingerprint.encode(), None)
        for transition in outcome.transitions:
            self._announce(transition.instance)
        self._update_gauge()
        self._resend(force=bool(outcome.transitions))

    def _announce(self, instance: Instance) -> None:
        message = topic_message(instance, self._thresholds[instance.rule])
        self.messages.append(message)
        self._writer.put(self._alerts_topic, instance.fingerprint.encode(), orjson.dumps(message))
        log.info(
            "alert_" + message["status"],
            alertname=message["alertname"],
            fingerprint=instance.fingerprint,
            value=instance.value,
        )

    def _update_gauge(self) -> None:
        counts = firing_counts(self.evaluator.instances())
        for rule in self._settings.alerts:
            self._set_firing(rule.name, rule.severity, counts.get((rule.name, rule.severity), 0))

    def _release(self) -> None:
        self._owner = self._loaded = False
        self.evaluator.load([])
        self._update_gauge()
        log.info("alerts_released")

    def _resend(self, *, force: bool = False) -> None:
        """Every firing (and recently resolved) instance to Alertmanager, on a change or when
        `alerts_resend` has passed."""
        if self._alertmanager is None or not self._loaded:
            return
        wall = self._wall()
        if not force and wall - self._last_resend < self._settings.alerts_resend:
            return
        self._last_resend = wall
        ends_after = 4 * max(self._settings.alerts_interval, self._settings.alerts_resend)
        alerts = {
            i.fingerprint: alertmanager_alert(
                i, wall=wall, ends_after=ends_after, generator_url=self._generator_url
            )
            for i in self.evaluator.instances()
            if i.status in (Status.FIRING, Status.RESOLVED)
        }
        if alerts:
            self._alertmanager.push(alerts)

    # -- takeover --------------------------------------------------------------------
    async def _take_over(self) -> bool:
        """Read the stored instances and the alerts topic; re-send what was not delivered.

        Returns False when the topics could not be read (the loop tries again).
        """
        try:
            stored = await read_table(self._connection, self._state_topic)
            delivered = await read_table(self._connection, self._alerts_topic)
        except BrokerError as exc:
            log.warning("alerts_takeover_failed", error=str(exc))
            return False
        if not self._owner:
            return True  # lost the ownership meanwhile
        instances = [Instance.from_json(raw) for raw in stored.values()]
        self.evaluator.load(instances)
        for instance in self.evaluator.instances():
            if instance.status not in (Status.FIRING, Status.RESOLVED):
                continue
            expected = topic_message(instance, self._thresholds[instance.rule])
            last = delivered.get(instance.fingerprint.encode())
            if last is None or not _same_transition(orjson.loads(last), expected):
                self._announce(instance)  # stored before a crash, never delivered
        self._loaded = True
        self._last_resend = float("-inf")
        self._update_gauge()
        log.info("alerts_taken_over", instances=len(instances))
        return True

    async def _evaluation_loop(self) -> None:
        interval = self._settings.alerts_interval
        while True:
            self._wake.clear()
            if self._owner and not self._loaded and not await self._take_over():
                await asyncio.sleep(interval)
                continue
            if self._on_timer:
                self.tick()
            else:
                self._check_owner()
            self._resend()
            if self._owner and not self._loaded:
                continue  # became the owner just now: take over at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)

    def _check_owner(self) -> None:
        """Notice a change of owner between the caller's ticks."""
        owner = self._is_owner()
        if owner and not self._owner:
            self._owner, self._loaded = True, False
        elif not owner and self._owner:
            self._release()

    # -- sending ---------------------------------------------------------------------
    async def _send(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        if self._producer is None:
            raise RuntimeError("not started")
        await self._producer.send_and_wait(topic, value, key=key)

    def _count_topic(self, result: str, n: int) -> None:
        self._count("topic", result, n)

    def _count_alertmanager(self, result: str, n: int) -> None:
        self._count("alertmanager", result, n)


def _same_transition(last: dict[str, Any], expected: dict[str, Any]) -> bool:
    keys = ("status", "starts_at", "ends_at")
    return all(last.get(k) == expected[k] for k in keys)

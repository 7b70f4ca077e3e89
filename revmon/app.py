"""The composition root: the Faust app, its topics, tables and batch handlers from `Settings`."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import structlog
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import CollectorRegistry

from revmon.alerting import AlertService, state_topic
from revmon.broker import Connection, ensure_topics
from revmon.delivery import BatchHandler, use_batch_delivery
from revmon.engine import MetricEngine
from revmon.events import Decoder
from revmon.exposition import Freshness, KpiCollector, OperationsMetrics
from revmon.kpi.ledger import Evaluation, Sample
from revmon.partials import Exchange, Shared, combine
from revmon.processors import AccountIngest, Engine, Ingest, Message, fact_messages
from revmon.publish import Publisher
from revmon.settings import Settings
from revmon.stale import discard_stale_local_state
from revmon.state import RECORD_LIMIT
from revmon.storage import FaustDeadLetters, FaustStateTable
from revmon.webconfig import load_web_config

log = structlog.get_logger(__name__)

STATE_TABLE = "state"
ACCOUNTS_TABLE = "accounts"


@dataclass
class FactsSent:
    """Account facts sent to the accounts topic: how many are unacknowledged, and where
    the acknowledged ones landed (what `replay` waits for the account stage to reach)."""

    pending: int = 0
    last_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def sent(self) -> None:
        """One more fact is on its way."""
        self.pending += 1

    def acked(self, future: Any) -> None:
        """Faust's delivery callback: the broker took the fact (or failed, and it stays pending)."""
        metadata = future.result()
        self.pending -= 1
        tp = (metadata.topic, metadata.partition)
        self.last_offsets[tp] = max(self.last_offsets.get(tp, -1), metadata.offset)


@dataclass
class Revmon:
    """A built worker: the Faust app plus what the web endpoints and commands read."""

    settings: Settings
    app: Any
    ingest: Ingest
    registry: CollectorRegistry
    metrics: OperationsMetrics
    exchange: Exchange
    accounts: AccountIngest | None = None
    facts: FactsSent = field(default_factory=lambda: FactsSent())
    assigned: bool = False
    owned: set[int] = field(default_factory=set)
    owned_accounts: set[int] = field(default_factory=set)
    on_batch: list[Callable[[], None]] = field(default_factory=list)
    after_flush: list[Callable[[], None]] = field(default_factory=list)
    #: Topics delivered in batches besides the input, with their handlers.
    routes: list[tuple[Any, BatchHandler]] = field(default_factory=list)
    #: `now` and every SPEC §3.1–§3.8 sample, or None when this worker does not export them.
    kpi_samples: Callable[[], Evaluation | None] = lambda: None
    alerting: AlertService | None = None
    connection: Connection | None = None
    #: False while the broker does not answer (revmon.worker.watch_broker).
    broker_reachable: bool = True

    def newest(self) -> float | None:
        """The greatest `occurred_at` applied on any partition, this worker's or another's."""
        values = [v for v in (self.ingest.newest_event(), self.exchange.newest()) if v is not None]
        return max(values) if values else None

    def now(self, wall_clock: Callable[[], float]) -> float | None:
        """The evaluation instant (SPEC §4): the wall clock, or the newest event time."""
        return wall_clock() if self.settings.clock == "wall" else self.newest()

    def state_ready(self) -> bool:
        """True once partitions are assigned and table state is recovered."""
        recovery = self.app.tables.recovery
        return self.assigned and recovery.completed.is_set() and not self.app.rebalancing

    def ready(self) -> bool:
        """True once state is ready, while the broker answers (/readyz, `revmon_ready`)."""
        return self.state_ready() and self.broker_reachable

    def load_owned_state(self) -> None:
        """Recover every owned partition's state now, not at its first message.

        A partition that gets no new input after a restart must still export what it
        holds. Called when Faust has recovered its tables (`on_rebalance_complete`).
        """
        for partition in self.owned:
            self.ingest.state(partition)
        if self.accounts is not None:
            for partition in self.owned_accounts:
                self.accounts.state(partition)

    def exports_kpis(self) -> bool:
        """True on the one worker that exports the revenue metrics: the owner of input
        partition 0, once ready (SPEC §4)."""
        # The state, not the broker: a broker outage pauses processing, but the numbers
        # (and the alerts on them) stay what they were instead of vanishing from /metrics.
        return 0 in self.owned and self.state_ready()

    def freshness(self) -> list[Freshness]:
        """Source freshness over the input partitions this worker owns (SPEC §3.9)."""
        topics = self.settings.topics
        out = []
        states = self.ingest.states()
        for source, topic in (
            ("crm", topics.crm),
            ("marketing", topics.marketing),
            ("billing", topics.billing),
        ):
            received = [s.received_by_topic[topic] for s in states if topic in s.received_by_topic]
            newest = [s.newest_by_topic[topic] for s in states if topic in s.newest_by_topic]
            out.append(Freshness(source, max(received, default=None), max(newest, default=None)))
        return out

    def owned_keys(self) -> set[str]:
        """Partial keys (`i<p>`, `a<p>`) of the partitions this worker owns."""
        return {f"i{p}" for p in self.owned} | {f"a{p}" for p in self.owned_accounts}


def faust_broker_options(connection: Connection) -> dict[str, Any]:
    """Faust's broker settings for the connection (TLS/SASL credentials when configured)."""
    sec = connection.security
    options: dict[str, Any] = {
        "broker": ";".join(f"kafka://{s}" for s in connection.bootstrap_servers.split(","))
    }
    context = connection.ssl_context()
    if sec.sasl_mechanism is not None:
        password = sec.sasl_password.get_secret_value() if sec.sasl_password else None
        options["broker_credentials"] = faust.SASLCredentials(
            username=sec.sasl_username,
            password=password,
            mechanism=sec.sasl_mechanism,
            ssl_context=context,
        )
    elif context is not None:
        options["broker_credentials"] = faust.SSLCredentials(context)
    return options


def build(
    settings: Settings,
    connection: Connection,
    *,
    registry: CollectorRegistry | None = None,
    engine: Engine | None = None,
    wall_clock: Callable[[], float] = time.time,
    alerts_on_timer: bool = True,
) -> Revmon:
    """Build the worker for `settings`; nothing connects until the app starts.

    Alert rules are evaluated every `alerts_interval` (`run`), or, without
    `alerts_on_timer`, only when the caller ticks them (`replay`, after each slice).
    """
    worker = settings.worker
    app = faust.App(
        worker.app_id,
        **faust_broker_options(connection),
        store=f"{_store(settings)}://",
        datadir=str(worker.data_dir),
        topic_partitions=settings.partitions,
        topic_allow_declare=True,
        table_standby_replicas=0,
        broker_rebalance_timeout=worker.rebalance_timeout,
        # Tansu answers a JoinGroup only after half the session timeout: keep it short.
        broker_session_timeout=worker.session_timeout,
        broker_heartbeat_interval=min(3.0, worker.session_timeout / 5),
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        autodiscover=False,
        producer_acks=-1,
        # Kafka's default `max.message.bytes`: every record revmon writes fits a cluster
        # with default limits (SPEC §9), and one that would not fails here, in tests too.
        producer_max_request_size=RECORD_LIMIT,
    )
    inputs = app.topic(
        *settings.topics.inputs,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    dead_letter = app.topic(
        settings.topics.dead_letter, key_serializer="raw", value_serializer="raw"
    )
    table = app.Table(
        STATE_TABLE,
        key_type=bytes,  # bytes in and out: the "raw" codec on both sides of the changelog
        value_type=bytes,
        partitions=settings.partitions,
        help="revmon per-partition state journal",
    )
    # A local store ahead of its changelog (a recreated cluster) is rebuilt, not fatal.
    discard_stale_local_state(app)
    registry = registry if registry is not None else CollectorRegistry()
    lead, opportunity = settings.funnels.lead, settings.funnels.opportunity
    decoder = Decoder(
        currency=settings.currency,
        lead_stages=lead.all_stages,
        opportunity_stages=opportunity.all_stages,
        lead_open=lead.stages,
        opportunity_open=opportunity.stages,
    )
    state_table = FaustStateTable(table)
    holder: dict[str, Any] = {}
    metrics = OperationsMetrics(
        registry,
        settings,
        watermark=lambda: holder["revmon"].now(wall_clock),
        newest_event=lambda: holder["revmon"].newest(),
        wall_clock=wall_clock,
        clock_owner=lambda: 0 in holder["revmon"].owned,
        ready=lambda: holder["revmon"].ready(),
        sources=lambda: holder["revmon"].freshness(),
    )
    engine = engine if engine is not None else MetricEngine(settings)
    ingest = Ingest(
        decoder=decoder,
        metrics=metrics,
        table=state_table,
        dead_letters=FaustDeadLetters(dead_letter),
        engine=engine,
        dedupe_horizon=settings.dedupe_horizon,
        wall_clock=wall_clock,
        snapshot_every=worker.snapshot_every,
    )
    holder["ingest"] = ingest
    exchange = Exchange(connection, partials_topic(settings))
    app.add_dependency(exchange)
    revmon = Revmon(settings, app, ingest, registry, metrics, exchange, connection=connection)
    holder["revmon"] = revmon
    if isinstance(engine, MetricEngine):
        evaluate = _share(revmon, engine, wall_clock)
        _publish(revmon, connection, evaluate, wall_clock)
        _wire_accounts(revmon, engine)
        _wire_alerts(revmon, connection, wall_clock, on_timer=alerts_on_timer)
    _wire(revmon, inputs, state_table)
    return revmon


def _wire_alerts(
    revmon: Revmon,
    connection: Connection,
    wall_clock: Callable[[], float],
    *,
    on_timer: bool,
) -> None:
    """The alert room: evaluated on the exporting worker, on a timer or when ticked."""
    settings = revmon.settings
    host = f"[{settings.web_host}]" if ":" in settings.web_host else settings.web_host
    tls = settings.web_config is not None and load_web_config(settings.web_config).tls
    scheme = "https" if tls else "http"
    service = AlertService(
        settings,
        connection,
        samples=revmon.kpi_samples,
        is_owner=revmon.exports_kpis,
        set_firing=revmon.metrics.set_firing,
        count=revmon.metrics.count_notifications,
        wall_clock=wall_clock,
        generator_url=f"{scheme}://{host}:{settings.web_port}/metrics",
        on_timer=on_timer,
    )
    revmon.alerting = service
    revmon.app.add_dependency(service)


def _store(settings: Settings) -> str:
    """The table store: RocksDB keeps state across restarts, but the embedded broker's
    changelogs die with it, so local state beside it would describe a log that is gone."""
    if settings.broker == "embedded":
        return "memory"
    return settings.worker.store


def accounts_topic(settings: Settings) -> str:
    """The internal topic of account facts, keyed by account (the account stage's input)."""
    return f"{settings.worker.app_id}-accounts"


def partials_topic(settings: Settings) -> str:
    """The compacted topic the workers of one app share their partials on."""
    return f"{settings.worker.app_id}-partials"


async def prepare_topics(settings: Settings, connection: Connection) -> None:
    """Create every topic a worker needs that does not exist yet.

    Raises:
        BrokerError: the cluster cannot be reached or refuses.
    """
    topics = settings.topics
    compacted = [topics.metrics, partials_topic(settings), state_topic(settings)]
    names = [
        *topics.inputs,
        topics.dead_letter,
        topics.alerts,
        accounts_topic(settings),
        *compacted,
    ]
    await ensure_topics(connection, names, settings.partitions, compacted=compacted)


def _share(
    revmon: Revmon, engine: MetricEngine, wall_clock: Callable[[], float]
) -> Callable[[], Evaluation | None]:
    """Export the revenue metrics from the owner of partition 0; share partials every second.

    Returns the evaluation both exports use (None on any worker but the owner).
    """
    exchange = revmon.exchange

    def evaluate() -> Evaluation | None:
        if not revmon.exports_kpis():
            return None
        now = revmon.now(wall_clock) or wall_clock()
        local = engine.partition_partials(now)
        partials = combine(local, exchange.remote, revmon.owned_keys())
        return Evaluation(now, engine.samples(now, partials))

    def samples() -> list[Sample] | None:
        evaluation = evaluate()
        return None if evaluation is None else evaluation.samples

    revmon.kpi_samples = evaluate
    revmon.registry.register(KpiCollector(samples, revmon.settings.currency))

    every = set(range(revmon.settings.partitions))

    async def share() -> None:
        if not revmon.state_ready():
            return  # still recovering: what we hold now is not what we own
        now = revmon.now(wall_clock)
        if now is None or (revmon.owned >= every and revmon.owned_accounts >= every):
            return  # this worker owns every partition: no other worker needs our partials
        newest = {f"i{s.partition}": s.newest for s in revmon.ingest.states()}
        entries = {
            key: Shared(now, newest.get(key), parts)
            for key, parts in engine.partition_partials(now).items()
        }
        await exchange.share(entries)

    revmon.app.timer(min(1.0, revmon.settings.publish_interval), name="share_partials")(share)
    return evaluate


def _publish(
    revmon: Revmon,
    connection: Connection,
    evaluate: Callable[[], Evaluation | None],
    wall_clock: Callable[[], float],
) -> None:
    """The metrics topic (SPEC §6), written by whoever exports the revenue metrics."""
    settings = revmon.settings
    publisher = Publisher(
        connection,
        settings.topics.metrics,
        evaluate=evaluate,
        interval=settings.publish_interval,
        sent=revmon.metrics.metric_messages.inc,
        wall_clock=wall_clock,
    )
    revmon.app.add_dependency(publisher)
    inputs = set(settings.topics.inputs)

    async def revoked(app_: Any, revoked: Any, **_: Any) -> None:
        if any(tp.partition == 0 and tp.topic in inputs for tp in revoked):
            publisher.lost()

    revmon.app.on_partitions_revoked.connect(revoked)


def _wire_accounts(revmon: Revmon, engine: MetricEngine) -> None:
    """The account stage: facts out after each input batch, and the handler that applies them."""
    settings, app = revmon.settings, revmon.app
    topic = app.topic(
        accounts_topic(settings),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    table = FaustStateTable(
        app.Table(
            ACCOUNTS_TABLE,
            key_type=bytes,
            value_type=bytes,
            partitions=settings.partitions,
            help="revmon account-stage state journal",
        )
    )
    accounts = revmon.accounts = AccountIngest(
        table=table,
        engine=engine,
        dedupe_horizon=settings.dedupe_horizon,
        snapshot_every=settings.worker.snapshot_every,
    )

    partitions = list(range(settings.partitions))
    partitioner = DefaultPartitioner()

    def send_facts() -> None:
        # After the batch's state record: Faust flushes its producer before it commits
        # input offsets, so a fact can only be lost together with uncommitted input,
        # which a restarted worker re-routes. One message per account partition and
        # batch: a message per fact would cost more than the input itself.
        grouped: dict[int, list[bytes]] = {}
        for fact in engine.outbox:
            p = partitioner(fact.account_id.encode(), partitions, partitions)
            grouped.setdefault(p, []).append(fact.to_json())
        engine.outbox.clear()
        for partition, facts in grouped.items():
            for value in fact_messages(facts):
                revmon.facts.sent()
                topic.send_soon(value=value, partition=partition, callback=revmon.facts.acked)

    revmon.after_flush.append(send_facts)

    def apply_facts(batch: Sequence[Any]) -> None:
        accounts.handle(_messages(batch, table))
        accounts.flush()

    revmon.routes.append((topic, apply_facts))


def _messages(batch: Sequence[Any], table: FaustStateTable) -> list[Message]:
    """revmon's view of a fetched batch; each partition's table writes go to its changelog."""
    messages = []
    last: dict[int, Any] = {}
    for msg in batch:
        value = msg.value if isinstance(msg.value, bytes) else b""
        messages.append(Message(msg.topic, msg.partition, msg.offset, msg.key, value))
        last[msg.partition] = msg
    for partition, msg in last.items():
        table.anchor(partition, msg)
    return messages


def _wire(revmon: Revmon, inputs: Any, state_table: FaustStateTable) -> None:
    app, ingest = revmon.app, revmon.ingest

    def process(batch: Sequence[Any]) -> None:
        ingest.handle(_messages(batch, state_table))
        ingest.flush()
        for send in revmon.after_flush:
            send()
        for callback in revmon.on_batch:
            callback()

    # Tansu reports end offsets short: the batch consumer also recovers tables up to the
    # true end of each changelog (revmon.endoffsets).
    use_batch_delivery(
        app, [(inputs, process), *revmon.routes], max_batch=revmon.settings.worker.batch_size
    )

    inputs_names = set(revmon.settings.topics.inputs)
    facts_topic = accounts_topic(revmon.settings)

    async def _revoked(app_: Any, revoked: Any, **_: Any) -> None:
        # Another worker may own these partitions next: drop them, recover on return.
        partitions = {tp.partition for tp in revoked if tp.topic in inputs_names}
        if 0 in partitions and revmon.alerting is not None:
            await revmon.alerting.on_revoked()
        revmon.owned -= partitions
        ingest.forget(partitions)
        account_partitions = {tp.partition for tp in revoked if tp.topic == facts_topic}
        revmon.owned_accounts -= account_partitions
        if revmon.accounts is not None:
            revmon.accounts.forget(account_partitions)

    async def _assigned(app_: Any, assigned: Any, **_: Any) -> None:
        revmon.assigned = True
        revmon.owned |= {tp.partition for tp in assigned if tp.topic in inputs_names}
        revmon.owned_accounts |= {tp.partition for tp in assigned if tp.topic == facts_topic}
        log.info("partitions_assigned", partitions=sorted({tp.partition for tp in assigned}))

    async def _recovered(app_: Any, **_: Any) -> None:
        revmon.load_owned_state()

    app.on_partitions_revoked.connect(_revoked)
    app.on_partitions_assigned.connect(_assigned)
    app.on_rebalance_complete.connect(_recovered)

"""The Faust application: created from `Settings`, with explicit, stable
agent, table and topic names (Faust derives changelog topic names from them:
`<app_id>-forewarn-subscribers-changelog`, ...), raw (bytes) serializers so
decoding stays ours, RocksDB tables with changelogs, and the web server bound
to localhost with the table/router/graph/stats views off.

Agents are a few lines each: read the key's record, let the `Processor` do
the work, send the outputs, and hand the new record to the agent's
`Inflight`, which writes it and acks the input once the outputs are
acknowledged. Each agent runs with concurrency 1 and is the only writer of
its tables, so a record is never updated by two coroutines at once.

`Wiring` is declarations and agents only: what watches the running worker
(lag, stalls, recovery, the live clock, rule reloads) is `stream.supervisor`,
and every Faust private name is in `stream.faust_runtime`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import faust

from rules.ruleset import RuleSet
from sinks import OutputTopic
from stream.connection import ssl_context
from stream.continuity import Continuity, refetch
from stream.decoding import RawRecord
from stream.faust_runtime import (
    ChangelogTable,
    fetch_tuned_transport,
    redelivered,
    unbounded_producer_buffer,
)
from stream.inflight import Inflight
from stream.metrics import Metrics
from stream.processor import NETWORK, SUBSCRIBERS, Outcome, Processor
from stream.reload import RuleReloader
from stream.settings import SecurityProtocol, Settings
from stream.supervisor import (
    MEMBERS_TABLE,
    NETWORK_AGENT,
    NETWORK_TABLE,
    SUBSCRIBER_AGENT,
    SUBSCRIBER_TABLE,
    Supervisor,
)

log = logging.getLogger("forewarn.app")

PRODUCER_BUFFER_MESSAGES = 10_000


def broker_credentials(settings: Settings) -> Any:
    k = settings.kafka
    ctx = ssl_context(settings)
    if k.security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
        return faust.SASLCredentials(
            username=k.sasl_username,
            password=k.sasl_password.get_secret_value() if k.sasl_password else None,
            mechanism=k.sasl_mechanism.value,
            ssl_context=ctx,
        )
    if ctx is not None:
        return faust.SSLCredentials(ctx)
    return None


def create_app(
    settings: Settings, rules: RuleSet, metrics: Metrics, reloader: RuleReloader
) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{host}" for host in settings.kafka.bootstrap_servers],
        broker_credentials=broker_credentials(settings),
        key_serializer="raw",
        value_serializer="raw",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        datadir=str(settings.state_dir),
        store="rocksdb://",
        table_standby_replicas=0,
        web_enabled=True,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        web_stats_enabled=False,
        web_metrics_enabled=False,
        web_in_thread=False,
        producer_linger_ms=5,
        broker_commit_interval=1.0,
        # Faust's fetch loop also commits inline every N acked messages
        # (default 10,000): it stops fetching until the commit, which first
        # flushes the producer buffer, is done (1.5-2.5 s under load, seen
        # as p95 latencies of ~3 s at 80% load). The 1 s timer commits
        # without stopping the fetcher, and our acks already wait for the
        # outputs and the changelog (stream.inflight), so count-based
        # commits add nothing but the stall.
        broker_commit_every=COMMIT_EVERY_NEVER,
        broker_session_timeout=settings.kafka.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_seconds / 3),
    )
    app.transport = fetch_tuned_transport(app, settings.kafka)
    Wiring(app, settings, Processor(settings, rules, metrics), metrics, reloader)
    return app


COMMIT_EVERY_NEVER = 2**62  # acked messages between inline commits: never


def raw_topic(app: faust.App, name: str) -> Any:
    return raw_topics(app, name)


def raw_table(app: faust.App, name: str, settings: Settings) -> Any:
    """What `app.Table` does, with our table class."""
    table = ChangelogTable(
        app,
        name=name,
        beacon=app.tables.beacon,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
        help=f"Forewarn state: {name}",
    )
    return app.tables.add(table)


class Wiring:
    """The declarations of one app (topics, tables, agents, timers, pages)
    and its two agents; timers and signals call its `Supervisor`."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        processor: Processor,
        metrics: Metrics,
        reloader: RuleReloader,
    ) -> None:
        self.app, self.settings, self.processor, self.metrics = app, settings, processor, metrics
        self.outputs = {
            OutputTopic.CUSTOMER_NOTICES: raw_topic(app, settings.topic("customer_notices")),
            OutputTopic.INTERVENTION_TASKS: raw_topic(app, settings.topic("intervention_tasks")),
            OutputTopic.DEAD_LETTERS: raw_topic(app, settings.topic("dead_letters")),
        }
        self.internal = {name: raw_topic(app, name) for name in settings.internal_topics}
        self.subscribers = raw_table(app, SUBSCRIBER_TABLE, settings)
        self.network = raw_table(app, NETWORK_TABLE, settings)
        self.members = raw_table(app, MEMBERS_TABLE, settings)
        self.continuity = Continuity(
            frozenset({settings.topic("customer_profiles"), settings.topic("maintenance_windows")})
        )
        self.inflight = {
            name: Inflight(self.output_failed) for name in (SUBSCRIBER_AGENT, NETWORK_AGENT)
        }
        self.supervisor = Supervisor(
            app,
            settings,
            processor,
            metrics,
            reloader,
            self.inflight,
            {
                SUBSCRIBER_TABLE: self.subscribers,
                NETWORK_TABLE: self.network,
                MEMBERS_TABLE: self.members,
            },
            {space: self.internal[processor.clocks[space]] for space in (SUBSCRIBERS, NETWORK)},
        )
        sup = self.supervisor
        p = processor
        subscriber_source = raw_topics(
            app,
            p.usage,
            p.billing,
            p.profiles,
            p.task_updates,
            p.intents,
            p.clocks[SUBSCRIBERS],
            p.subscriber_marks,
        )
        network_source = raw_topics(
            app,
            p.network_quality,
            p.membership,
            p.network_updates,
            p.clocks[NETWORK],
            p.windows,
            p.area_samples,
            p.marks,
        )
        app.agent(subscriber_source, name=SUBSCRIBER_AGENT, concurrency=1)(self.subscriber_agent)
        app.agent(network_source, name=NETWORK_AGENT, concurrency=1)(self.network_agent)

        async def health(web: Any, request: Any) -> Any:
            return web.json({"status": "ok"})

        async def ready(web: Any, request: Any) -> Any:
            ok = sup.ready and not self.app.rebalancing and sup.broker_ok
            body = {
                "ready": ok,
                "broker_reachable": sup.broker_ok,
                "rules_version": self.processor.rules.version,
            }
            return web.json(body, status=200 if ok else 503)

        app.page("/health")(health)
        app.page("/ready")(ready)
        app.timer(interval=5.0, name="forewarn-observe")(sup.observe)
        if settings.clock_tick_seconds:
            app.timer(interval=settings.clock_tick_seconds, name="forewarn-clock")(sup.tick)
        if settings.rules_poll_seconds:
            app.timer(interval=settings.rules_poll_seconds, name="forewarn-rules-poll")(
                sup.poll_rules
            )
        app.task(self.on_start)

    async def subscriber_agent(self, stream: Any) -> None:
        async for event in stream.noack().events():
            for e in await self.with_missing(event):
                await self.subscriber_record(e)

    async def network_agent(self, stream: Any) -> None:
        async for event in stream.noack().events():
            for e in await self.with_missing(event):
                await self.network_record(e)

    async def subscriber_record(self, event: Any) -> None:
        inflight = self.inflight[SUBSCRIBER_AGENT]
        started = time.perf_counter()
        raw = raw_record(event)
        outcome = self.processor.subscriber(
            raw,
            inflight.get(self.subscribers, raw.key),
            lambda key: inflight.get(self.subscribers, key),
        )
        await self.apply(inflight, event, outcome, raw, self.subscribers)
        self.metrics.processing.labels(SUBSCRIBER_AGENT).observe(time.perf_counter() - started)

    async def network_record(self, event: Any) -> None:
        inflight = self.inflight[NETWORK_AGENT]
        started = time.perf_counter()
        raw = raw_record(event)
        key = raw.key
        if raw.topic == self.processor.membership:
            outcome = self.processor.network(raw, inflight.get(self.members, key))
        else:
            outcome = self.processor.network(
                raw,
                inflight.get(self.network, key),
                lambda k: inflight.get(self.network, k),
                lambda k: inflight.get(self.members, k),
            )
        await self.apply(inflight, event, outcome, raw, self.network)
        self.metrics.processing.labels(NETWORK_AGENT).observe(time.perf_counter() - started)

    async def with_missing(self, event: Any) -> list[Any]:
        """The records Faust failed to deliver before this one, then this one
        (see `stream.continuity`)."""
        msg = event.message
        hole = self.continuity.check(msg.topic, msg.partition, msg.offset, msg.generation_id)
        if hole is None:
            return [event]
        records = await refetch(self.settings, msg.topic, msg.partition, *hole)
        log.warning(
            "records %s[%d]@%d..%d were not delivered by Faust; %d read directly and processed",
            msg.topic,
            msg.partition,
            hole[0],
            hole[1] - 1,
            len(records),
        )
        source = self.processor.sources.get(msg.topic, "unknown")
        self.metrics.gaps.labels(source).inc(len(records))
        missing = [redelivered(self.app, r, msg) for r in records]
        return [*missing, event]

    async def apply(
        self, inflight: Inflight, event: Any, outcome: Outcome, raw: RawRecord, table: Any
    ) -> None:
        """Send the outputs; state and the input's ack follow their acks (see
        `Inflight`). A send the producer refuses at once (not through its
        future) stops the worker like a refused ack does: the input is never
        acked, so it is replayed, never skipped."""
        try:
            sent = [
                await self.outputs[r.topic].send(key=r.key, value=r.value) for r in outcome.outputs
            ]
            sent += [
                await self.internal[topic].send(key=key, value=value)
                for topic, key, value in outcome.internal
            ]
        except Exception as exc:
            log.error("an output could not be sent for %s: %r; stopping", raw.where, exc)
            self.output_failed(exc)
            await asyncio.Event().wait()  # the crash ends this agent; never ack the input
            return
        writes: list[tuple[Any, bytes, bytes]] = []
        if raw.key is not None:
            if outcome.record is not None:
                writes.append((table, raw.key, outcome.record))
            if outcome.members is not None:
                writes.append((self.members, raw.key, outcome.members))
        writes.extend((table, key, value) for key, value in outcome.others.items())
        inflight.add(event, sent, writes)
        await inflight.room()
        if raw.partition is not None and raw.offset is not None:
            self.supervisor.positions[(raw.topic, raw.partition)] = raw.offset

    def output_failed(self, exc: BaseException) -> None:
        self.supervisor.crash(exc)

    async def on_start(self) -> None:
        # Faust pauses every stream whenever more than 100 changelog records
        # wait in its producer buffer, then drains it one record per
        # `wait_for` (a task and a timer each). Our own back-pressure
        # (`Inflight.limit`) already bounds what is in flight.
        unbounded_producer_buffer(self.app, PRODUCER_BUFFER_MESSAGES)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.supervisor.reload_rules)
        self.supervisor.ready = True


def raw_topics(app: faust.App, *names: str) -> Any:
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )


def raw_record(event: Any) -> RawRecord:
    msg = event.message
    return RawRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value)

"""The Faust application: created from `Settings`, with explicit, stable
agent and topic names, raw (bytes) serializers so decoding stays ours, no
Faust tables (state is `stream.store`, checkpointed by `stream.checkpoint`
to changelogs named `<app_id>-<table>-changelog`), and the web server bound
to localhost with the table/router/graph/stats views off.

Agents are a few lines each: wait until the record's partition is
recovered, read the key's record from the agent's tables (`stream.store`),
let the `Processor` do the work, queue the outputs on the checkpoint's
producer without awaiting their acks, write the new records to the tables
and hand the input to the agent's `Checkpointer`, which acks it once its
outputs and state are durable
(`stream.checkpoint`). Each agent runs with concurrency 1 and is the only
writer of its tables, so a record is never updated by two coroutines at once.

`Wiring` is declarations and agents only: what watches the running worker
(lag, stalls, recovery, the live clock, rule reloads) is `stream.supervisor`,
and every Faust private name is in `stream.faust_runtime`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import faust

from rules.ruleset import RuleSet
from sinks import OutputTopic
from stream.checkpoint import Changelogs, Checkpointer
from stream.connection import ssl_context
from stream.decoding import RawRecord
from stream.faust_runtime import LeanMonitor, fetch_tuned_transport
from stream.metrics import Metrics
from stream.processor import NETWORK, SUBSCRIBERS, Outcome, Processor
from stream.reload import RuleReloader
from stream.settings import (
    MEMBERS_TABLE,
    NETWORK_TABLE,
    SUBSCRIBER_TABLE,
    SecurityProtocol,
    Settings,
)
from stream.store import Table
from stream.supervisor import NETWORK_AGENT, SUBSCRIBER_AGENT, Supervisor

log = logging.getLogger("forewarn.app")


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
        store="memory://",  # no Faust tables: state is stream.store
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
        # without stopping the fetcher, and our acks come from checkpoints
        # (stream.checkpoint), so count-based commits add nothing but the stall.
        broker_commit_every=COMMIT_EVERY_NEVER,
        broker_session_timeout=settings.kafka.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.kafka.session_timeout_seconds / 3),
        monitor=LeanMonitor(),
    )
    app.transport = fetch_tuned_transport(app, settings.kafka)
    Wiring(app, settings, Processor(settings, rules, metrics), metrics, reloader)
    return app


COMMIT_EVERY_NEVER = 2**62  # acked messages between inline commits: never


def raw_topic(app: faust.App, name: str) -> Any:
    return raw_topics(app, name)


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
        self.outputs = {  # sent by the checkpoint's producer (`Changelogs.send`)
            OutputTopic.CUSTOMER_NOTICES: settings.topic("customer_notices"),
            OutputTopic.INTERVENTION_TASKS: settings.topic("intervention_tasks"),
            OutputTopic.DEAD_LETTERS: settings.topic("dead_letters"),
        }
        self.internal = {name: raw_topic(app, name) for name in settings.internal_topics}
        tables = settings.state_dir / "tables"
        self.subscribers = Table(
            SUBSCRIBER_TABLE, settings.changelog_topic(SUBSCRIBER_TABLE), tables
        )
        self.network = Table(NETWORK_TABLE, settings.changelog_topic(NETWORK_TABLE), tables)
        self.members = Table(MEMBERS_TABLE, settings.changelog_topic(MEMBERS_TABLE), tables)
        self.changelogs = Changelogs(settings)
        # the per-record histograms' children, looked up once (a labels() call costs ~2 µs)
        self.processing = {
            agent: metrics.processing.labels(agent) for agent in (SUBSCRIBER_AGENT, NETWORK_AGENT)
        }
        self.state = {
            name: Checkpointer(
                name,
                tables,
                self.changelogs,
                self.output_failed,
                settings.checkpoint_interval_seconds,
                settings.checkpoint_max_records,
            )
            for name, tables in (
                (SUBSCRIBER_AGENT, [self.subscribers]),
                (NETWORK_AGENT, [self.network, self.members]),
            )
        }
        p = processor
        self.spaces = {
            SUBSCRIBER_AGENT: {
                p.usage,
                p.billing,
                p.profiles,
                p.task_updates,
                p.intents,
                p.clocks[SUBSCRIBERS],
                p.subscriber_marks,
            },
            NETWORK_AGENT: {
                p.network_quality,
                p.membership,
                p.network_updates,
                p.clocks[NETWORK],
                p.windows,
                p.area_samples,
                p.marks,
            },
        }
        self.supervisor = Supervisor(
            app,
            settings,
            processor,
            metrics,
            reloader,
            self.state,
            {space: self.internal[processor.clocks[space]] for space in (SUBSCRIBERS, NETWORK)},
            self.changelogs,
            self.spaces,
        )
        sup = self.supervisor
        subscriber_source = raw_topics(app, *sorted(self.spaces[SUBSCRIBER_AGENT]))
        network_source = raw_topics(app, *sorted(self.spaces[NETWORK_AGENT]))
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
        app.on_partitions_revoked.connect(cast(Any, sup.on_revoked))
        app.on_partitions_assigned.connect(cast(Any, sup.on_assigned))
        app.on_before_shutdown.connect(cast(Any, sup.on_shutdown))
        app.task(self.on_start)

    async def subscriber_agent(self, stream: Any) -> None:
        await self.consume(stream, self.state[SUBSCRIBER_AGENT], self.subscriber_record)

    async def network_agent(self, stream: Any) -> None:
        await self.consume(stream, self.state[NETWORK_AGENT], self.network_record)

    async def consume(
        self,
        stream: Any,
        state: Checkpointer,
        record: Callable[[Checkpointer, Any], Awaitable[None]],
    ) -> None:
        """An agent's loop: the records Faust delivers, taken in batches of
        up to `agent_batch_records` (waiting at most `agent_batch_wait_ms`
        for one to fill) and processed back to back, so the processor's code
        and data stay in the CPU's caches instead of being evicted by Faust's
        per-record work in between (one worker: 3,924 -> 5,300 events/s).
        Nothing is acknowledged here: checkpoints acknowledge what was
        processed (`stream.checkpoint`), so a batch is no unit of delivery."""
        batch = self.settings.agent_batch_records
        if batch == 1:
            async for event in stream.noack().events():
                await self.handle(event, state, record)
            return
        wait = self.settings.agent_batch_wait_ms / 1000
        async for events in stream.noack_take(batch, within=wait):
            for event in events:
                await self.handle(event, state, record)

    async def handle(
        self,
        event: Any,
        state: Checkpointer,
        record: Callable[[Checkpointer, Any], Awaitable[None]],
    ) -> None:
        """One delivered record (after any Faust skipped before it,
        `Supervisor.delivered`) once its partition is recovered, under the
        checkpoint lock; a checkpoint at once when the agent holds as many
        unacked records as it may."""
        for e in await self.supervisor.delivered(event):
            await state.ready(e.message.partition)
            async with state.lock:
                await record(state, e)
            if state.full():
                await state.checkpoint()

    async def subscriber_record(self, state: Checkpointer, event: Any) -> None:
        started = time.perf_counter()
        raw = raw_record(event)
        p, table = raw.partition or 0, self.subscribers
        outcome = self.processor.subscriber(
            raw, table.get(p, raw.key) if raw.key else None, lambda key: table.get(p, key)
        )
        await self.apply(state, event, outcome, raw, table)
        self.processing[SUBSCRIBER_AGENT].observe(time.perf_counter() - started)

    async def network_record(self, state: Checkpointer, event: Any) -> None:
        started = time.perf_counter()
        raw = raw_record(event)
        p, key = raw.partition or 0, raw.key
        network, members = self.network, self.members
        if raw.topic == self.processor.membership:
            outcome = self.processor.network(raw, members.get(p, key) if key else None)
        else:
            outcome = self.processor.network(
                raw,
                network.get(p, key) if key else None,
                lambda k: network.get(p, k),
                lambda k: members.get(p, k),
            )
        await self.apply(state, event, outcome, raw, network)
        self.processing[NETWORK_AGENT].observe(time.perf_counter() - started)

    async def apply(
        self, state: Checkpointer, event: Any, outcome: Outcome, raw: RawRecord, table: Table
    ) -> None:
        """Send the outputs and write the new records; the checkpoint makes
        them durable and acks the input. A send the producer refuses at
        once (not through its future) stops the worker: the input is never
        acked, so it is replayed, never skipped."""
        send = self.changelogs.send
        try:
            sent = [await send(self.outputs[r.topic], r.key, r.value) for r in outcome.outputs]
            sent += [await send(topic, key, value) for topic, key, value in outcome.internal]
        except Exception as exc:
            log.error("an output could not be sent for %s: %r; stopping", raw.where, exc)
            self.output_failed(exc)
            await asyncio.Event().wait()  # the crash ends this agent; never ack the input
            return
        p = raw.partition or 0
        if raw.key is not None:
            if outcome.record is not None:
                table.put(p, raw.key, outcome.record)
            if outcome.members is not None:
                self.members.put(p, raw.key, outcome.members)
        for key, value in outcome.others.items():
            table.put(p, key, value)
        state.track(event, sent)
        if raw.offset is not None:
            self.supervisor.positions[(raw.topic, p)] = raw.offset

    def output_failed(self, exc: BaseException) -> None:
        self.supervisor.crash(exc)

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.supervisor.reload_rules)
        await self.supervisor.start()


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

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
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TP

from rules.ruleset import RuleSet
from sinks import OutputTopic
from sinks.routing import partition_of
from stream.admin import committed_offsets
from stream.connection import broker_reachable, ssl_context
from stream.continuity import (
    Continuity,
    Progress,
    Since,
    recovery_progress,
    refetch,
    stalled,
    unchanged_since,
)
from stream.decoding import RawRecord
from stream.faust_runtime import (
    ChangelogTable,
    fetch_tuned_transport,
    recovery_state,
    redelivered,
    rocksdb_partitions,
    unbounded_producer_buffer,
)
from stream.inflight import Inflight
from stream.metrics import Metrics
from stream.processor import NETWORK, SUBSCRIBERS, Outcome, Processor
from stream.reload import RuleReloader
from stream.settings import SecurityProtocol, Settings
from stream.ticks import needs_tick, tick_time

log = logging.getLogger("forewarn.app")

SUBSCRIBER_AGENT = "forewarn-subscribers"
NETWORK_AGENT = "forewarn-network"
SUBSCRIBER_TABLE = "forewarn-subscribers"
NETWORK_TABLE = "forewarn-network"
MEMBERS_TABLE = "forewarn-cell-members"
INFLIGHT_WARN_SECONDS = 30.0
STALL_SECONDS = 20.0  # a partition this quiet with records waiting: Faust lost them
RECOVERY_STALL_SECONDS = 60.0  # changelog recovery without progress this long: stuck
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
    """Topics, tables, agents, timers and pages of one app."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        processor: Processor,
        metrics: Metrics,
        reloader: RuleReloader,
    ) -> None:
        self.app, self.settings, self.processor = app, settings, processor
        self.metrics, self.reloader = metrics, reloader
        self.ready = False
        self.positions: dict[tuple[str, int], int] = {}  # last offset processed
        self.watching: dict[tuple[str, int], Since] = {}  # position, unchanged since
        self.recovery: Progress = None  # changelog records remaining, since when
        self.metrics_queues: set[str] = set()  # queues with open tasks at the last look
        self.rules_lock = asyncio.Lock()
        self.broker_ok = True  # the last reachability probe (observe)
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
        self.indexed: dict[str, set[int]] = {SUBSCRIBERS: set(), NETWORK: set()}
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
            ok = self.ready and not self.app.rebalancing and self.broker_ok
            body = {
                "ready": ok,
                "broker_reachable": self.broker_ok,
                "rules_version": self.processor.rules.version,
            }
            return web.json(body, status=200 if ok else 503)

        app.page("/health")(health)
        app.page("/ready")(ready)
        app.timer(interval=5.0, name="forewarn-observe")(self.observe)
        if settings.clock_tick_seconds:
            app.timer(interval=settings.clock_tick_seconds, name="forewarn-clock")(self.tick)
        if settings.rules_poll_seconds:
            app.timer(interval=settings.rules_poll_seconds, name="forewarn-rules-poll")(
                self.poll_rules
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
            self.positions[(raw.topic, raw.partition)] = raw.offset

    def output_failed(self, exc: BaseException) -> None:
        self.crashing = asyncio.ensure_future(self.app.crash(exc))

    async def on_start(self) -> None:
        # Faust pauses every stream whenever more than 100 changelog records
        # wait in its producer buffer, then drains it one record per
        # `wait_for` (a task and a timer each). Our own back-pressure
        # (`Inflight.limit`) already bounds what is in flight.
        unbounded_producer_buffer(self.app, PRODUCER_BUFFER_MESSAGES)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self.reload_rules)
        self.ready = True

    def reload_rules(self) -> None:
        """SIGHUP: load the rule files again, off the event loop."""
        self.reloading = asyncio.ensure_future(self.load_rules(self.reloader.reload))

    async def poll_rules(self) -> None:
        await self.load_rules(self.reloader.poll)

    async def load_rules(self, load: Any) -> None:
        """Rule files are read and compiled in a thread: a large or hostile
        file never stops event processing (parsing is bounded too, see
        `rules.document`). One load at a time; the swap is atomic."""
        async with self.rules_lock:
            rules = await asyncio.to_thread(load)
        if rules is not None:
            self.processor.rules = rules

    async def unstall(self) -> None:
        """Seek back partitions that have records waiting but whose position
        has not moved for `STALL_SECONDS` (see `stream.continuity`). Not
        while an agent waits on its own sends (outputs slow to be
        acknowledged): then positions stand still because the worker is
        busy, not because Faust lost records, and seeking back would only
        process them twice."""
        if self.app.rebalancing or any(sending_slowly(i) for i in self.inflight.values()):
            self.watching = {}  # start the quiet-time count afresh afterwards
            return
        now = time.monotonic()
        consumer = self.app.consumer
        assigned = {
            (tp.topic, tp.partition): tp
            for tp in consumer.assignment()
            if tp.topic in self.processor.sources  # inputs and internal topics
        }
        self.watching = {
            p: unchanged_since(self.watching.get(p), self.positions.get(p), now) for p in assigned
        }
        ends = {}
        for p, tp in assigned.items():
            high = consumer.highwater(tp)
            if high is not None and now - self.watching[p][1] >= STALL_SECONDS:
                ends[p] = high
        suspects = stalled(ends, self.positions, {})
        if not suspects:
            return
        committed = await asyncio.to_thread(committed_offsets, self.settings, set(suspects))
        for (topic, partition), done in committed.items():  # processed by the group
            self.positions[(topic, partition)] = max(
                self.positions.get((topic, partition), -1), done - 1
            )
        for (topic, partition), offset in stalled(ends, self.positions, committed).items():
            log.warning(
                "%s[%d] has records from offset %d that were not delivered; seeking back",
                topic,
                partition,
                offset,
            )
            self.metrics.stalls.labels(self.processor.sources.get(topic, "unknown")).inc()
            self.watching[(topic, partition)] = (None, now)  # give the seek time to deliver
            await consumer.seek(TP(topic, partition), offset)

    def recovery_stuck(self, now: float) -> bool:
        """True when changelog recovery has made no progress for
        `RECOVERY_STALL_SECONDS`. faust-streaming 0.15.3 can leave a changelog
        partition that moved away and back unfetched ("No event received for
        active tp ... since recovery start"); only a new consumer recovers it."""
        running, remaining = recovery_state(self.app)
        self.recovery, stuck = recovery_progress(
            self.recovery, running, remaining, now, RECOVERY_STALL_SECONDS
        )
        return stuck

    async def tick(self) -> None:
        """The live trigger (`stream.ticks`): index newly assigned
        partitions' due work, then send a clock record to each partition
        whose due work a tick would fire."""
        if not self.ready or self.app.rebalancing or recovery_state(self.app)[0]:
            return
        assignment = self.app.consumer.assignment()
        spaces = (
            (SUBSCRIBERS, self.processor.usage, self.subscribers),
            (NETWORK, self.processor.network_quality, self.network),
        )
        wall = time.time()
        for space, source, table in spaces:
            owned = {tp.partition for tp in assignment if tp.topic == source}
            self.index_partitions(space, owned, table)
            agenda = self.processor.agendas[space]
            clock_topic = self.internal[self.processor.clocks[space]]
            for partition in sorted(owned):
                stream_time = agenda.clock.get(partition)
                at = tick_time(stream_time, wall, self.settings.clock_live_window_seconds)
                if needs_tick(agenda.pending(partition), stream_time, at):
                    assert at is not None
                    value = json.dumps({"at": datetime.fromtimestamp(at, UTC).isoformat()})
                    await clock_topic.send(key=b"clock", value=value.encode(), partition=partition)

    def index_partitions(self, space: str, owned: set[int], table: Any) -> None:
        """Note the due work of partitions this worker just got (one scan of
        its local state); forget that of partitions it lost."""
        indexed = self.indexed[space]
        for partition in sorted(indexed - owned):
            self.processor.forget(space, partition)
            indexed.discard(partition)
        new = owned - indexed
        if not new:
            return
        started = time.perf_counter()
        n = self.settings.partitions
        found: dict[int, list[tuple[bytes, bytes]]] = {p: [] for p in new}
        for key, value in table.data.items():  # one pass; only records with due work
            if value and b'"due":' in value:
                partition = partition_of(key, n)
                if partition in found:
                    found[partition].append((key, value))
        for partition in sorted(new):
            keys = self.processor.index(space, partition, iter(found[partition]))
            indexed.add(partition)
            log.info("%s partition %d: %d keys with due work", space, partition, keys)
        log.info("indexed %s due work in %.2fs", space, time.perf_counter() - started)

    def observe_inflight(self) -> None:
        """In-flight records and the age of the oldest, whether it waits for
        its outputs' acks or its state's changelog ack."""
        for agent, inflight in self.inflight.items():
            self.metrics.inflight.labels(agent).set(len(inflight))
            oldest = inflight.oldest()
            self.metrics.inflight_oldest.labels(agent).set(oldest[0] if oldest else 0)
            if oldest and oldest[0] > INFLIGHT_WARN_SECONDS:
                log.warning(
                    "%s unacknowledged for %.0fs; state writes and commits wait",
                    raw_record(oldest[1]).where,
                    oldest[0],
                )

    async def observe(self) -> None:
        """Consumer lag per partition, in-flight records and local state size;
        stalled partitions are sought back; a stuck recovery stops the worker
        so that its supervisor starts a new one."""
        self.broker_ok = await broker_reachable(self.settings)
        self.metrics.broker_reachable.set(1 if self.broker_ok else 0)
        self.observe_inflight()
        if not self.broker_ok:
            log.warning("no bootstrap server of the Kafka cluster is reachable; not ready")
            return  # nothing else to look at without a broker
        if self.recovery_stuck(time.monotonic()):
            log.error(
                "changelog recovery made no progress for %.0fs (%d records remaining);"
                " stopping so a restarted worker recovers",
                RECOVERY_STALL_SECONDS,
                self.recovery[0] if self.recovery else -1,
            )
            self.crashing = asyncio.ensure_future(
                self.app.crash(RuntimeError("changelog recovery stuck"))
            )
            return
        await self.unstall()
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:
                continue
            done = self.positions.get((tp.topic, tp.partition))
            if high is not None and done is not None:
                self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(high - done - 1, 0))
        for space, agent in ((SUBSCRIBERS, SUBSCRIBER_AGENT), (NETWORK, NETWORK_AGENT)):
            self.metrics.due_keys.labels(agent).set(len(self.processor.agendas[space].due))
        counts = [
            a + b
            for a, b in zip(
                self.processor.workload[SUBSCRIBERS].by_queue(),
                self.processor.workload[NETWORK].by_queue(),
                strict=True,
            )
        ]
        opened, overdue, held = counts
        for queue in set(opened) | set(held) | set(self.metrics_queues):
            self.metrics.tasks_open.labels(queue).set(opened[queue])
            self.metrics.tasks_overdue.labels(queue).set(overdue[queue])
            self.metrics.tasks_held.labels(queue).set(held[queue])
        self.metrics_queues = set(opened) | set(held)
        windows = self.processor.workload[NETWORK].window_states(time.time())
        for state in ("planned", "in_force"):
            self.metrics.maintenance_windows.labels(state).set(windows[state])
        for name, table in (
            (SUBSCRIBER_TABLE, self.subscribers),
            (NETWORK_TABLE, self.network),
            (MEMBERS_TABLE, self.members),
        ):
            keys, size = state_size(table)
            self.metrics.state_keys.labels(name).set(keys)
            self.metrics.state_bytes.labels(name).set(size)


SLOW_SEND_SECONDS = 5.0


def sending_slowly(inflight: Inflight) -> bool:
    """The agent is held up by its own sends: its in-flight queue is full,
    or its oldest record has waited for acks longer than `SLOW_SEND_SECONDS`."""
    oldest = inflight.oldest()
    return len(inflight.queue) >= inflight.limit or (
        oldest is not None and oldest[0] > SLOW_SEND_SECONDS
    )


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


def state_size(table: Any) -> tuple[int, int]:
    """Estimated (keys, live bytes) across the table's RocksDB partitions."""
    keys = size = 0
    for db in rocksdb_partitions(table):
        try:
            keys += int(db.property_int_value("rocksdb.estimate-num-keys") or 0)
            size += int(db.property_int_value("rocksdb.estimate-live-data-size") or 0)
        except Exception:
            continue
    return keys, size

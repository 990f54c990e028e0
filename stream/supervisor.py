"""Supervision of a running worker, next to the pure decisions it acts on
(`stream.continuity`, `stream.ticks`): what `Wiring`'s timers and signal
handler call, so that the wiring itself is declarations and agents only.

- `observe` (every 5 s): broker reachability (readiness), in-flight records,
  consumer lag, due keys, open/overdue/held tasks, maintenance windows,
  local state size; a stuck changelog recovery stops the worker; stalled
  partitions are sought back (`unstall`).
- `delivered` (each input, from the agents): the records Faust failed to
  deliver before it, read directly and handed over first (`stream.continuity`).
- `start`, `on_assigned`, `on_revoked`, `on_shutdown`: each agent's
  checkpoints, and the recovery and hand-over of its partitions' state
  (`stream.checkpoint`).
- `tick` (every `clock_tick_seconds`): index newly assigned partitions' due
  work, and send a clock record to each live partition whose due work a
  tick would fire.
- `reload_rules` (SIGHUP) and `poll_rules`: load the rule files in a thread
  and swap the processor's rule set.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust
from faust.types import TP

from stream.admin import committed_offsets
from stream.checkpoint import Changelogs, Checkpointer
from stream.connection import broker_reachable
from stream.continuity import (
    Continuity,
    Progress,
    Since,
    recovery_progress,
    refetch,
    stalled,
    unchanged_since,
)
from stream.faust_runtime import redelivered
from stream.metrics import Metrics
from stream.processor import NETWORK, SUBSCRIBERS, Processor
from stream.reload import RuleReloader
from stream.settings import Settings
from stream.store import Table
from stream.ticks import needs_tick, tick_time

log = logging.getLogger("forewarn.supervisor")

SUBSCRIBER_AGENT = "forewarn-subscribers"
NETWORK_AGENT = "forewarn-network"
INFLIGHT_WARN_SECONDS = 30.0
STALL_SECONDS = 20.0  # a partition this quiet with records waiting: Faust lost them
RECOVERY_STALL_SECONDS = 60.0  # changelog recovery without progress this long: stuck


def highwater(consumer: Any, tp: TP) -> int | None:
    """The partition's end as the consumer last saw it, or None. The
    consumer's thread may revoke the partition between `assignment()` and
    this call, and aiokafka then raises (IllegalStateError): raised out of
    `observe`, it would end Faust's timer loop (no lag, stall or recovery
    watch from then on)."""
    try:
        high: int | None = consumer.highwater(tp)
    except Exception:
        return None
    return high


class Supervisor:
    """Watches one app's agents, tables and consumer; see the module docstring."""

    def __init__(
        self,
        app: faust.App,
        settings: Settings,
        processor: Processor,
        metrics: Metrics,
        reloader: RuleReloader,
        state: dict[str, Checkpointer],
        clocks: dict[str, Any],
        changelogs: Changelogs,
        spaces: dict[str, set[str]],
    ) -> None:
        self.app, self.settings, self.processor = app, settings, processor
        self.metrics, self.reloader = metrics, reloader
        self.state, self.clocks = state, clocks
        self.changelogs = changelogs
        self.spaces = spaces  # agent -> the topics it reads
        self.background: list[asyncio.Future[Any]] = []  # recoveries, checkpoint loops
        self.ready = False  # set once the app has started
        self.broker_ok = True  # the last reachability probe (observe)
        self.positions: dict[tuple[str, int], int] = {}  # last offset processed (the agents')
        self.watching: dict[tuple[str, int], Since] = {}  # position, unchanged since
        self.recovery: Progress = None  # changelog records remaining, since when
        self.metrics_queues: set[str] = set()  # queues with open tasks at the last look
        self.indexed: dict[str, set[int]] = {SUBSCRIBERS: set(), NETWORK: set()}
        self.rules_lock = asyncio.Lock()
        # compacted topics are exempt: holes are normal there
        exempt = {settings.topic("customer_profiles"), settings.topic("maintenance_windows")}
        self.continuity = Continuity(frozenset(exempt))

    # -- delivery: records Faust fetched but never handed over ---------------

    async def delivered(self, event: Any) -> list[Any]:
        """The records Faust failed to deliver before `event`, then `event`
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

    # -- state: checkpoints and recovery (`stream.checkpoint`) --------------

    async def start(self) -> None:
        """At app start: the changelog producer, then each agent's checkpoints."""
        await self.changelogs.start()
        for state in self.state.values():
            self.spawn(state.run(self.urgent))
        self.ready = True

    def urgent(self) -> bool:
        """A rebalance or a stop waits for the inputs' acks: checkpoint now."""
        return bool(self.app.rebalancing or self.app.should_stop)

    def partitions_of(self, tps: Any) -> dict[str, set[int]]:
        return {
            agent: {tp.partition for tp in tps if tp.topic in topics}
            for agent, topics in self.spaces.items()
        }

    async def on_revoked(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions go (`args[0]`; Faust has waited for their inputs' acks,
        so their state is checkpointed): stop using them."""
        for agent, partitions in self.partitions_of(args[0]).items():
            await self.state[agent].revoked(partitions)

    async def on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Recover the state of the partitions now held (`args[0]`) in the
        background; a record of a partition not recovered yet waits for it."""
        for agent, partitions in self.partitions_of(args[0]).items():
            self.spawn(self.state[agent].assigned(partitions))

    async def on_shutdown(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """After the consumer stopped: the last checkpoint. The databases
        stay open until the process ends (an agent may still hold a record)."""
        for state in self.state.values():
            await state.close()
        await self.changelogs.stop()

    def spawn(self, work: Any) -> None:
        """Run `work` in the background, keeping a reference until it ends."""
        self.background = [f for f in self.background if not f.done()]
        self.background.append(asyncio.ensure_future(work))

    # -- the rest ------------------------------------------------------------

    def crash(self, exc: BaseException) -> None:
        self.crashing = asyncio.ensure_future(self.app.crash(exc))

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
        if self.app.rebalancing or any(sending_slowly(c) for c in self.state.values()):
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
            high = highwater(consumer, tp)
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
            # On the consumer's thread (`seek_wait`), never `seek`: Faust's `seek`
            # runs aiokafka's on this thread, while the consumer thread may be in
            # `Fetcher.fetched_records` between listing the fetched partitions
            # and deleting each one it drained; a seek deleting the same one in
            # between made it raise KeyError and the fetcher, then the worker,
            # crash (seen draining a backlog on a loaded 2-core machine).
            await consumer.seek_wait({TP(topic, partition): offset})

    def recovering(self) -> tuple[bool, int]:
        """(changelog recovery running, records it has left), all agents."""
        found = [c.recovering() for c in self.state.values()]
        return any(r for r, _ in found), sum(n for _, n in found)

    def recovery_stuck(self, now: float) -> bool:
        """True when changelog recovery has made no progress for
        `RECOVERY_STALL_SECONDS` (the broker holds the changelog back)."""
        running, remaining = self.recovering()
        self.recovery, stuck = recovery_progress(
            self.recovery, running, remaining, now, RECOVERY_STALL_SECONDS
        )
        return stuck

    async def tick(self) -> None:
        """The live trigger (`stream.ticks`): index newly assigned
        partitions' due work, then send a clock record to each partition
        whose due work a tick would fire."""
        if not self.ready or self.app.rebalancing or self.recovering()[0]:
            return
        assignment = self.app.consumer.assignment()
        spaces = (
            (SUBSCRIBERS, self.processor.usage, self.state[SUBSCRIBER_AGENT]),
            (NETWORK, self.processor.network_quality, self.state[NETWORK_AGENT]),
        )
        wall = time.time()
        for space, source, state in spaces:
            owned = {tp.partition for tp in assignment if tp.topic == source}
            owned &= state.recovered
            self.index_partitions(space, owned, state.tables[0])
            agenda = self.processor.agendas[space]
            clock_topic = self.clocks[space]
            for partition in sorted(owned):
                stream_time = agenda.clock.get(partition)
                at = tick_time(stream_time, wall, self.settings.clock_live_window_seconds)
                if needs_tick(agenda.pending(partition), stream_time, at):
                    assert at is not None
                    value = json.dumps({"at": datetime.fromtimestamp(at, UTC).isoformat()})
                    await clock_topic.send(key=b"clock", value=value.encode(), partition=partition)

    def index_partitions(self, space: str, owned: set[int], table: Table) -> None:
        """Note the due work of partitions this worker just got (one scan of
        their local state); forget that of partitions it lost."""
        indexed = self.indexed[space]
        for partition in sorted(indexed - owned):
            self.processor.forget(space, partition)
            indexed.discard(partition)
        new = owned - indexed
        if not new:
            return
        started = time.perf_counter()
        for partition in sorted(new):
            keys = self.processor.index(space, partition, table.partitions[partition].items())
            indexed.add(partition)
            log.info("%s partition %d: %d keys with due work", space, partition, keys)
        log.info("indexed %s due work in %.2fs", space, time.perf_counter() - started)

    def observe_inflight(self) -> None:
        """Inputs waiting for their checkpoint, and the age of the oldest."""
        for agent, state in self.state.items():
            self.metrics.inflight.labels(agent).set(len(state))
            oldest = state.oldest()
            self.metrics.inflight_oldest.labels(agent).set(oldest or 0)
            if oldest and oldest > INFLIGHT_WARN_SECONDS:
                log.warning(
                    "%s: inputs unacknowledged for %.0fs; checkpoints and commits wait",
                    agent,
                    oldest,
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
            self.crash(RuntimeError("changelog recovery stuck"))
            return
        await self.unstall()
        consumer = self.app.consumer
        for tp in consumer.assignment():
            if tp.topic.endswith("-changelog"):
                continue
            high = highwater(consumer, tp)
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
        for checkpointer in self.state.values():
            for table in checkpointer.tables:
                keys, size = table.size()
                self.metrics.state_keys.labels(table.name).set(keys)
                self.metrics.state_bytes.labels(table.name).set(size)


SLOW_SEND_SECONDS = 5.0


def sending_slowly(state: Checkpointer) -> bool:
    """The agent is held up by its own sends: it has as many inputs waiting
    for a checkpoint as it may, or its oldest has waited longer than
    `SLOW_SEND_SECONDS` (its outputs or changelog are slow to be acknowledged)."""
    oldest = state.oldest()
    return state.full() or (oldest is not None and oldest > SLOW_SEND_SECONDS)

"""Topic administration: create the input and output topics with the right
partition counts and configs, verify co-partitioning, read the group's
committed offsets, and delete a finished run's topics.

All subscriber-keyed topics share `Settings.partitions` so that one worker
owns a subscriber's usage, billing and profile partitions together.
`customer-profiles` is compacted: the latest profile per subscriber is kept
forever and a null value deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.connection import kafka_python_config
from stream.settings import STATE_TABLES, Settings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str]


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic Forewarn reads or writes, as it should exist."""
    n = settings.partitions
    compacted = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
    specs = [
        TopicSpec(settings.topic("customer_profiles"), n, compacted),
        TopicSpec(settings.topic("maintenance_windows"), n, compacted),
    ]
    for logical in (
        "usage_events",
        "billing_events",
        "network_quality_events",
        "task_updates",
        "customer_notices",
        "intervention_tasks",
        "dead_letters",
    ):
        specs.append(TopicSpec(settings.topic(logical), n, {}))
    # ticks matter only until processed: a day of them is plenty
    short = {"retention.ms": str(24 * 3600 * 1000)}
    clocks = {
        settings.internal_topic("clock-subscribers"),
        settings.internal_topic("clock-network"),
    }
    specs.extend(
        TopicSpec(name, n, short if name in clocks else {}) for name in settings.internal_topics
    )
    # the state tables' changelogs: the latest record per key, kept forever
    specs.extend(TopicSpec(settings.changelog_topic(table), n, compacted) for table in STATE_TABLES)
    return specs


def create_topics(settings: Settings) -> list[str]:
    """Create missing topics; returns one line per topic saying what happened."""
    admin = KafkaAdminClient(**kafka_python_config(settings), client_id="forewarn-admin")
    report: list[str] = []
    try:
        existing = set(admin.list_topics())
        for spec in topic_specs(settings):
            if spec.name in existing:
                report.append(f"exists   {spec.name}")
                continue
            try:
                admin.create_topics(
                    [
                        NewTopic(
                            spec.name,
                            spec.partitions,
                            settings.replication_factor,
                            topic_configs=spec.config,
                        )
                    ]
                )
                report.append(f"created  {spec.name} partitions={spec.partitions}")
            except TopicAlreadyExistsError:
                report.append(f"exists   {spec.name}")
        report.extend(co_partitioning_problems(settings, admin))
    finally:
        admin.close()
    return report


def delete_topics(settings: Settings) -> list[str]:
    """Delete every topic of this app: its inputs and outputs (named with
    `topic_prefix`) and its internal and changelog topics (named after
    `app_id`). For benchmarks and tests, whose runs each have their own
    names; returns the topics deleted."""
    admin = KafkaAdminClient(**kafka_python_config(settings), client_id="forewarn-admin")
    try:
        mine = [
            t for t in admin.list_topics() if t.startswith((settings.topic_prefix, settings.app_id))
        ]
        if mine:
            admin.delete_topics(mine)
        return mine
    finally:
        admin.close()


def partition_counts(settings: Settings, admin: KafkaAdminClient) -> dict[str, int]:
    names = [*settings.input_topics, *settings.internal_topics]
    counts: dict[str, int] = {}
    for meta in admin.describe_topics(names):
        if not meta.get("error_code") and meta.get("partitions"):
            counts[meta.get("name") or meta["topic"]] = len(meta["partitions"])
    return counts


def co_partitioning_problems(settings: Settings, admin: KafkaAdminClient) -> list[str]:
    """Describe any topic the agents read whose partition count differs: state
    tables are partitioned like their source topics, so all must be equal."""
    counts = partition_counts(settings, admin)
    if len(set(counts.values())) <= 1:
        return []
    detail = ", ".join(f"{name}={count}" for name, count in sorted(counts.items()))
    return [
        f"error: topics read by the worker must have equal partition counts (set FOREWARN_PARTITIONS and recreate or add partitions): {detail}"
    ]


def committed_offsets(settings: Settings, tps: set[tuple[str, int]]) -> dict[tuple[str, int], int]:
    """The group's committed offsets of `tps` (blocking; run it in a thread)."""
    admin = KafkaAdminClient(**kafka_python_config(settings), client_id="forewarn-stall-check")
    try:
        offsets = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
    finally:
        admin.close()
    return {
        (tp.topic, tp.partition): meta.offset
        for tp, meta in offsets.items()
        if (tp.topic, tp.partition) in tps and meta.offset >= 0
    }

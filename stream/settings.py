"""Settings: one frozen model read from the environment (prefix `FOREWARN_`,
nested fields with `__`) and an optional `.env` file. Nothing else in Forewarn
reads `os.environ`.

Examples: `FOREWARN_KAFKA_BOOTSTRAP=broker1:9093,broker2:9093`,
`FOREWARN_KAFKA_SECURITY_PROTOCOL=SASL_SSL`, `FOREWARN_TOPICS__USAGE_EVENTS=usage`,
`FOREWARN_RULE_PATHS='["/etc/forewarn/rules"]'`.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rules.agenda import TimeBounds

DEFAULT_RULES_DIR = Path(__file__).resolve().parent.parent / "rules" / "default"


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class SaslMechanism(StrEnum):
    PLAIN = "PLAIN"
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class KafkaSettings(BaseModel):
    """How to reach the cluster, including SASL/SSL for secured clusters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str = "127.0.0.1:19092"
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: SaslMechanism = SaslMechanism.SCRAM_SHA_512
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_check_hostname: bool = True
    session_timeout_seconds: Annotated[float, Field(ge=6, le=300)] = Field(
        default=30.0,
        description="How long the group waits for a silent worker before its partitions move"
        " to the others (failover time after a crash; a clean stop leaves at once).",
    )

    fetch_min_bytes: Annotated[int, Field(ge=1, le=16 * 1024 * 1024)] = Field(
        default=32 * 1024,
        description="Bytes the broker gathers before answering a fetch (Kafka's"
        " fetch.min.bytes), bounded in time by fetch_max_wait_ms. Larger batches cost"
        " the worker much less per event under steady traffic (-30% CPU per event"
        " at 2,000 events/s); 1 answers at once with whatever there is.",
    )
    fetch_max_wait_ms: Annotated[int, Field(ge=0, le=5000)] = Field(
        default=30,
        description="Longest the broker holds a fetch waiting for fetch_min_bytes: the"
        " most latency the batching adds.",
    )

    @property
    def bootstrap_servers(self) -> list[str]:
        return [host.strip() for host in self.bootstrap.split(",") if host.strip()]


class TopicNames(BaseModel):
    """Logical topic names before `topic_prefix` is applied."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    usage_events: str = "usage-events"
    billing_events: str = "billing-events"
    network_quality_events: str = "network-quality-events"
    customer_profiles: str = "customer-profiles"
    task_updates: str = "task-updates"
    maintenance_windows: str = "maintenance-windows"
    customer_notices: str = "customer-notices"
    intervention_tasks: str = "intervention-tasks"
    dead_letters: str = "dead-letters"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="FOREWARN_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        frozen=True,
        extra="forbid",
    )

    app_id: str = Field(default="forewarn", description="Consumer group and table prefix.")
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicNames = TopicNames()
    topic_prefix: str = Field(default="", description="Prepended to every topic name.")
    partitions: Annotated[int, Field(ge=1, le=1024)] = 6
    replication_factor: Annotated[int, Field(ge=1, le=16)] = 1
    rule_paths: tuple[Path, ...] = (DEFAULT_RULES_DIR,)
    state_dir: Path = Path("var/state")
    web_host: str = "127.0.0.1"
    web_port: Annotated[int, Field(ge=1, le=65535)] = 6066
    rules_poll_seconds: Annotated[float, Field(ge=0)] = Field(
        default=2.0, description="How often rule files are checked for changes; 0 = SIGHUP only."
    )
    clock_tick_seconds: Annotated[float, Field(ge=0)] = Field(
        default=5.0,
        description="How often partitions with due work and no traffic get a clock tick;"
        " 0 = event time only.",
    )
    clock_live_window_seconds: Annotated[float, Field(gt=0)] = Field(
        default=900.0,
        description="A partition whose stream time is this close to the wall clock is live:"
        " its ticks follow the wall clock.",
    )
    event_time_future_seconds: Annotated[float, Field(gt=0)] = Field(
        default=7 * 86400.0,
        description="An event dated further ahead of its partition's stream time (in the"
        " worker: or of the wall clock, whichever is later) is dead-lettered as"
        " implausible_time.",
    )
    event_time_past_seconds: Annotated[float, Field(gt=0)] = Field(
        default=30 * 86400.0,
        description="An event dated further behind its partition's stream time is"
        " dead-lettered as implausible_time.",
    )
    checkpoint_interval_seconds: Annotated[float, Field(gt=0, le=60)] = Field(
        default=1.0,
        description="How often an agent's state changes go to the changelog and RocksDB"
        " and its inputs are acknowledged (docs/operations.md, State and checkpoints).",
    )
    checkpoint_max_records: Annotated[int, Field(ge=1, le=1_000_000)] = Field(
        default=10_000,
        description="An agent checkpoints sooner once it has processed this many inputs"
        " since the last checkpoint.",
    )
    agent_batch_records: Annotated[int, Field(ge=1, le=10_000)] = Field(
        default=200,
        description="Records an agent takes from Faust at a time and processes back to back"
        " (docs/operations.md, Throughput); 1 = one at a time, as Faust delivers them.",
    )
    agent_batch_wait_ms: Annotated[float, Field(ge=1, le=1000)] = Field(
        default=10.0,
        description="Longest a record waits for its agent's batch to fill before the agent"
        " processes what it has: the most latency batching adds.",
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9477
    log_level: str = "INFO"
    log_format: str = Field(default="json", pattern="^(json|text)$")

    def as_env(self) -> dict[str, str]:
        """These settings as `FOREWARN_*` variables, for a child worker process."""
        env: dict[str, str] = {}

        def put(name: str, value: Any) -> None:
            if value is None:
                return
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if isinstance(value, BaseModel):
                for field in type(value).model_fields:
                    put(f"{name}__{field.upper()}", getattr(value, field))
            elif isinstance(value, StrEnum | str | Path):
                env[name] = str(value)
            elif isinstance(value, tuple):
                env[name] = json.dumps([str(v) for v in value])
            else:
                env[name] = json.dumps(value)

        for field in type(self).model_fields:
            put(f"FOREWARN_{field.upper()}", getattr(self, field))
        return env

    @property
    def time_bounds(self) -> TimeBounds:
        return TimeBounds(self.event_time_future_seconds, self.event_time_past_seconds)

    def topic(self, logical: str) -> str:
        """The physical name of a logical topic (a `TopicNames` field)."""
        name: str = getattr(self.topics, logical)
        return f"{self.topic_prefix}{name}"

    @property
    def input_topics(self) -> tuple[str, ...]:
        return tuple(
            self.topic(t)
            for t in (
                "usage_events",
                "billing_events",
                "network_quality_events",
                "customer_profiles",
                "task_updates",
            )
        )

    @property
    def output_topics(self) -> tuple[str, ...]:
        return tuple(
            self.topic(t) for t in ("customer_notices", "intervention_tasks", "dead_letters")
        )

    def internal_topic(self, name: str) -> str:
        """Topics only Forewarn reads and writes, named after the app id:
        `notice-intents` (subscriber-keyed), `cell-membership` (cell-keyed),
        `task-updates-network` (task updates for cells and lines, keyed by
        target), `area-samples` (line events again, keyed by their area),
        `network-marks` and `subscriber-marks` (what covers a line, from its
        area, or a subscriber, from its home cell; keyed by the covered key) and
        `clock-subscribers`/`clock-network` (the live clock's ticks, one per
        partition)."""
        return f"{self.topic_prefix}{self.app_id}-{name}"

    def changelog_topic(self, table: str) -> str:
        """A state table's compacted changelog: `<app_id>-<table>-changelog`
        (the name Faust gave its tables' changelogs, so state carries over)."""
        return f"{self.app_id}-{table}-changelog"

    @property
    def internal_topics(self) -> tuple[str, ...]:
        return tuple(
            self.internal_topic(name)
            for name in (
                "notice-intents",
                "cell-membership",
                "task-updates-network",
                "area-samples",
                "network-marks",
                "subscriber-marks",
                "clock-subscribers",
                "clock-network",
            )
        )


SUBSCRIBER_TABLE = "forewarn-subscribers"
NETWORK_TABLE = "forewarn-network"
MEMBERS_TABLE = "forewarn-cell-members"
STATE_TABLES = (SUBSCRIBER_TABLE, NETWORK_TABLE, MEMBERS_TABLE)

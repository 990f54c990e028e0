"""The Faust application: created from `Settings`, with explicit topic and
agent names, raw (bytes) serializers so decoding failures stay ours, and the
web server bound to localhost with table/router/graph views off.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import faust

from sinks import OutputRecord, OutputTopic
from stream.connection import ssl_context
from stream.decoding import RawRecord
from stream.processor import UsageProcessor
from stream.settings import SecurityProtocol, Settings


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


def create_app(settings: Settings) -> faust.App:
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
        store="memory://",
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
    )
    wire(app, settings)
    return app


def raw_topic(app: faust.App, name: str) -> Any:
    return app.topic(
        name,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )


def wire(app: faust.App, settings: Settings) -> None:
    outputs = {
        OutputTopic.CUSTOMER_NOTICES: raw_topic(app, settings.topic("customer_notices")),
        OutputTopic.INTERVENTION_TASKS: raw_topic(app, settings.topic("intervention_tasks")),
        OutputTopic.DEAD_LETTERS: raw_topic(app, settings.topic("dead_letters")),
    }
    usage = UsageProcessor(clock=lambda: datetime.now(UTC))

    async def send(records: list[OutputRecord]) -> None:
        for rec in records:
            await outputs[rec.topic].send(key=rec.key, value=rec.value)

    @app.agent(raw_topic(app, settings.topic("usage_events")), name="forewarn-usage", concurrency=1)
    async def usage_agent(stream: Any) -> None:
        async for event in stream.events():
            msg = event.message
            record = RawRecord(msg.topic, msg.partition, msg.offset, msg.key, msg.value)
            await send(usage.process(record))

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

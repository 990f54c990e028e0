"""Client configuration derived from `KafkaSettings` for each Kafka client we
use (kafka-python for admin, Faust/aiokafka for the worker)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from stream.settings import SecurityProtocol, Settings


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    k = settings.kafka
    if k.security_protocol not in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL):
        return None
    ctx = ssl.create_default_context(cafile=str(k.ssl_cafile) if k.ssl_cafile else None)
    if k.ssl_certfile:
        ctx.load_cert_chain(str(k.ssl_certfile), str(k.ssl_keyfile) if k.ssl_keyfile else None)
    ctx.check_hostname = k.ssl_check_hostname
    return ctx


def kafka_python_config(settings: Settings) -> dict[str, Any]:
    k = settings.kafka
    config: dict[str, Any] = {
        "bootstrap_servers": k.bootstrap_servers,
        "security_protocol": k.security_protocol.value,
    }
    if k.security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL):
        config["sasl_mechanism"] = k.sasl_mechanism.value
        config["sasl_plain_username"] = k.sasl_username
        config["sasl_plain_password"] = (
            k.sasl_password.get_secret_value() if k.sasl_password else None
        )
    ctx = ssl_context(settings)
    if ctx is not None:
        config["ssl_context"] = ctx
    return config


async def broker_reachable(settings: Settings, timeout: float = 2.0) -> bool:
    """Whether any bootstrap server accepts a TCP connection now: the
    worker's readiness while the broker is down. One connection per call,
    closed at once (the Kafka clients' own reconnects are not a signal we
    can read without their private state)."""
    for server in settings.kafka.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or "127.0.0.1", int(port)), timeout
            )
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False

"""Settings come from the environment (prefix FOREWARN_, nested with __)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stream.settings import KafkaSettings, SecurityProtocol, Settings


def test_defaults_bind_to_localhost_and_use_contract_topic_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.web_host == "127.0.0.1" and s.metrics_host == "127.0.0.1"
    assert s.topic("usage_events") == "usage-events"
    assert s.topic("dead_letters") == "dead-letters"


def test_environment_overrides_nested_and_prefixes_topics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FOREWARN_KAFKA__BOOTSTRAP", "b1:9093, b2:9093")
    monkeypatch.setenv("FOREWARN_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FOREWARN_KAFKA__SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("FOREWARN_TOPICS__USAGE_EVENTS", "usage")
    monkeypatch.setenv("FOREWARN_TOPIC_PREFIX", "prod.")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.kafka.bootstrap_servers == ["b1:9093", "b2:9093"]
    assert s.kafka.security_protocol is SecurityProtocol.SASL_SSL
    assert "s3cret" not in repr(s)
    assert s.topic("usage_events") == "prod.usage"
    assert s.topic("billing_events") == "prod.billing-events"


def test_unknown_setting_and_bad_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOREWARN_PARTITIONS", "0")
    with pytest.raises(ValidationError, match="partitions"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_settings_are_frozen() -> None:
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        s.partitions = 3  # type: ignore[misc]


def test_as_env_gives_a_child_process_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s = Settings(
        app_id="ops",
        kafka=KafkaSettings(
            bootstrap="b1:9093",
            security_protocol=SecurityProtocol.SASL_SSL,
            sasl_username="forewarn",
            sasl_password="s3cret",  # type: ignore[arg-type]
            session_timeout_seconds=12,
        ),
        rule_paths=(tmp_path / "a", tmp_path / "b"),
        rules_poll_seconds=0.5,
        web_host="0.0.0.0",
        _env_file=None,  # type: ignore[call-arg]
    )
    for name, value in s.as_env().items():
        monkeypatch.setenv(name, value)
    again = Settings(_env_file=None)  # type: ignore[call-arg]
    assert again == s
    assert again.kafka.sasl_password is not None
    assert again.kafka.sasl_password.get_secret_value() == "s3cret"


def test_local_broker_ports_lie_outside_the_ephemeral_range() -> None:
    """While a dev broker is down, clients reconnecting to it use ephemeral
    source ports (32768-60999 on Linux); one that lands on the broker's own
    port keeps the broker from starting again (BindException)."""
    import re

    root = Path(__file__).resolve().parents[2]
    ports = [
        int(p)
        for name in ("dev/kafka", "dev/test", "dev/run", "dev/bench")
        for p in re.findall(r"FOREWARN_KAFKA_PORT:-(\d+)", (root / name).read_text())
    ]
    ports.append(int(Settings(_env_file=None).kafka.bootstrap.rsplit(":", 1)[1]))  # type: ignore[call-arg]
    assert len(ports) == 5
    for port in ports:
        assert not 32768 <= port <= 60999 and not 32768 <= port + 1 <= 60999, port

"""Settings come from the environment (prefix FOREWARN_, nested with __)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from stream.settings import SecurityProtocol, Settings


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

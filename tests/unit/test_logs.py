"""Structured logs: one JSON object per line, subscriber ids masked."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from stream.logs import configure, mask


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    out = io.StringIO()
    handler = configure("INFO", "json")
    handler.setStream(out)  # type: ignore[attr-defined]
    yield out
    root.handlers[:], root.level = saved


@pytest.mark.parametrize(
    ("identifier", "masked"),
    [("8613800001234", "*********1234"), ("1234", "1234"), ("12", "12"), ("", ""), (None, "")],
)
def test_mask_keeps_the_last_four_characters(identifier: str | None, masked: str) -> None:
    assert mask(identifier) == masked


def test_a_log_line_is_one_json_object_with_the_extra_fields(captured: io.StringIO) -> None:
    logging.getLogger("forewarn.test").warning("reload %s", "failed", extra={"rules": 7})
    entry = json.loads(captured.getvalue())
    assert entry["level"] == "warning"
    assert entry["logger"] == "forewarn.test"
    assert entry["msg"] == "reload failed"
    assert entry["rules"] == 7
    assert entry["ts"].endswith("+00:00")


def test_long_digit_runs_from_any_logger_are_masked(captured: io.StringIO) -> None:
    # A library formatting a record key into its message must not leak it.
    logging.getLogger("faust.topics").warning("send: k=%r", b"8613800001234")
    logging.getLogger("forewarn.test").info("order 123456 is short enough to stay")
    logging.getLogger("mode.timers").warning("Timer commit is overlapping (runtime=1.0000005193)")
    first, second, third = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["msg"] == "send: k=b'*********1234'"
    assert "8613800001234" not in captured.getvalue()
    assert second["msg"] == "order 123456 is short enough to stay"
    assert third["msg"].endswith("(runtime=1.0000005193)")  # decimals are not ids


def test_tracebacks_are_masked_too(captured: io.StringIO) -> None:
    try:
        raise ValueError("no profile for 8613800005678")
    except ValueError:
        logging.getLogger("forewarn.test").exception("processing failed")
    entry = json.loads(captured.getvalue())
    assert "*********5678" in entry["exc"]
    assert "8613800005678" not in captured.getvalue()


def test_debug_records_are_not_built_at_info(captured: io.StringIO) -> None:
    assert not logging.getLogger("faust.topics").isEnabledFor(logging.DEBUG)
    logging.getLogger("faust.topics").debug("send: v=%r", b"x" * 100)
    assert captured.getvalue() == ""


def test_repeated_messages_are_rate_limited_with_a_count() -> None:
    import logging

    from stream.logs import RateLimitFilter

    now = [0.0]
    limiter = RateLimitFilter(interval=10, clock=lambda: now[0])

    def record(msg: str, *args: object) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", logging.WARNING, "f", 1, msg, args, None)

    passed = []
    for i in range(650):  # an outage's reconnect warnings, one second's worth
        now[0] = i / 650
        r = record("Unable to connect to node %s", i)
        if limiter.filter(r):
            passed.append(r.getMessage())
    other = record("a different message")
    assert limiter.filter(other)
    now[0] = 11.0
    later = record("Unable to connect to node %s", 7)
    assert limiter.filter(later)
    assert passed == ["Unable to connect to node 0"]
    assert later.getMessage() == (
        "Unable to connect to node 7 (649 similar messages in the last 10s held back)"
    )


def test_only_subscriber_ids_are_masked_never_other_values() -> None:
    from stream.logs import _mask_digits

    text = "rules loaded, version a1358270aabe; subscriber 8613800001234; 12345678.5 CNY"
    assert _mask_digits(text) == (
        "rules loaded, version a1358270aabe; subscriber *********1234; 12345678.5 CNY"
    )


def test_the_live_view_masks_subscribers_and_shows_deferred_delivery() -> None:
    import json

    from stream.tools.feed import format_output

    notice = {
        "notice_id": "n",
        "rule_id": "data-usage",
        "tier": "80pct",
        "severity": "info",
        "subscriber_id": "8613800001234",
        "channel": "sms",
        "message": "80% used",
        "deliver_after": "2026-11-21T08:00:00+08:00",
    }
    line = format_output("customer-notices", json.dumps(notice).encode())
    assert "*********1234" in line and "8613800001234" not in line
    assert "after 2026-11-21T08:00:00+08:00" in line


def test_information_lines_are_not_held_back_only_warnings_are() -> None:
    """Recovery logs one line per agent with the same template; none may be
    taken for a storm (the network agent's line was held back once)."""
    from stream.logs import RateLimitFilter

    f = RateLimitFilter(interval=10.0, clock=lambda: 0.0)

    def record(level: int) -> logging.LogRecord:
        return logging.LogRecord(
            "forewarn.checkpoint", level, "f", 1, "%s: recovered", ("a",), None
        )

    assert [f.filter(record(logging.INFO)) for _ in range(3)] == [True, True, True]
    assert [f.filter(record(logging.WARNING)) for _ in range(3)] == [True, False, False]

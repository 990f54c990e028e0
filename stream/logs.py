"""Structured logs: one JSON object per line, subscriber ids masked,
repeats rate-limited.

Subscriber ids are personal data. We log them only through `mask()` (the
last 4 digits), and a filter masks any long run of digits left in a message
(Faust's or a library's) as a safety net.

A broker outage makes the Kafka clients log the same warning hundreds of
times a second (1.7 million lines, 539 MB in 18 minutes, in one probe).
`RateLimitFilter` lets one warning (or error) per logger, level and message
template through per interval, and the first line after the interval says
how many were held back. Information lines pass: they are the worker's own
start-up and recovery steps, one per agent or partition.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

# A subscriber id: a run of 7+ digits standing on its own, not the decimals of
# a number (either side) and not part of a word (a rule version such as `a1358270aabe`).
_DIGITS = re.compile(r"(?<![\w.])\d{7,}(?!\w|\.\d)")
_STANDARD = set(vars(logging.makeLogRecord({})))
_NUMBERS = re.compile(r"\d+")


def mask(identifier: str | None) -> str:
    """`8613800001234` -> `*********1234`."""
    if not identifier:
        return ""
    return "*" * max(len(identifier) - 4, 0) + identifier[-4:]


def _mask_digits(text: str) -> str:
    return _DIGITS.sub(lambda m: mask(m.group()), text)


class MaskingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _mask_digits(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class RateLimitFilter(logging.Filter):
    """At most one record per (logger, level, message template) per
    `interval` seconds; the next one that passes carries the count of those
    held back in between."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.clock = clock
        self.seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [last passed, held]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True  # information is rare by design: start-up and recovery steps
        # Clients often format their messages before logging them: the key is
        # the message's head with its numbers taken out.
        key = (record.name, record.levelno, _NUMBERS.sub("#", str(record.msg))[:48])
        now = self.clock()
        slot = self.seen.get(key)
        if slot is None:
            if len(self.seen) > 10_000:  # bounded: forget the oldest templates
                self.seen.clear()
            self.seen[key] = [now, 0]
            return True
        if now - slot[0] < self.interval:
            slot[1] += 1
            return False
        held = int(slot[1])
        self.seen[key] = [now, 0]
        if held:
            record.msg = f"{record.getMessage()} ({held} similar messages in the last"
            record.msg += f" {self.interval:.0f}s held back)"
            record.args = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = _mask_digits(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, fmt: str) -> logging.Handler:
    """Route all logging (ours and Faust's) to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    handler.addFilter(RateLimitFilter())
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("kafka", "aiokafka"):  # connection chatter at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    return handler

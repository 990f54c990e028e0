"""Structured logs: one JSON object per line, subscriber ids masked.

Subscriber ids are personal data. We log them only through `mask()` (the
last 4 digits), and a filter masks any long run of digits left in a message
(Faust's or a library's) as a safety net.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_DIGITS = re.compile(r"(?<![\d.])\d{7,}")  # an id, not the decimals of a number
_STANDARD = set(vars(logging.makeLogRecord({})))


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
    handler.addFilter(MaskingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for chatty in ("kafka", "aiokafka"):  # connection chatter at INFO
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    return handler

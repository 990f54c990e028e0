"""Durations written with units, as rule authors write them: `90s`, `15m`,
`2h`, `30d`, or combined `1h30m`. A bare number is not a duration: YAML 1.1
would read `1:30` as 90, so units are required."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError with advice."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(
            f"{text!r} is not a duration; write a number with a unit, e.g. '90s', '15m', '2h', '30d'"
        )
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise ValueError(f"{text!r}: a duration must be greater than zero")
    return float(seconds)


def _validate(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(
            f"{value!r} is not a duration; write a quoted number with a unit, e.g. '15m'"
        )
    parse_duration(value)
    return value


Duration = Annotated[str, BeforeValidator(_validate)]

"""The names an expression can read, in one place: the loader checks rule
text against these sets and the engine and the notice policy build their
environments with these functions, so what the guide promises, what the
loader accepts and what a rule sees at run time cannot drift apart.

- event rules see their event's fields and `cycle` (usage also `quota`),
  and, for subscriber events (usage, billing), the subscriber's profile as
  `profile.*`; a cell or a line has no profile of its own;
- a notice's `audience_filter` sees the receiving subscriber's `profile.*`,
  whatever the source: a red cell's notice can go to its VIP home
  subscribers only.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, get_args

from pydantic import BaseModel

from rules.model import Source
from schemas import BillingEvent, CustomerProfile, NetworkQualityEvent, UsageEvent, default_profile

EVENT_MODELS: dict[Source, type[BaseModel]] = {
    Source.USAGE: UsageEvent,
    Source.BILLING: BillingEvent,
    Source.NETWORK_QUALITY: NetworkQualityEvent,
}
# an event's fields, by name (`event_time` as epoch seconds)
EVENT_FIELDS: dict[Source, frozenset[str]] = {
    source: frozenset(model.model_fields) for source, model in EVENT_MODELS.items()
}
# names the engine derives for an event's rules
DERIVED: dict[Source, frozenset[str]] = {
    Source.USAGE: frozenset({"quota", "cycle"}),
    Source.BILLING: frozenset({"cycle"}),
    Source.NETWORK_QUALITY: frozenset({"cycle"}),
}


def _types_in(annotation: Any) -> list[Any]:
    args = get_args(annotation)
    return [t for a in args for t in _types_in(a)] if args else [annotation]


def _shape(model: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A model's enumeration fields (read as their values) and time fields
    (left out: `event_time` is given as epoch seconds)."""
    enums, times = [], []
    for name, info in model.model_fields.items():
        types = [t for t in _types_in(info.annotation) if isinstance(t, type)]
        if any(issubclass(t, Enum) for t in types):
            assert all(issubclass(t, StrEnum) for t in types if issubclass(t, Enum)), name
            enums.append(name)
        elif any(issubclass(t, datetime) for t in types):
            times.append(name)
    return tuple(enums), tuple(times)


_SHAPES = {model: _shape(model) for model in EVENT_MODELS.values()}


def fields_env(event: BaseModel, at: float | None = None) -> dict[str, Any]:
    """The names of an event's own fields, as its rules read them (one
    dict copy and a fix-up of the few enumeration and time fields); `at`:
    the event time in epoch seconds, when the caller has it already."""
    enums, times = _SHAPES[type(event)]
    env = dict(event.__dict__)
    for name in times:
        del env[name]
    for name in enums:
        value = env[name]
        if value is not None:
            env[name] = str(value)  # a StrEnum's value; `.value` is interpreted code
    env["event_time"] = event.__dict__["event_time"].timestamp() if at is None else at
    return env


def profile_env(profile: CustomerProfile) -> dict[str, Any]:
    """The `profile.*` names of one subscriber."""
    plan = profile.plan
    return {
        "profile.segment": str(profile.segment),  # StrEnums: their values
        "profile.language": str(profile.language),
        "profile.preferred_channel": str(profile.preferred_channel),
        "profile.timezone": profile.timezone,
        "profile.prepaid": profile.prepaid,
        "profile.home_cell_id": profile.home_cell_id,
        "profile.broadband_line_id": profile.broadband_line_id,
        "profile.plan.data_quota_mb": plan.data_quota_mb if plan else None,
        "profile.plan.voice_quota_min": plan.voice_quota_min if plan else None,
        "profile.plan.sms_quota": plan.sms_quota if plan else None,
    }


PROFILE_NAMES = frozenset(profile_env(default_profile("x")))

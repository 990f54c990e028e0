"""Customer profiles from the compacted `customer-profiles` topic
(key: subscriber_id; a null value deletes the profile).

A subscriber without a profile gets `default_profile(subscriber_id)`: nothing
is dropped for lack of a profile.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Segment(StrEnum):
    STANDARD = "standard"
    VIP = "vip"
    ELDERLY = "elderly"
    ENTERPRISE = "enterprise"


class Language(StrEnum):
    ZH_CN = "zh-CN"
    EN = "en"


class Channel(StrEnum):
    SMS = "sms"
    APP_PUSH = "app_push"
    VOICE_CALL = "voice_call"
    EMAIL = "email"


class QuietHours(BaseModel):
    """A daily window, in the subscriber's timezone, in which non-critical
    notices are deferred. `start` after `end` spans midnight."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    start: str = "22:00"
    end: str = "08:00"

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("must be a 24-hour time HH:MM, e.g. '22:00'")
        return value

    def minutes(self) -> tuple[int, int]:
        """(start, end) as minutes after midnight."""
        sh, sm = self.start.split(":")
        eh, em = self.end.split(":")
        return int(sh) * 60 + int(sm), int(eh) * 60 + int(em)


class Plan(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    data_quota_mb: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    voice_quota_min: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    sms_quota: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None


class CustomerProfile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    subscriber_id: Annotated[str, Field(min_length=1, max_length=128)]
    segment: Segment = Segment.STANDARD
    language: Language = Language.ZH_CN
    preferred_channel: Channel = Channel.SMS
    timezone: str = "Asia/Shanghai"
    quiet_hours: QuietHours = QuietHours()
    prepaid: bool = False
    plan: Plan | None = None
    home_cell_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    broadband_line_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    opt_out: tuple[str, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value


def default_profile(subscriber_id: str) -> CustomerProfile:
    """The profile assumed for a subscriber we have not seen a profile for."""
    return CustomerProfile(subscriber_id=subscriber_id)

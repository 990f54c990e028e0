"""Input events read from the `usage-events`, `billing-events` and
`network-quality-events` topics.

Producers own these topics, so unknown extra fields are ignored. A missing
required field, a wrong type, a negative amount or a timestamp without a UTC
offset is a validation error: the stream layer sends such a record to
`dead-letters`, it never reaches the engine.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

NonEmpty = Annotated[str, Field(min_length=1, max_length=128)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Service(StrEnum):
    DATA = "data"
    VOICE = "voice"
    SMS = "sms"


class ChargeType(StrEnum):
    SUBSCRIPTION = "subscription"
    DATA_OVERAGE = "data_overage"
    ROAMING = "roaming"
    INTERNATIONAL_CALL = "international_call"
    PREMIUM_SMS = "premium_sms"
    VALUE_ADDED_SERVICE = "value_added_service"
    DEVICE_INSTALLMENT = "device_installment"
    TOP_UP = "top_up"
    OTHER = "other"


class NetworkScope(StrEnum):
    CELL = "cell"
    BROADBAND_LINE = "broadband_line"


class _InputEvent(BaseModel):
    # strict: "5" is not a number and "yes" is not a bool; JSON strings still
    # parse as RFC 3339 timestamps and enum values.
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)

    event_id: NonEmpty
    event_time: AwareDatetime = Field(description="RFC 3339 timestamp with a UTC offset.")


class UsageEvent(_InputEvent):
    """One usage record from mediation/charging (key: subscriber_id)."""

    subscriber_id: NonEmpty
    service: Service
    volume: NonNegative = Field(description="MB for data, minutes for voice, messages for sms.")
    cycle_id: NonEmpty = Field(description="Billing cycle label, e.g. `2026-11`.")
    cycle_used: NonNegative | None = Field(
        default=None,
        description="Cumulative use in the cycle as reported by charging; when absent the "
        "engine accumulates `volume` per subscriber, service and cycle.",
    )
    cycle_quota: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None,
        description="Quota for the cycle; when absent the profile's plan applies; "
        "no quota means unlimited (never alerts).",
    )
    roaming_country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1 alpha-2; absent = home network."
    )
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="IANA timezone where the subscriber is, when the network knows it"
        " (e.g. from the visited network); quiet hours follow it.",
    )
    cell_id: NonEmpty | None = None

    @field_validator("timezone")
    @classmethod
    def _iana(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA timezone {value!r}") from exc
        return value


class BillingEvent(_InputEvent):
    """One charge or top-up from the billing system (key: subscriber_id)."""

    subscriber_id: NonEmpty
    charge_type: ChargeType
    amount: NonNegative
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] = "CNY"
    balance: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        default=None, description="Prepaid balance after this event."
    )
    description: Annotated[str, Field(max_length=512)] | None = None


class NetworkQualityEvent(_InputEvent):
    """A KPI sample for a cell, or a speed measurement of a broadband line
    (key: cell_id or line_id)."""

    scope: NetworkScope
    cell_id: NonEmpty | None = None
    region: NonEmpty | None = None
    latency_ms: NonNegative | None = None
    packet_loss_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    availability_pct: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)] | None = None
    throughput_mbps: NonNegative | None = None
    line_id: NonEmpty | None = None
    area_id: NonEmpty | None = Field(
        default=None,
        description="The access node the line hangs off (OLT or PON port): rules keyed by"
        " `area_id` see every line of the area.",
    )
    subscriber_id: NonEmpty | None = None
    measured_down_mbps: NonNegative | None = None
    subscribed_down_mbps: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _scope_fields(self) -> Self:
        if self.scope is NetworkScope.CELL and self.cell_id is None:
            raise ValueError("scope 'cell' requires cell_id")
        if self.scope is NetworkScope.BROADBAND_LINE:
            missing = [
                name
                for name in (
                    "line_id",
                    "subscriber_id",
                    "measured_down_mbps",
                    "subscribed_down_mbps",
                )
                if getattr(self, name) is None
            ]
            if missing:
                raise ValueError(f"scope 'broadband_line' requires {', '.join(missing)}")
        return self

    @property
    def target_id(self) -> str:
        """The key this measurement belongs to: the cell or the line."""
        ident = self.cell_id if self.scope is NetworkScope.CELL else self.line_id
        assert ident is not None  # guaranteed by _scope_fields
        return ident


InputEvent = UsageEvent | BillingEvent | NetworkQualityEvent

SourceName = Literal["usage", "billing", "network_quality"]

"""The contract: pydantic models of everything that crosses Kafka.

Inputs (`UsageEvent`, `BillingEvent`, `NetworkQualityEvent`, `CustomerProfile`,
`TaskUpdate`, `MaintenanceWindow`)
ignore unknown fields so producers can add fields without breaking us; outputs
(`CustomerNotice`, `InterventionTask`, `DeadLetter`) are frozen and strict.
This package imports nothing else of Forewarn's.
"""

from schemas.deadletter import DeadLetter, DeadLetterReason, PayloadEncoding
from schemas.events import (
    BillingEvent,
    ChargeType,
    InputEvent,
    NetworkQualityEvent,
    NetworkScope,
    Service,
    UsageEvent,
)
from schemas.feedback import FeedbackStatus, TaskUpdate
from schemas.intents import CellMembership, CoverMark, NoticeIntent, NoticePart
from schemas.maintenance import (
    MaintenanceTarget,
    MaintenanceTargetType,
    MaintenanceWindow,
    WindowText,
)
from schemas.outputs import (
    SCHEMA_VERSION,
    ClosesOn,
    CustomerNotice,
    InterventionTask,
    Priority,
    Queue,
    Severity,
    TargetType,
    TaskAction,
    TaskChange,
    TaskStatus,
    TaskTarget,
)
from schemas.profile import (
    Channel,
    CustomerProfile,
    Language,
    Plan,
    QuietHours,
    Segment,
    default_profile,
)

__all__ = [
    "SCHEMA_VERSION",
    "BillingEvent",
    "CellMembership",
    "Channel",
    "ChargeType",
    "ClosesOn",
    "CoverMark",
    "CustomerNotice",
    "CustomerProfile",
    "DeadLetter",
    "DeadLetterReason",
    "FeedbackStatus",
    "InputEvent",
    "InterventionTask",
    "Language",
    "MaintenanceTarget",
    "MaintenanceTargetType",
    "MaintenanceWindow",
    "NetworkQualityEvent",
    "NetworkScope",
    "NoticeIntent",
    "NoticePart",
    "PayloadEncoding",
    "Plan",
    "Priority",
    "Queue",
    "QuietHours",
    "Segment",
    "Service",
    "Severity",
    "TargetType",
    "TaskAction",
    "TaskChange",
    "TaskStatus",
    "TaskTarget",
    "TaskUpdate",
    "UsageEvent",
    "WindowText",
    "default_profile",
]

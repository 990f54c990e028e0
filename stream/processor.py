"""The per-record work behind every agent, free of Faust: decode the raw
record, run the check, encode what comes out. One error boundary: whatever
happens, the caller gets output records (possibly a dead letter), never an
exception.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime

from schemas import CustomerNotice, DeadLetter, Severity, UsageEvent, default_profile
from sinks import OutputRecord, encode
from stream.decoding import RawRecord, dead_letter, decode

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def placeholder_check(event: UsageEvent, now: datetime) -> list[CustomerNotice]:
    """Walking-skeleton check, replaced by the rule engine: warn at 80 % of
    an explicit cycle quota."""
    if event.cycle_used is None or event.cycle_quota is None:
        return []
    ratio = event.cycle_used / event.cycle_quota
    if ratio < 0.8:
        return []
    profile = default_profile(event.subscriber_id)
    ident = hashlib.sha256(
        f"placeholder|{event.subscriber_id}|{event.cycle_id}".encode()
    ).hexdigest()[:32]
    return [
        CustomerNotice(
            notice_id=ident,
            correlation_id=ident,
            subscriber_id=event.subscriber_id,
            rule_id="placeholder-data-80pct",
            tier="80pct",
            severity=Severity.INFO,
            category="data_usage",
            channel=profile.preferred_channel,
            language=profile.language,
            title="Data usage",
            message=f"You have used {ratio:.0%} of your data plan.",
            facts={"ratio": round(ratio, 4)},
            event_time=event.event_time,
            created_at=now,
            source_event_ids=(event.event_id,),
            rule_version="placeholder",
        )
    ]


class UsageProcessor:
    """Turns one raw usage record into encoded output records."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def process(self, record: RawRecord) -> list[OutputRecord]:
        now = self._clock()
        try:
            decoded = decode(record, UsageEvent, now)
            if isinstance(decoded, DeadLetter):
                return [encode(decoded)]
            return [encode(n) for n in placeholder_check(decoded, now)]
        except Exception as exc:  # the error boundary: bad luck must not stop the stream
            log.exception("processing failed at %s", record.where)
            return [encode(dead_letter(record, "processing_error", repr(exc), now))]

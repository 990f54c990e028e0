"""The live trigger of the event-time clock. Due work (a task's promise, a
notice held for quiet hours) fires when a partition's stream time passes it
(`rules.agenda`), which needs traffic on the partition. A live worker must
also fire it when the partition is quiet, so every few seconds the worker
sends a clock record (a tick) to each partition with something due: the
tick moves the partition's clock to the wall clock, as if an event had come.

Only a live stream follows the wall clock: when the partition's stream time
is further behind the wall clock than `window` (a backlog, a replay of old
traffic, a test with historical times) the tick is not sent, so old traffic
is processed by its event time alone, exactly as `forewarn replay` does.
"""

from __future__ import annotations


def tick_time(stream_time: float | None, wall: float, window: float) -> float | None:
    """The time a tick may move a partition's clock to, or None when the
    partition is not live. A partition with no event since this worker got
    it (stream time unknown) is taken as live: its due work is not held up
    by the absence of traffic."""
    if stream_time is None or wall - stream_time <= window:
        return wall
    return None


def needs_tick(pending: float | None, stream_time: float | None, at: float | None) -> bool:
    """Whether a tick at `at` would fire something in a partition whose
    earliest due time is `pending` and clock `stream_time`."""
    if at is None or pending is None or pending > at:
        return False
    return stream_time is None or at > stream_time

"""One agent's in-flight inputs: the state writes and input acks that wait
for the broker to acknowledge the outputs they caused.

This is how the worker keeps at-least-once delivery without a broker round
trip per event. For each input record, in order:

1. its outputs are sent, not awaited;
2. its new state record is visible at once to later inputs of the same key
   (an overlay over the table);
3. once the broker has acknowledged its outputs *and those of every input
   before it*, the record is written to the table (and so to the changelog);
4. once the broker has acknowledged that changelog record, the input is
   acked. Faust commits only acked inputs. (Faust's own flush before a
   commit gives up after 0.1 s without progress, so it does not guarantee
   that the state of a committed input reached the changelog; a worker
   killed then would hand its partitions over without that state.)

A crash anywhere replays from the last commit: an input whose outputs were
not acknowledged was never written to state, so it is processed again from
the state before it and gives the same outputs with the same ids. An input
whose state was written had its outputs acknowledged first, so the engine's
duplicate check may skip it safely. Inputs without outputs, with nothing
queued before them, are written on the spot (the common case) and acked
with their changelog record's acknowledgement.

If the broker refuses an output for good, nothing after it is written or
acked and the worker stops with an error, to be restarted and replay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from stream.faust_runtime import current_event

log = logging.getLogger("forewarn.inflight")

Write = tuple[Any, bytes, bytes]  # (table, key, value)


@dataclass
class Pending:
    event: Any
    futures: Sequence[asyncio.Future[Any]]
    writes: Sequence[Write]
    waiting: int = field(init=False)
    since: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.waiting = sum(1 for f in self.futures if not f.done())


class Inflight:
    """FIFO of inputs waiting for their outputs; `limit` bounds it (back-pressure)."""

    def __init__(self, on_failure: Callable[[BaseException], None], limit: int = 2000) -> None:
        self.on_failure = on_failure
        self.limit = limit
        self.queue: deque[Pending] = deque()
        self.writing = 0  # inputs written, waiting for their changelog records
        self.stored: dict[int, tuple[float, Any]] = {}  # token -> (since, event) of those
        self.overlay: dict[tuple[int, bytes], bytes] = {}
        self.failed: BaseException | None = None
        self.drained = asyncio.Event()

    def get(self, table: Any, key: bytes | None) -> bytes | None:
        """The key's latest record, including writes still in flight."""
        if key is None:
            return None
        found = self.overlay.get((id(table), key))
        return found if found is not None else table.get(key)

    def __len__(self) -> int:
        return len(self.queue) + self.writing

    def oldest(self) -> tuple[float, Any] | None:
        """(seconds waiting, event) of the input waiting longest, for its
        outputs' acks (the queue's head) or its changelog's ack."""
        waiting = list(self.stored.values())
        if self.queue:
            waiting.append((self.queue[0].since, self.queue[0].event))
        if not waiting:
            return None
        since, event = min(waiting, key=lambda w: w[0])
        return time.monotonic() - since, event

    def add(
        self, event: Any, futures: Sequence[asyncio.Future[Any]], writes: Sequence[Write]
    ) -> None:
        """Called for the current event, after its outputs were sent."""
        if not futures and not self.queue:
            self._ack_when_stored(event, _apply(event, writes))
            return
        pending = Pending(event, futures, writes)
        for table, key, value in writes:
            self.overlay[(id(table), key)] = value
        self.queue.append(pending)
        for f in futures:
            if not f.done():
                f.add_done_callback(partial(self._done, pending))
        self._drain()

    async def room(self) -> None:
        """Wait while the queue is at its limit (the broker is behind)."""
        while len(self.queue) >= self.limit and self.failed is None:
            self.drained.clear()
            await self.drained.wait()

    def _done(self, pending: Pending, future: asyncio.Future[Any]) -> None:
        pending.waiting -= 1
        if not future.cancelled() and future.exception() is not None and self.failed is None:
            self.failed = future.exception()
            log.error("the broker refused an output; stopping so the input is replayed")
            self.on_failure(future.exception())  # type: ignore[arg-type]
        self._drain()

    def _drain(self) -> None:
        if self.failed is not None:
            return
        while self.queue and self.queue[0].waiting == 0:
            pending = self.queue.popleft()
            if any(f.cancelled() or f.exception() is not None for f in pending.futures):
                self.failed = RuntimeError("an output was not delivered")
                self.on_failure(self.failed)
                return
            try:
                stored = _apply(pending.event, pending.writes)
            except Exception as exc:  # never leave a hole: stop, restart, replay
                log.exception("could not write state after the outputs were acknowledged")
                self.failed = exc
                self.on_failure(exc)
                return
            for table, key, value in pending.writes:
                slot = (id(table), key)
                if self.overlay.get(slot) is value:
                    del self.overlay[slot]
            self._ack_when_stored(pending.event, stored)
        self.drained.set()

    def _ack_when_stored(self, event: Any, changelog: Sequence[asyncio.Future[Any]]) -> None:
        """Ack `event` once the broker has its state's changelog records."""
        waiting = [f for f in changelog if not f.done()]
        if any(_failed(f) for f in changelog if f.done()):
            self._changelog_failed()
            return
        if not waiting:
            event.ack()
            return
        self.writing += 1
        left = [len(waiting)]
        token = id(left)
        self.stored[token] = (time.monotonic(), event)

        def stored(future: asyncio.Future[Any]) -> None:
            if _failed(future):
                self._changelog_failed()
                return
            left[0] -= 1
            if left[0] == 0:
                self.writing -= 1
                self.stored.pop(token, None)
                event.ack()

        for f in waiting:
            f.add_done_callback(stored)

    def _changelog_failed(self) -> None:
        if self.failed is None:
            self.failed = RuntimeError("a state change did not reach the changelog")
            log.error("the broker refused a changelog record; stopping so the input is replayed")
            self.on_failure(self.failed)


def _apply(event: Any, writes: Sequence[Write]) -> list[asyncio.Future[Any]]:
    """Write to the tables; returns the changelog sends (`ChangelogTable`).
    Table writes belong to the partition of the event that caused them;
    Faust reads it from the current event, so that is set to this one."""
    sent = []
    with current_event(event):
        for table, key, value in writes:
            table[key] = value
            changelog = getattr(table, "last_changelog", None)
            if changelog is not None:
                sent.append(changelog)
    return sent


def _failed(future: asyncio.Future[Any]) -> bool:
    return future.cancelled() or future.exception() is not None

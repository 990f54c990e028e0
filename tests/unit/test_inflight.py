"""The at-least-once order of an agent: an input's state is written, and the
input acked (so committable), only after its outputs and those of every
earlier input were acknowledged by the broker; later inputs see the new
state at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stream.inflight import Inflight


class Event:
    def __init__(self, name: str) -> None:
        self.name = name
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


class Table(dict[bytes, bytes]):
    """Records the order of writes, like the changelog would."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[bytes, bytes]] = []

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.log.append((key, value))
        super().__setitem__(key, value)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_an_input_without_outputs_is_written_and_acked_at_once() -> None:
    async def main() -> None:
        table, failures = Table(), []
        inflight = Inflight(failures.append)
        e = Event("e1")
        inflight.add(e, [], [(table, b"k", b"v1")])
        assert table == {b"k": b"v1"} and e.acked and len(inflight) == 0

    run(main())


def test_state_and_ack_wait_for_the_outputs_and_keep_input_order() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        table, failures = Table(), []
        inflight = Inflight(failures.append)
        first, second, third = Event("1"), Event("2"), Event("3")
        out1: asyncio.Future[Any] = loop.create_future()
        out3: asyncio.Future[Any] = loop.create_future()

        inflight.add(first, [out1], [(table, b"a", b"a1")])
        assert table == {} and not first.acked
        assert inflight.get(table, b"a") == b"a1"  # the next input of `a` sees it

        inflight.add(second, [], [(table, b"b", b"b1")])  # no outputs, but queued behind
        inflight.add(third, [out3], [(table, b"a", b"a2")])
        assert inflight.get(table, b"a") == b"a2"

        out3.set_result(None)  # acknowledged out of order: nothing may move yet
        await asyncio.sleep(0)
        assert table == {} and not third.acked

        out1.set_result(None)
        await asyncio.sleep(0)
        assert table.log == [(b"a", b"a1"), (b"b", b"b1"), (b"a", b"a2")]
        assert first.acked and second.acked and third.acked
        assert inflight.overlay == {} and len(inflight) == 0 and failures == []

    run(main())


def test_a_refused_output_stops_all_later_writes_and_acks() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        table, failures = Table(), []
        inflight = Inflight(failures.append)
        first, second = Event("1"), Event("2")
        out1: asyncio.Future[Any] = loop.create_future()
        inflight.add(first, [out1], [(table, b"a", b"a1")])
        inflight.add(second, [], [(table, b"b", b"b1")])
        out1.set_exception(RuntimeError("NotEnoughReplicas"))
        await asyncio.sleep(0)
        assert [str(f) for f in failures] == ["NotEnoughReplicas"]
        assert table == {} and not first.acked and not second.acked

    run(main())


def test_room_blocks_while_the_queue_is_full() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        table, failures = Table(), []
        inflight = Inflight(failures.append, limit=2)
        outs = [loop.create_future() for _ in range(2)]
        for i, out in enumerate(outs):
            inflight.add(Event(str(i)), [out], [(table, b"k", str(i).encode())])
        waiter = asyncio.ensure_future(inflight.room())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        outs[0].set_result(None)
        await asyncio.wait_for(waiter, 1)
        assert table.log == [(b"k", b"0")]

    run(main())


@pytest.mark.parametrize("value", [b"", b"x"])
def test_reads_fall_back_to_the_table(value: bytes) -> None:
    table = Table()
    table[b"k"] = value
    inflight = Inflight(lambda exc: None)
    assert inflight.get(table, b"k") == value
    assert inflight.get(table, None) is None


class ChangelogTable(Table):
    """Like `StateTable`: each write's changelog send is a future the test
    resolves, as the broker would acknowledge it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.sends: list[asyncio.Future[Any]] = []
        self.last_changelog: asyncio.Future[Any] | None = None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__(key, value)
        self.last_changelog = self.loop.create_future()
        self.sends.append(self.last_changelog)


def test_an_input_is_acked_only_once_its_changelog_record_is_acknowledged() -> None:
    async def main() -> None:
        table, failures = ChangelogTable(asyncio.get_running_loop()), []
        inflight = Inflight(failures.append)
        first, second = Event("1"), Event("2")
        inflight.add(first, [], [(table, b"a", b"a1")])
        inflight.add(second, [], [(table, b"b", b"b1")])
        assert table == {b"a": b"a1", b"b": b"b1"}  # written and readable at once
        assert not first.acked and not second.acked and len(inflight) == 2
        table.sends[1].set_result(None)
        await asyncio.sleep(0)
        assert second.acked and not first.acked  # Faust commits only up to a gap
        table.sends[0].set_result(None)
        await asyncio.sleep(0)
        assert first.acked and len(inflight) == 0 and failures == []

    run(main())


def test_a_refused_changelog_record_stops_the_worker_without_acking() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        table, failures = ChangelogTable(loop), []
        inflight = Inflight(failures.append)
        e = Event("1")
        out: asyncio.Future[Any] = loop.create_future()
        inflight.add(e, [out], [(table, b"a", b"a1")])
        out.set_result(None)
        await asyncio.sleep(0)
        table.sends[0].set_exception(RuntimeError("RecordTooLarge"))
        await asyncio.sleep(0)
        assert not e.acked
        assert [str(f) for f in failures] == ["a state change did not reach the changelog"]

    run(main())


def test_the_oldest_age_covers_records_waiting_for_their_changelog() -> None:
    """A broker that takes outputs but not changelog records (or is gone)
    must show in `forewarn_inflight_oldest_seconds`, not read 0."""

    async def main() -> None:
        table, failures = ChangelogTable(asyncio.get_running_loop()), []
        inflight = Inflight(failures.append)
        e = Event("1")
        inflight.add(e, [], [(table, b"a", b"a1")])  # written, its changelog not acked
        oldest = inflight.oldest()
        assert oldest is not None and oldest[1] is e and not inflight.queue
        table.sends[0].set_result(None)
        await asyncio.sleep(0)
        assert inflight.oldest() is None and e.acked

    run(main())


def test_a_worker_slowed_by_its_own_sends_is_not_taken_for_a_stalled_one() -> None:
    """Positions stand still while outputs wait for acks: the stall check
    must not seek back then (it would process everything twice)."""
    from stream.supervisor import SLOW_SEND_SECONDS, sending_slowly

    async def main() -> None:
        loop = asyncio.get_running_loop()
        inflight = Inflight(lambda exc: None, limit=2)
        assert not sending_slowly(inflight)
        out: asyncio.Future[Any] = loop.create_future()
        inflight.add(Event("1"), [out], [])
        assert not sending_slowly(inflight)  # just sent
        inflight.queue[0].since -= SLOW_SEND_SECONDS + 1
        assert sending_slowly(inflight)  # waiting on the broker for a while
        inflight.queue[0].since += SLOW_SEND_SECONDS + 1
        inflight.add(Event("2"), [loop.create_future()], [])
        assert sending_slowly(inflight)  # queue at its limit: the agent waits for room

    run(main())

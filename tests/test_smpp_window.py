"""The windowed sender behind ``SmppSession.submit_many``, against the simulator's SMPP server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from plasgate_nb.errors import ConfigError, TransportError
from plasgate_nb.simulator.smpp_server import SimpleBackend, SmppServer
from plasgate_nb.smpp import SmppConfig, SmppMessage, SmppSession, SubmitResult
from plasgate_nb.smpp.window import Slots, settle, settle_one

LONG = "A long text in three parts. " * 15  # 420 GSM-7 septets


@pytest.fixture
def server() -> Iterator[SmppServer]:
    """A simulator SMPP server in a thread."""
    with SmppServer(SimpleBackend(latency=0.01)) as srv:
        yield srv


def config(srv: SmppServer, **options: object) -> SmppConfig:
    """A session config for the server's demo account."""
    return SmppConfig(port=srv.port, system_id="demo", password="demopass", **options)  # type: ignore[arg-type]


def msgs(n: int, text: str = "Hello") -> list[dict[str, object]]:
    """n messages keyed by their index (numbers ending in 1: no special fate, none refused)."""
    return [{"to": f"855120{i:04d}1", "text": f"{text} {i}", "sender": "SMS Info", "key": i} for i in range(n)]


def test_results_in_input_order_with_parts_beyond_the_window(server: SmppServer) -> None:
    """Long and short messages mixed, more parts than the window: every one accepted once, in order."""
    items = [m if i % 3 else {**m, "text": LONG} for i, m in enumerate(msgs(9))]

    async def main() -> list[SubmitResult]:
        async with SmppSession(config(server, window=2, registered_delivery=0)) as session:
            assert await session.submit_many([]) == []
            return await session.submit_many([SmppMessage.coerce(m) if i % 2 else m for i, m in enumerate(items)])

    results = asyncio.run(main())
    assert [r.key for r in results] == list(range(9)) and {r.outcome for r in results} == {"accepted"}
    assert [len(r.part_ids) for r in results] == [3 if i % 3 == 0 else 1 for i in range(9)]
    assert [row["text"] for row in server.backend.record] == [m["text"] for m in items]


def test_concurrent_senders_share_one_window(server: SmppServer) -> None:
    """Two submit_many and a submit on one session keep at most ``window`` PDUs in flight together:
    8 unanswered submit_sm with a window of 4 time out in two rounds, not one."""
    server.faults.silent_next = 8

    async def main() -> tuple[list[SubmitResult], float]:
        async with SmppSession(config(server, window=4, response_timeout=0.3)) as session:
            started = time.monotonic()
            a, b, c = await asyncio.gather(
                session.submit_many(msgs(4)), session.submit_many(msgs(3)), session.submit(msgs(1)[0])
            )
            return [*a, *b, c], time.monotonic() - started

    results, elapsed = asyncio.run(main())
    assert [r.outcome for r in results].count("uncertain") == 8
    assert elapsed >= 0.55


def test_async_on_result_holds_its_place(server: SmppServer) -> None:
    """An async on_result is awaited before its place takes the next message: at most ``window`` run
    at once, each result once, and submit_many returns after the last one."""
    seen: list[int] = []
    running = {"now": 0, "most": 0}

    async def record(result: SubmitResult) -> None:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.005)
        seen.append(result.key)
        running["now"] -= 1

    async def main() -> list[SubmitResult]:
        async with SmppSession(config(server, window=3)) as session:
            return await session.submit_many(msgs(12), on_result=record)

    results = asyncio.run(main())
    assert sorted(seen) == list(range(12)) == [r.key for r in results]
    assert 1 <= running["most"] <= 3


def test_a_failing_on_result_is_raised_after_the_rest_settle(server: SmppServer) -> None:
    """on_result raising stops new messages; the error comes out of submit_many."""
    calls: list[int] = []

    def explode(result: SubmitResult) -> None:
        calls.append(result.key)
        if result.key == 2:
            raise RuntimeError("ledger down")

    async def main() -> None:
        async with SmppSession(config(server, window=2)) as session:
            await session.submit_many(msgs(50), on_result=explode)

    with pytest.raises(RuntimeError, match="ledger down"):
        asyncio.run(main())
    assert 2 in calls and len(calls) < 50


def test_rate_paces_windowed_sending(server: SmppServer) -> None:
    """``rate`` spaces submit_sm starts even with a wide window."""

    async def main() -> float:
        async with SmppSession(config(server, window=50, rate=200)) as session:
            started = time.monotonic()
            await session.submit_many(msgs(21))
            return time.monotonic() - started

    assert asyncio.run(main()) >= 0.09  # 20 intervals of 5 ms


def test_giving_up_reconnecting_raises_transport_error() -> None:
    """With the server gone for good, submit_many raises TransportError instead of waiting forever."""
    srv = SmppServer(SimpleBackend())
    srv.start()

    async def main() -> None:
        cfg = config(srv, reconnect_attempts=2, reconnect_backoff=0.02, response_timeout=0.5)
        async with SmppSession(cfg) as session:
            await session.submit_many(msgs(3))
            await asyncio.get_running_loop().run_in_executor(None, srv.stop)
            await session.submit_many(msgs(5))

    started = time.monotonic()
    with pytest.raises(TransportError):
        asyncio.run(main())
    assert time.monotonic() - started < 5


def test_receiver_cannot_submit_many(server: SmppServer) -> None:
    """A receiver session refuses submit_many before sending anything; bad items are refused first."""

    async def main(bind: str, items: list[dict[str, object]]) -> None:
        async with SmppSession(config(server, bind=bind)) as session:  # type: ignore[arg-type]
            await session.submit_many(items)

    with pytest.raises(ConfigError, match="receiver"):
        asyncio.run(main("receiver", msgs(2)))
    with pytest.raises(ConfigError, match="needs"):
        asyncio.run(main("transceiver", [*msgs(2), {"to": "855"}]))
    assert server.backend.record == []


def test_slots_are_first_come_first_served_and_survive_cancellation() -> None:
    """take/give hand slots over in order; a cancelled acquire gives its slot back or leaves the queue."""
    slots, got = Slots(1), []
    slots.take(got.append, "a")
    slots.take(got.append, "b")
    slots.take(got.append, "c")
    assert got == ["a"] and slots.free == 0
    slots.give()
    assert got == ["a", "b"]

    async def main() -> int:
        waiter = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        waiter.cancel()  # still queued behind "c": leaves the queue
        await asyncio.gather(waiter, return_exceptions=True)
        slots.give()  # to "c"
        slots.give()  # free
        slots.take(got.append, "d")  # taken at once
        granted = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        slots.give()  # granted to the waiting coroutine, which is cancelled before it resumes
        granted.cancel()
        await asyncio.gather(granted, return_exceptions=True)
        return slots.free

    assert asyncio.run(main()) == 1 and got == ["a", "b", "c", "d"] and not slots.waiting


def test_settle_one_agrees_with_settle() -> None:
    """The one-part shortcut gives settle's result for every outcome."""
    msg = SmppMessage("85512", "hi", "S", key=7)
    for answer in (("accepted", "id-1", 0, 2), ("rejected", None, 0x45, 0), ("uncertain", None, None, 1)):
        assert settle_one(msg.key, msg.to, answer) == settle(msg.key, msg.to, [answer])  # type: ignore[arg-type]

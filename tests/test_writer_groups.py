"""How the callback receiver groups reports into commits (``plasgate_nb._writer.GroupWriter``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from plasgate_nb._writer import IN_FLIGHT, GroupWriter


async def _burst(writer: GroupWriter, reports: int) -> list[int]:
    """Submit ``reports`` reports at once to ``writer`` (its commits take 10 ms); the sizes of its groups."""
    loop = asyncio.get_running_loop()
    groups: list[int] = []
    with_writer = [0]
    most = [0]

    def start(events: list[dict[str, Any]]) -> Awaitable[tuple[str, str]]:
        groups.append(len(events))
        with_writer[0] += 1
        most[0] = max(most[0], with_writer[0])
        done: asyncio.Future[tuple[str, str]] = loop.create_future()

        def finish() -> None:
            with_writer[0] -= 1
            done.set_result(("ok", ""))

        loop.call_later(0.01, finish)
        return done

    writer._start = start  # type: ignore[method-assign]
    writer.task = asyncio.create_task(writer.run())
    try:
        await asyncio.wait_for(asyncio.gather(*(writer.submit({"n": i}) for i in range(reports))), 10)
    finally:
        writer.task.cancel()
    assert most[0] <= IN_FLIGHT
    return groups


def test_a_writer_process_gets_the_first_reports_of_a_burst_while_the_rest_arrive() -> None:
    """The idle writer gets the first reports at once, the rest go together; each is committed once."""
    writer = GroupWriter(object(), ledger_url="sqlite:///unused.db", eager=4)  # type: ignore[arg-type]
    assert asyncio.run(_burst(writer, 30)) == [4, 26]


def test_a_writer_thread_takes_the_whole_burst_in_one_group() -> None:
    """Without a writer process a hand-over wakes a thread (the GIL): the burst stays one commit."""
    writer = GroupWriter(object(), eager=4)  # type: ignore[arg-type]
    try:
        assert asyncio.run(_burst(writer, 30)) == [30]
    finally:
        assert writer.executor is not None
        writer.executor.shutdown()

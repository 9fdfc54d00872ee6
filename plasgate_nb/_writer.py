"""The callback receiver's group writer: reports of concurrent requests committed together, durably.

Each request hands its event to :class:`GroupWriter` and waits until it is committed (and on disk).
Events are handed to the writer in groups: one transaction for many requests, handed over once no
more reports keep arriving (up to ``IN_FLIGHT`` groups at once). With a writer process, a group also
leaves as soon as ``EAGER`` events are waiting while the writer has nothing to do, from inside the
request that completes it: the writer commits the first reports of a burst while the event loop still
parses the rest, which then go as one group. Measured with 50 connections (``benchmarks/callbacks.py``,
2-core machine): when a group waited for the whole burst, the loop sat idle during every commit and
the writer during every parse (3,650 stored reports/s, 256 µs of CPU per report); eager groups
whenever fewer than ``IN_FLIGHT`` were with the writer stored 4,350-4,560/s but cost 330-350 µs (a
transaction costs about 570 µs of CPU beyond its reports); eager only into an idle writer,
4,440-4,780/s at 270-290 µs. A writer thread keeps whole-burst groups: each hand-over wakes a thread
that competes with the loop for the GIL (a no-op sink fell from 9,460 to 5,390 reports/s).

Commits run in a writer thread or (``ledger_url`` given) a writer process, so the ledger's Python
work runs on another core than the HTTP handling. The writer process takes every group waiting on its
pipe into one transaction, committed without waiting for the disk; a sync thread of its own makes it
durable (one ``fdatasync`` for every group committed meanwhile, see ``ledger._wal``) and only then
answers each group.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import queue
import threading
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from .errors import CallbackError, LedgerError

if TYPE_CHECKING:
    from .callbacks import EventSink

logger = logging.getLogger("plasgate_nb")

EAGER = 12  # events that make a group leave at once for an idle writer, from the request that completes it
GATHER_TURNS = 8  # event-loop turns the rest waits for more reports while more keep arriving
IN_FLIGHT = 4  # groups with the writer at once (the writer process takes those waiting together)

Outcome = tuple[str, str]  # ("ok" | "refused" | "failed", reason)
Answer = tuple[list[int], Outcome]  # the groups (by sequence number) one transaction held, and its outcome
Pending = tuple[dict[str, Any], "asyncio.Future[None]"]  # an event and the request waiting for it


def is_refusal(exc: LedgerError) -> bool:
    """Tell a validation refusal (the event itself is bad) from a storage failure."""
    return exc.__cause__ is None


def _record(sink: EventSink, events: list[dict[str, Any]], *, sync: bool = True) -> Outcome:
    """Record ``events`` through ``sink`` and describe the outcome (never raises).

    ``sync=False`` (the writer process, whose sink is a Ledger): commit without waiting for the disk;
    the caller syncs before answering.
    """
    try:
        if sync:
            sink.record_events(events)
        else:
            sink.record_events(events, sync=False)  # type: ignore[call-arg]
    except LedgerError as exc:
        return ("refused" if is_refusal(exc) else "failed", str(exc))
    except Exception as exc:  # never crash the receiver; the gateway retries on 503
        return "failed", type(exc).__name__
    return "ok", ""


def _sync_and_answer(sink: Any, conn: Connection, answers: queue.SimpleQueue[Answer | None]) -> None:
    """Writer process, sync thread: make committed groups durable, then answer them.

    It takes every answer waiting, syncs the ledger once for all of them (one ``fdatasync`` on SQLite
    while the main thread already runs the next transaction), then sends each group's outcome.
    """
    while True:
        batch = [answers.get()]
        while not answers.empty():
            batch.append(answers.get())
        done = batch[-1] is None
        batch = [answer for answer in batch if answer is not None]
        failure: Outcome | None = None
        if any(outcome[0] == "ok" for _, outcome in batch):
            try:
                sink.sync_events()
            except Exception as exc:  # the disk failed: none of these groups is known to be stored
                failure = ("failed", str(exc) if isinstance(exc, LedgerError) else type(exc).__name__)
        try:
            for seqs, outcome in batch:
                for seq in seqs:
                    conn.send((seq, failure if failure is not None and outcome[0] == "ok" else outcome))
        except OSError:  # the server is gone
            return
        if done:
            return


def writer_main(ledger_url: str, conn: Connection) -> None:
    """Writer process: open the ledger, say ready, then record the groups received and answer each.

    The main thread takes every group waiting on the pipe into one transaction (each group in its own
    when that fails), committed without waiting for the disk; a sync thread makes it durable (one sync
    for all the groups committed meanwhile) and only then answers ``(sequence number, outcome)`` for
    each group. It ends when the server's end of the pipe closes, also when the server was killed
    (kill -9) while a group was being committed: that group stays stored, unanswered; the gateway
    retries those reports and the ledger keeps one copy of each.
    """
    from .ledger import Ledger

    sink = Ledger(ledger_url)
    sink.campaign_token("")  # open the connection now rather than on the first report
    answers: queue.SimpleQueue[Answer | None] = queue.SimpleQueue()
    syncer = threading.Thread(target=_sync_and_answer, args=(sink, conn, answers), name="plasgate-nb-sync")
    try:
        conn.send(True)
        syncer.start()
        while True:
            groups = [conn.recv()]
            while conn.poll():
                groups.append(conn.recv())
            outcome = _record(sink, [event for _, group in groups for event in group], sync=False)
            if outcome[0] == "ok" or len(groups) == 1:
                answers.put(([seq for seq, _ in groups], outcome))
                continue
            for seq, group in groups:  # one group's bad event must not fail the other groups
                answers.put(([seq], _record(sink, group, sync=False)))
    except (EOFError, OSError):  # the server closed the pipe or is gone
        return
    finally:
        answers.put(None)
        if syncer.is_alive():
            syncer.join(timeout=30)
        sink.close()


class WriterProcess:
    """A writer process fed through a pipe; the event loop reads its answers itself (no helper threads).

    Groups are sent as ``(sequence number, events)`` without waiting for the previous one's answer, so
    the writer takes the next group while the previous one is synced to disk. A process pool's helper
    threads would compete with the event loop for the GIL and add latency to every group; here a
    request and its answer each are one pickle over the pipe.
    """

    def __init__(self, ledger_url: str) -> None:
        context = multiprocessing.get_context("spawn")  # safe beside the server's threads
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=writer_main, args=(ledger_url, child), daemon=True, name="plasgate-nb-writer"
        )
        self.process.start()
        child.close()
        self.loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = self.loop.create_future()
        self.waiting: dict[int, asyncio.Future[Outcome]] = {}
        self.sequence = 0
        self.gone: BaseException | None = None
        self.loop.add_reader(self.conn.fileno(), self._readable)

    def _readable(self) -> None:
        """Take every answer the writer sent (the event loop calls this when the pipe is readable)."""
        try:
            while self.conn.poll():
                message = self.conn.recv()
                if message is True:
                    if not self.ready.done():
                        self.ready.set_result(None)
                    continue
                seq, outcome = message
                future = self.waiting.pop(seq, None)
                if future is not None and not future.done():
                    future.set_result(outcome)
        except (EOFError, OSError) as exc:  # the writer is gone: every group waiting fails
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Stop reading and fail whoever waits (their reports get a 503 and are retried)."""
        if self.gone is None:
            self.gone = exc
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self.conn.fileno())
        for future in [self.ready, *self.waiting.values()]:
            if not future.done():
                future.set_exception(type(exc)(*exc.args))
        self.waiting.clear()

    async def started(self) -> None:
        """Return once the writer has opened its ledger (EOFError when it could not)."""
        await self.ready

    def send(self, events: list[dict[str, Any]]) -> asyncio.Future[Outcome]:
        """Send ``events`` to the writer now; the future gives the outcome (EOFError/OSError: writer gone).

        Only once :meth:`started` returned.
        """
        future: asyncio.Future[Outcome] = self.loop.create_future()
        if self.gone is not None:
            future.set_exception(EOFError("the writer process is gone"))
            return future
        self.sequence += 1
        self.waiting[self.sequence] = future
        try:
            self.conn.send((self.sequence, events))
        except OSError as exc:
            self._fail(exc)
        return future

    def close(self) -> None:
        """Stop the writer (it ends when the pipe closes) and wait for it."""
        if self.gone is None:
            self._fail(EOFError("the writer is closed"))
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class GroupWriter:
    """Collect events from concurrent requests and commit them together, releasing each after commit.

    See the module docstring for how groups are formed. ``eager``: the number of waiting events that
    makes a group leave at once (with a writer process); ``max_group``: the most events in one group.
    """

    def __init__(
        self, sink: EventSink, *, ledger_url: str | None = None, max_group: int = 2000, eager: int = EAGER
    ) -> None:
        self.max_group = max_group
        self.eager = eager if ledger_url is not None else max_group  # see the module docstring
        self.pending: list[Pending] = []
        self.arrived = asyncio.Event()
        self.freed = asyncio.Event()
        self.in_flight = 0
        self.sink = sink
        self.ledger_url = ledger_url
        self.executor: ThreadPoolExecutor | None = None
        self.process: WriterProcess | None = None
        if ledger_url is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plasgate-nb-ledger")
        self.task: asyncio.Task[None] | None = None
        self.flushing: set[asyncio.Task[None]] = set()
        self.restarting = asyncio.Lock()

    async def start(self) -> None:
        """Start the writer task; a writer process is started and its ledger opened before this returns."""
        if self.ledger_url is not None:
            self.process = WriterProcess(self.ledger_url)
            await self.process.started()
        self.task = asyncio.create_task(self.run())

    async def submit(self, event: dict[str, Any]) -> None:
        """Queue ``event`` and return once it is committed (raises if the commit failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append((event, future))
        if len(self.pending) >= self.eager and self.in_flight == 0 and self.task is not None:
            self._hand_over()  # the idle writer starts on these now, while the loop parses the next requests
        else:
            self.arrived.set()
        await future

    def _start(self, events: list[dict[str, Any]]) -> Awaitable[Outcome]:
        """Give ``events`` to the writer now; the awaitable gives the outcome (EOFError: writer gone)."""
        loop = asyncio.get_running_loop()
        if self.executor is not None:
            return loop.run_in_executor(self.executor, functools.partial(_record, self.sink, events))
        if self.process is None:
            missing: asyncio.Future[Outcome] = loop.create_future()
            missing.set_exception(EOFError("the writer process is not started"))
            return missing
        return self.process.send(events)

    async def _outcome(self, started: Awaitable[Outcome], process: WriterProcess | None) -> Outcome:
        """Wait for a commit; a dead writer is a storage failure (503: the gateway retries), and is replaced."""
        try:
            return await started
        except (EOFError, OSError) as exc:  # the writer process died: answer 503, start a new one
            async with self.restarting:
                if process is not None and self.process is process and self.ledger_url is not None:
                    logger.error("the callback writer process stopped (%s); starting a new one", type(exc).__name__)
                    process.close()
                    self.process = WriterProcess(self.ledger_url)
                    await self.process.started()
            return "failed", type(exc).__name__

    async def _commit(self, events: list[dict[str, Any]]) -> Outcome:
        """Run one commit in the writer and wait for it."""
        process = self.process
        return await self._outcome(self._start(events), process)

    def _hand_over(self) -> None:
        """Give the writer the oldest waiting events (up to ``max_group``) as one group, now."""
        group, self.pending = self.pending[: self.max_group], self.pending[self.max_group :]
        process = self.process
        started = self._start([event for event, _ in group])
        self.in_flight += 1
        task = asyncio.create_task(self._flush(group, started, process))
        self.flushing.add(task)
        task.add_done_callback(self.flushing.discard)

    async def run(self) -> None:
        """Hand over what the requests left waiting, once no more keep arriving, until cancelled."""
        while True:
            await self.arrived.wait()
            self.arrived.clear()
            for _ in range(GATHER_TURNS):  # let requests already received join (fewer, larger commits)
                size = len(self.pending)
                await asyncio.sleep(0)
                if len(self.pending) == size:
                    break
            while self.pending:
                while self.in_flight >= IN_FLIGHT:  # more gather meanwhile
                    self.freed.clear()
                    await self.freed.wait()
                if self.pending:
                    self._hand_over()

    async def _flush(self, group: list[Pending], started: Awaitable[Outcome], process: WriterProcess | None) -> None:
        """Wait for one group's commit and release its requests (one by one if the group failed)."""
        try:
            outcome, reason = await self._outcome(started, process)
            if outcome == "ok":
                for _, future in group:
                    if not future.done():
                        future.set_result(None)
                return
            # one bad event must not fail its neighbours: write them one by one
            logger.warning("group of %d callbacks failed (%s); writing them one by one", len(group), outcome)
            for event, future in group:
                outcome, reason = await self._commit([event]) if len(group) > 1 else (outcome, reason)
                if future.done():
                    continue
                if outcome == "ok":
                    future.set_result(None)
                else:
                    logger.error("could not store a callback: %s", reason)
                    error = CallbackError(f"refused: {reason}") if outcome == "refused" else LedgerError(reason)
                    future.set_exception(error)
        finally:
            self.in_flight -= 1
            self.freed.set()

    async def close(self) -> None:
        """Stop the writer task, the groups being written, and the writer thread or process."""
        tasks = [t for t in (self.task, *self.flushing) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        if self.process is not None:
            self.process.close()

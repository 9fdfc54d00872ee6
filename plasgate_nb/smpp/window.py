"""Windowed submit_sm without a task per message: the engine behind ``SmppSession.submit_many``.

Each part of a message takes a window slot, leaves through the session's batched writer and settles
from a callback run as its submit_sm_resp is read (no future, no task switch per PDU), so a chunk of
answers becomes the next chunk of submit_sm within one pass of the event loop. The rules are those of
``SmppSession.submit``: a throttling answer pauses the pacer and sends the same part again; a part
written without an answer (timeout, dropped connection) is ``uncertain`` and never resent; parts not
yet written wait for the reconnection; at most ``window`` messages are in progress, and a message
waits in its place for the (async) ``on_result`` of the one before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import TransportError
from . import pdu as _pdu
from .config import SmppMessage, SubmitResult
from .message import Part, build_parts

if TYPE_CHECKING:
    from .session import SmppSession

__all__ = ["Answer", "Reply", "Slots", "Window", "settle", "settle_one"]

logger = logging.getLogger("plasgate_nb")
Answer = tuple[str, str | None, int | None, int]  # (outcome, message_id, status, throttled count)
THROTTLED = frozenset({_pdu.ESME_RTHROTTLED, _pdu.ESME_RMSGQFUL})
_ERRORS = {"uncertain": "no submit_sm_resp (timeout or connection lost)"}


def settle(key: Any, to: str, answers: list[Answer]) -> SubmitResult:
    """Turn the answers to a message's parts into its result (uncertain beats rejected beats accepted)."""
    outcomes = {a[0] for a in answers}
    ids = tuple(a[1] for a in answers)
    throttled = sum(a[3] for a in answers)
    if "uncertain" in outcomes:
        error = _ERRORS["uncertain"]
        return SubmitResult(key, to, "uncertain", ids, ids[-1], None, error, throttled)
    if "rejected" in outcomes:
        status = next(a[2] for a in answers if a[0] == "rejected")
        name = _pdu.status_name(status or 0)
        return SubmitResult(key, to, "rejected", ids, ids[-1], status, name, throttled)
    return SubmitResult(key, to, "accepted", ids, ids[-1], 0, None, throttled)


def settle_one(key: Any, to: str, answer: Answer) -> SubmitResult:
    """``settle`` for a message of one part (the common case, in straight-line code)."""
    outcome, message_id, status, throttled = answer
    if outcome == "accepted":
        return SubmitResult(key, to, "accepted", (message_id,), message_id, 0, None, throttled)
    error = _ERRORS["uncertain"] if outcome == "uncertain" else _pdu.status_name(status or 0)
    return SubmitResult(key, to, outcome, (message_id,), message_id, status, error, throttled)  # type: ignore[arg-type]


class Slots:
    """A session's window: ``size`` submit_sm in flight at most, shared by every sender on it.

    Like ``asyncio.Semaphore`` (first come, first served) but callback-based: ``take(func, arg)`` calls
    ``func(arg)`` once a slot is free (at once if one is), ``give()`` hands a slot to the next waiter.
    """

    __slots__ = ("free", "waiting")

    def __init__(self, size: int) -> None:
        """Start with ``size`` free slots."""
        self.free = size
        self.waiting: deque[tuple[Callable[[Any], None], Any]] = deque()

    def take(self, func: Callable[[Any], None], arg: Any) -> None:
        """Call ``func(arg)`` holding a slot: now if one is free, else when one is given back."""
        if self.free and not self.waiting:
            self.free -= 1
            func(arg)
        else:
            self.waiting.append((func, arg))

    def give(self) -> None:
        """Give a slot back: to the first waiter, if any."""
        if self.waiting:
            func, arg = self.waiting.popleft()
            func(arg)
        else:
            self.free += 1

    async def acquire(self) -> None:
        """Wait for a slot (for a coroutine; ``give()`` it back after use)."""
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (_grant, granted)
        self.take(*entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.give()
            elif entry in self.waiting:
                self.waiting.remove(entry)
            raise


def _grant(fut: asyncio.Future[None]) -> None:
    """Wake a coroutine waiting in ``Slots.acquire``."""
    if not fut.done():
        fut.set_result(None)


class Reply:
    """One part on its way, standing for a future in the session's pending map while it is written:
    which message (input index, recipient, sender, key), which part, how often throttled, and (for a
    message of several parts) the answers its siblings share. Its answer is handed over by callback."""

    __slots__ = ("_done", "answers", "index", "key", "number", "part", "sender", "throttled", "to", "window")

    def __init__(
        self,
        window: Window,
        index: int,
        to: str,
        sender: str,
        key: Any,
        part: Part,
        number: int,
        answers: list[Answer | None] | None,
    ) -> None:
        """Remember the message, the part and the shared answers."""
        self.window, self.index, self.to, self.sender, self.key = window, index, to, sender, key
        self.part, self.number, self.answers = part, number, answers
        self.throttled, self._done = 0, False

    def done(self) -> bool:
        """Whether the answer to the latest write (or its loss) was already handled."""
        return self._done

    def answer(self, status: int, message_id: str) -> None:
        """Handle a submit_sm_resp."""
        self._done = True
        self.window.answered(self, status, message_id)

    def set_result(self, resp: _pdu.Pdu) -> None:
        """Handle a decoded submit_sm_resp (the future's interface)."""
        self.answer(resp.status, resp.get("message_id", ""))

    def set_exception(self, exc: BaseException) -> None:
        """Handle a timeout or a lost connection: the part is uncertain."""
        self._done = True
        self.window.lost(self)


class Window:
    """Send ``items`` over ``session`` with at most ``window`` submit_sm in flight (``await run()``)."""

    def __init__(
        self,
        session: SmppSession,
        items: list[SmppMessage | Mapping[str, Any]],
        on_result: Callable[[SubmitResult], Awaitable[None] | None] | None,
    ) -> None:
        """Prepare the run; nothing is sent before ``run()``."""
        self.session, self.items, self.on_result = session, items, on_result
        self.results: list[SubmitResult | None] = [None] * len(items)
        self.left: dict[int, int] = {}  # parts not settled yet of the messages of several parts
        self.failed: set[int] = set()  # messages a TransportError stopped
        self.next = 0
        self.slots = session._slots
        self.parked: list[Reply] = []  # parts waiting for the session to be bound again
        self.active = 0  # messages in progress, including their on_result
        self.failure: BaseException | None = None  # the session gave up: start nothing more
        self.error: BaseException | None = None  # raised by on_result or by build_parts
        self.tasks: set[asyncio.Task[Any]] = set()
        self.finished: asyncio.Future[None] | None = None

    async def run(self) -> list[SubmitResult]:
        """Send everything; return the results in input order (raise TransportError if the session
        gave up, once the messages already started have settled)."""
        self.finished = asyncio.get_running_loop().create_future()
        for _ in range(min(self.session.config.window, len(self.items))):
            self.start_next()
        self.check_done()
        await self.finished
        if self.error is not None:
            raise self.error
        if self.failure is not None:
            raise self.failure
        return [r for r in self.results if r is not None]

    def check_done(self) -> None:
        """Wake ``run`` once no message is in progress."""
        if self.active == 0 and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    def start_next(self) -> None:
        """Start the next message in a free place, unless all are started or the run stopped."""
        if self.failure is not None or self.error is not None or self.next >= len(self.items):
            return
        index, self.next = self.next, self.next + 1
        item, session = self.items[index], self.session
        if isinstance(item, SmppMessage):
            to, sender, key, text = item.to, item.sender, item.key, item.text
        else:  # as SmppMessage.coerce reads it (checked by submit_many), without building one
            text = str(item.get("text", item.get("content")))
            to, sender, key = str(item["to"]), str(item["sender"]), item.get("key")
        cfg = session.config
        try:
            parts = build_parts(
                text, concat=cfg.concat, reference=next(session._refs), registered_delivery=cfg.registered_delivery
            )
        except ValueError as exc:
            self.error = exc
            return
        self.active += 1
        if len(parts) == 1:
            self.dispatch(Reply(self, index, to, sender, key, parts[0], 0, None))
            return
        answers: list[Answer | None] = [None] * len(parts)
        self.left[index] = len(parts)
        for number, part in enumerate(parts):
            self.dispatch(Reply(self, index, to, sender, key, part, number, answers))

    def dispatch(self, job: Reply) -> None:
        """Send a part when bound and a window slot is free; else make it wait for either."""
        session = self.session
        if session._failure is not None or session._closing:
            failure = session._failure
            exc = TransportError(str(failure) if failure is not None else "SMPP session closed")
            exc.__cause__ = failure
            self.settled(job, None, exc)
            return
        if not session._bound.is_set():
            self.parked.append(job)
            if len(self.parked) == 1:
                task = asyncio.get_running_loop().create_task(self.rebound())
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            return
        self.slots.take(_paced, job)

    def paced(self, job: Reply) -> None:
        """Write a part holding a slot, now or when the pacer allows."""
        delay = self.session._pacer.reserve()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.write, job)
        else:
            self.write(job)

    def write(self, job: Reply) -> None:
        """Write a part; a part that cannot be written gives its slot back and waits for the bind."""
        session = self.session
        if session._bound.is_set():
            job._done = False
            try:
                session._request_submit(job.to, job.sender, job.part, job)
            except TransportError:  # ConnectionLost: closing, connection_lost not run yet
                session._bound.clear()
            else:
                session.stats["submitted"] += 1
                return
        self.slots.give()
        self.dispatch(job)

    async def rebound(self) -> None:
        """Wait for the session to be bound again, then send the parked parts."""
        with contextlib.suppress(TransportError):  # dispatch then fails each part with the failure
            await self.session._wait_bound()
        parked, self.parked = self.parked, []
        for job in parked:
            self.dispatch(job)

    def answered(self, job: Reply, status: int, message_id: str) -> None:
        """Settle a part from its submit_sm_resp, or send it again after a throttling answer."""
        session = self.session
        if status == 0:
            session._pacer.success()
            self.slots.give()
            self.settled(job, ("accepted", message_id, 0, job.throttled))
        elif status in THROTTLED and job.throttled < session.config.throttle_retries:
            job.throttled += 1
            session.stats["throttled"] += 1
            pause = session._pacer.slow_down()
            logger.info("smpp: %s; pausing %.2f s", _pdu.status_name(status), pause)
            self.slots.give()
            self.dispatch(job)
        else:
            self.slots.give()
            self.settled(job, ("rejected", None, status, job.throttled))

    def lost(self, job: Reply) -> None:
        """Settle a written part whose answer will not come as uncertain."""
        self.session.stats["uncertain"] += 1
        self.slots.give()
        self.settled(job, ("uncertain", None, None, job.throttled))

    def settled(self, job: Reply, answer: Answer | None, failure: BaseException | None = None) -> None:
        """Record a part's answer (or the failure stopping it); finish its message after the last part."""
        index, answers = job.index, job.answers
        if failure is not None:
            self.failure = self.failure or failure
            self.failed.add(index)
        elif answers is not None:
            answers[job.number] = answer
        if answers is not None:
            self.left[index] -= 1
            if self.left[index]:
                return
            del self.left[index]
        if index in self.failed:
            self.failed.discard(index)
            self.done_one()
            return
        key, to = job.key, job.to
        result = settle_one(key, to, answer) if answers is None else settle(key, to, answers)  # type: ignore[arg-type]
        self.results[index] = result
        if self.on_result is not None:
            try:
                outcome = self.on_result(result)
            except Exception as exc:
                self.error = self.error or exc
                self.done_one()
                return
            if inspect.isawaitable(outcome):
                task = asyncio.get_running_loop().create_task(_wait(outcome))
                self.tasks.add(task)
                task.add_done_callback(self.awaited)
                return
        self.done_one()

    def awaited(self, task: asyncio.Task[None]) -> None:
        """An async ``on_result`` returned: free its place."""
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.error = self.error or task.exception()
        self.done_one()

    def done_one(self) -> None:
        """A message is done: start the next one in its place."""
        self.active -= 1
        self.start_next()
        self.check_done()


def _paced(job: Reply) -> None:
    """``Window.paced`` for ``Slots.take``: a plain function, so that taking a slot allocates no bound
    method (and a finished Window is no reference cycle: it is freed as soon as it returns)."""
    job.window.paced(job)


async def _wait(awaitable: Awaitable[None]) -> None:
    """Await an ``on_result`` outcome (a task needs a coroutine)."""
    await awaitable

"""The callback receiver: a real HTTP server that durably records DLRs, batch callbacks and replies.

Routes name campaigns and rows only by what the ledger assigns, never by raw names or keys (a ``/``,
``%``, ``?``, ``#``, Khmer or a 1,000-character key must not change the path): ``{campaign}`` is the
campaign's ledger id, ``{token}`` its secret callback token (in the path, so that a gateway appending
``?id=...`` to the URL cannot lose it), ``{key}`` the digest of the message key (``_keys.key_digest``):

- ``GET|POST /dlr/{campaign}/{token}/{key}`` a delivery report for one personalized message (the key
  ``_group``: grouped content, paired with its row by message id);
- ``GET /batch/{campaign}/{token}`` and ``GET /errback/{campaign}/{token}`` batch callbacks;
- ``GET|POST /mo/{token}`` a reply from a handset (Jasmin's MO POST), ``{token}`` the ledger's reply token;
- ``GET /health``.

A callback authenticated for one campaign reaches only that campaign's rows. Every accepted report is
committed to the ledger, and on disk, before the answer ``200 ACK/Jasmin``; reports are committed in
groups (one transaction for all that arrived while the previous one was written), so a burst costs a
few commits, not one per request. In process mode the writer process commits a group and, while a
thread of its own waits for the disk (one ``fdatasync`` covering every group committed meanwhile, see
``ledger._wal``), already takes the next one; each group is answered once its sync returned. A
report that cannot be stored gets a 503 so the gateway retries; malformed input gets a 4xx with a
short reason and changes nothing. Connections that do not finish their request headers within
``header_timeout`` seconds are closed (slowloris). With ``smpp=SmppConfig(...)`` the
receiver also keeps a ``bind_receiver`` to the gateway and stores late receipts and replies
(``smpp.receiver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import multiprocessing
import queue
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._dlr import parse_batch_callback, parse_dlr
from ._keys import DIGEST_LENGTH, GROUP_KEY
from ._mo import parse_mo
from .errors import CallbackError, LedgerError
from .server import BackgroundServer, Mode

if TYPE_CHECKING:
    from .smpp.config import SmppConfig

__all__ = ["ACK", "HEADER_TIMEOUT", "CallbackServer", "EventSink", "callback_urls", "create_app", "reply_url"]

logger = logging.getLogger("plasgate_nb")

ACK = "ACK/Jasmin"
MAX_BODY = 16 * 1024
MAX_FIELDS = 40
GATHER_TURNS = 8  # event-loop turns the writer waits for more reports while more keep arriving
IN_FLIGHT = 3  # groups handed to the writer at once: one waiting for the disk, one being committed, one queued
HEADER_TIMEOUT = 10.0  # seconds a connection may take to send its request headers
_HEX = frozenset("0123456789abcdef")


class EventSink(Protocol):
    """What the receiver needs from a ledger."""

    def campaign_route(self, campaign_id: int) -> tuple[str, str] | None:
        """Return the name and callback token of the campaign with this ledger id, or None when unknown."""
        ...

    def record_events(self, events: list[dict[str, Any]]) -> int:
        """Durably record DLR and batch-callback events in one transaction."""
        ...

    def record_replies(self, campaign: str | None, items: list[dict[str, Any]]) -> int:
        """Durably record replies (mobile-originated messages)."""
        ...

    def reply_token(self) -> str:
        """Return the secret token the reply (MO) route must carry."""
        ...


def callback_urls(public_url: str, campaign_id: int, token: str) -> dict[str, str]:
    """Return the URLs the gateway is told for a campaign: ``dlr_url`` (with a ``{key}`` slot for the
    key's digest, see ``batch``), ``callback_url`` and ``errback_url``.

    ``campaign_id`` and ``token`` come from the ledger (``CampaignInfo.id``, ``CampaignInfo.token``):
    the campaign's name never appears in them.
    """
    base = public_url.rstrip("/")
    return {
        "dlr_url": f"{base}/dlr/{int(campaign_id)}/{token}/{{key}}",
        "callback_url": f"{base}/batch/{int(campaign_id)}/{token}",
        "errback_url": f"{base}/errback/{int(campaign_id)}/{token}",
    }


def reply_url(public_url: str, token: str) -> str:
    """Return the URL the gateway posts replies (MO) to: configure it once for the account."""
    return f"{public_url.rstrip('/')}/mo/{token}"


def _is_refusal(exc: LedgerError) -> bool:
    """Tell a validation refusal (the event itself is bad) from a storage failure."""
    return exc.__cause__ is None


Outcome = tuple[str, str]  # ("ok" | "refused" | "failed", reason)


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
        return ("refused" if _is_refusal(exc) else "failed", str(exc))
    except Exception as exc:  # never crash the receiver; the gateway retries on 503
        return "failed", type(exc).__name__
    return "ok", ""


Answer = tuple[list[int], Outcome]  # the groups (by sequence number) one transaction held, and its outcome


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


def _writer_main(ledger_url: str, conn: Connection) -> None:
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


class _WriterProcess:
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
            target=_writer_main, args=(ledger_url, child), daemon=True, name="plasgate-nb-writer"
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

    async def record(self, events: list[dict[str, Any]]) -> Outcome:
        """Record ``events`` in the writer; EOFError/OSError when the writer is gone."""
        if self.gone is not None:
            raise EOFError("the writer process is gone")
        await self.ready
        self.sequence += 1
        future: asyncio.Future[Outcome] = self.loop.create_future()
        self.waiting[self.sequence] = future
        try:
            self.conn.send((self.sequence, events))
        except OSError as exc:
            self._fail(exc)
        return await future

    def close(self) -> None:
        """Stop the writer (it ends when the pipe closes) and wait for it."""
        if self.gone is None:
            self._fail(EOFError("the writer is closed"))
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class _GroupWriter:
    """Collect events from concurrent requests and commit them together, releasing each after commit.

    Commits run in a writer thread or (``ledger_url`` given) a writer process, which lets the ledger's
    Python work run on another core than the HTTP handling. Up to ``IN_FLIGHT`` groups are handed over
    at once: while one group is written (or synced to disk), the next one is received, parsed and sent.
    """

    def __init__(self, sink: EventSink, *, ledger_url: str | None = None, max_group: int = 2000) -> None:
        self.max_group = max_group
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]] = asyncio.Queue()
        self.sink = sink
        self.ledger_url = ledger_url
        self.executor: ThreadPoolExecutor | None = None
        self.process: _WriterProcess | None = None
        if ledger_url is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plasgate-nb-ledger")
        self.task: asyncio.Task[None] | None = None
        self.flushing: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(IN_FLIGHT)
        self.restarting = asyncio.Lock()

    async def start(self) -> None:
        """Start the writer task; a writer process is started and its ledger opened before this returns."""
        if self.ledger_url is not None:
            self.process = _WriterProcess(self.ledger_url)
            await self.process.started()
        self.task = asyncio.create_task(self.run())

    async def submit(self, event: dict[str, Any]) -> None:
        """Queue ``event`` and return once it is committed (raises if the commit failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((event, future))
        await future

    async def _commit(self, events: list[dict[str, Any]]) -> Outcome:
        """Run one commit in the writer; a dead writer is a storage failure (503: the gateway retries)."""
        if self.executor is not None:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, functools.partial(_record, self.sink, events)
            )
        process = self.process
        if process is None or self.ledger_url is None:
            return "failed", "the writer process is not started"
        try:
            return await process.record(events)
        except (EOFError, OSError) as exc:  # the writer process died: answer 503, start a new one
            async with self.restarting:
                if self.process is process:
                    logger.error("the callback writer process stopped (%s); starting a new one", type(exc).__name__)
                    process.close()
                    self.process = _WriterProcess(self.ledger_url)
                    await self.process.started()
            return "failed", type(exc).__name__

    async def run(self) -> None:
        """Hand queued events over group by group until cancelled."""
        while True:
            group = [await self.queue.get()]
            for _ in range(GATHER_TURNS):  # let requests already received join (fewer, larger commits)
                size = self.queue.qsize()
                await asyncio.sleep(0)
                if self.queue.qsize() == size:
                    break
            await self.slots.acquire()  # at most IN_FLIGHT groups handed over; more gather meanwhile
            while len(group) < self.max_group and not self.queue.empty():
                group.append(self.queue.get_nowait())
            task = asyncio.create_task(self._flush(group))
            self.flushing.add(task)
            task.add_done_callback(self.flushing.discard)

    async def _flush(self, group: list[tuple[dict[str, Any], asyncio.Future[None]]]) -> None:
        """Commit one group and release its requests (one by one if the group failed)."""
        try:
            outcome, reason = await self._commit([e for e, _ in group])
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
            self.slots.release()

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


async def _fields(request: Request, *, encoding: str = "utf-8") -> dict[str, str]:
    """Read the callback's fields from the query string, a form body or a JSON body (bounded).

    ``encoding`` decodes percent-escapes of a form body (``latin-1`` keeps raw octets, as an MO's
    ``content`` carries them).
    """
    fields = dict(request.query_params.multi_items())
    if request.method == "GET":
        return fields
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise CallbackError("body too large")
    body = b""
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                raise CallbackError("body too large")
    except ClientDisconnect as exc:
        raise CallbackError("the client closed the connection before the body ended") from exc
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CallbackError("body is not UTF-8") from exc
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # deep nesting exhausts the decoder's recursion
            raise CallbackError("body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise CallbackError("JSON body must be an object")
        fields.update({str(k): str(v) for k, v in data.items() if isinstance(v, str | int)})
    elif text:
        try:
            fields.update(
                parse_qsl(
                    text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FIELDS, encoding=encoding
                )
            )
        except ValueError as exc:
            raise CallbackError("body is not a valid form") from exc
    return fields


def _campaign_id(text: str) -> int | None:
    """The campaign id of a path (decimal digits, no sign, no leading zero), or None."""
    if not text.isdigit() or not text.isascii() or len(text) > 18 or (len(text) > 1 and text[0] == "0"):
        return None
    return int(text)


def _is_digest(text: str) -> bool:
    """Whether a path segment is a key digest (32 lowercase hex characters)."""
    return len(text) == DIGEST_LENGTH and set(text) <= _HEX


def _storage_unavailable() -> Response:
    """The answer that makes the gateway retry later."""
    return PlainTextResponse("storage unavailable, retry later", status_code=503)


def create_app_from(sink: EventSink, *, ledger_url: str | None = None, smpp: SmppConfig | None = None) -> Starlette:
    """Build the receiver app over ``sink`` (a Ledger, or anything with the EventSink methods).

    With ``ledger_url``, commits run in a writer process that opens that ledger. With ``smpp``, the app
    keeps an SMPP receiver bound to the gateway for its lifetime (late receipts and replies).
    """
    routes: dict[int, tuple[str, str]] = {}
    reply_tokens: list[str] = []
    writer = _GroupWriter(sink, ledger_url=ledger_url)

    def campaign_of(request: Request) -> str | None:
        """The name of the campaign the path names by id, if its token matches (known routes are cached)."""
        cid = _campaign_id(request.path_params.get("campaign", ""))
        if cid is None:
            return None
        route = routes.get(cid)
        if route is None:
            route = sink.campaign_route(cid)
            if route is None:
                return None
            routes[cid] = route
        given = request.path_params.get("token", "")
        return route[0] if hmac.compare_digest(given.encode(), route[1].encode()) else None

    def handler(parse: Callable[[Mapping[str, str], str, Request], dict[str, Any]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            try:
                campaign = campaign_of(request)
            except Exception as exc:  # the ledger cannot be read: the gateway retries later
                logger.error("could not check a callback token: %s", type(exc).__name__)
                return _storage_unavailable()
            if campaign is None:
                return PlainTextResponse("forbidden", status_code=403)
            try:
                event = parse(await _fields(request), campaign, request)
            except CallbackError as exc:
                status = 413 if "too large" in str(exc) else 400
                return PlainTextResponse(str(exc), status_code=status)
            try:
                await writer.submit(event)
            except CallbackError as exc:
                return PlainTextResponse(str(exc), status_code=400)
            except Exception:
                return _storage_unavailable()
            return PlainTextResponse(ACK)

        return endpoint

    def dlr(fields: Mapping[str, str], campaign: str, request: Request) -> dict[str, Any]:
        key = request.path_params.get("key", "")
        if key != GROUP_KEY and not _is_digest(key):
            raise CallbackError("the URL names no message: expected a key digest or _group")
        event = parse_dlr(fields, campaign=campaign, message_key=None)
        if key != GROUP_KEY:
            event["key_digest"] = key
        return event

    def batch(fields: Mapping[str, str], campaign: str, request: Request) -> dict[str, Any]:
        return parse_batch_callback(fields, campaign=campaign, errback=False)

    def errback(fields: Mapping[str, str], campaign: str, request: Request) -> dict[str, Any]:
        return parse_batch_callback(fields, campaign=campaign, errback=True)

    async def store_replies(replies: list[dict[str, Any]]) -> None:
        """Record replies in the ledger (off the event loop); raises when they cannot be stored."""
        await asyncio.to_thread(sink.record_replies, None, replies)

    async def mo(request: Request) -> Response:
        """A reply from a handset, posted by the gateway's MO connector (Jasmin's deliverSmHttpThrower)."""
        try:
            if not reply_tokens:
                reply_tokens.append(await asyncio.to_thread(sink.reply_token))
        except Exception as exc:
            logger.error("could not read the reply token: %s", type(exc).__name__)
            return _storage_unavailable()
        given = request.path_params.get("token", "")
        if not hmac.compare_digest(given.encode(), reply_tokens[0].encode()):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            reply = parse_mo(await _fields(request, encoding="latin-1"))
        except CallbackError as exc:
            return PlainTextResponse(str(exc), status_code=413 if "too large" in str(exc) else 400)
        try:
            await store_replies([reply])
        except LedgerError as exc:
            if _is_refusal(exc):
                return PlainTextResponse(f"refused: {exc}", status_code=400)
            return _storage_unavailable()
        except Exception:
            return _storage_unavailable()
        return PlainTextResponse(ACK)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await writer.start()
        receiver = None
        if smpp is not None:
            from .smpp.receiver import SmppReceiver

            receiver = SmppReceiver(smpp, on_receipt=writer.submit, on_replies=store_replies)
            receiver.start()
            app.state.smpp_receiver = receiver
        try:
            yield
        finally:
            if receiver is not None:
                await receiver.stop()
            await writer.close()

    return Starlette(
        routes=[
            Route("/dlr/{campaign}/{token}/{key}", handler(dlr), methods=["GET", "POST"]),
            Route("/batch/{campaign}/{token}", handler(batch), methods=["GET"]),
            Route("/errback/{campaign}/{token}", handler(errback), methods=["GET"]),
            Route("/mo/{token}", mo, methods=["GET", "POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def create_app(ledger_url: str, *, writer: str = "process", smpp: SmppConfig | None = None) -> Starlette:
    """Build the receiver app over the ledger at ``ledger_url`` (the factory used in a child process).

    ``writer="process"`` commits in a writer process beside the server (HTTP and ledger work on two
    cores), ``"thread"`` in a thread of the server's process. ``smpp`` keeps an SMPP receiver bound.
    """
    from .ledger import Ledger

    if writer not in ("process", "thread"):
        raise CallbackError(f"writer must be 'process' or 'thread', not {writer!r}")
    return create_app_from(Ledger(ledger_url), ledger_url=ledger_url if writer == "process" else None, smpp=smpp)


class CallbackServer:
    """A callback receiver serving in a child process (default) or a thread, sharing the ledger's database.

    ``public_url`` is what the gateway is told (a tunnel or reverse proxy in front of this machine);
    by default the local URL. ``smpp`` (an :class:`~plasgate_nb.smpp.SmppConfig`) also keeps a
    ``bind_receiver`` to the gateway that stores receipts and replies arriving after a campaign's SMPP
    session unbound, reconnecting with backoff. Connections that take more than ``header_timeout``
    seconds to send their request headers are closed.

    ``workers=N`` (process mode) serves the port from N processes, each storing into the ledger (writers
    take turns there): for more reports per second than one process takes, when cores are free. A
    worker that dies (its unanswered reports are retried by the gateway and land on the others) is
    replaced by :meth:`revive`; ``pids`` lists the serving processes.
    """

    def __init__(
        self,
        ledger: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        mode: Mode = "process",
        smpp: SmppConfig | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        workers: int = 1,
    ) -> None:
        if not header_timeout > 0:
            raise CallbackError(f"header_timeout must be positive, not {header_timeout!r}")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise CallbackError(f"workers must be a whole number of at least 1, not {workers!r}")
        if workers > 1 and mode != "process":
            raise CallbackError("several workers need mode='process'")
        self.ledger = ledger
        self.public_url_setting = public_url
        self.smpp = smpp
        if mode == "process":
            self._server = BackgroundServer(
                "plasgate_nb.callbacks:create_app",
                kwargs={"ledger_url": ledger.url, "smpp": smpp},
                host=host,
                port=port,
                mode="process",
                header_timeout=header_timeout,
                workers=workers,
            )
        else:
            self._server = BackgroundServer(
                create_app_from,
                kwargs={"sink": ledger, "smpp": smpp},
                host=host,
                port=port,
                header_timeout=header_timeout,
            )

    @property
    def url(self) -> str:
        """The local URL the receiver listens on."""
        return self._server.url

    @property
    def public_url(self) -> str:
        """The URL the gateway is told to call."""
        return (self.public_url_setting or self._server.url).rstrip("/")

    @property
    def reply_url(self) -> str:
        """The URL to configure as the account's MO (reply) URL at the gateway."""
        return reply_url(self.public_url, self.ledger.reply_token())

    @property
    def pids(self) -> list[int]:
        """The ids of the processes serving (one per worker; empty in thread mode)."""
        return self._server.pids

    def revive(self) -> list[tuple[int, int | None, int]]:
        """Replace workers that died (several workers only); return ``(old pid, exit code, new pid)`` each."""
        return self._server.revive()

    def start(self) -> CallbackServer:
        """Start the receiver and return once it accepts connections."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop the receiver; safe to call more than once."""
        self._server.stop()

    def __enter__(self) -> CallbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<CallbackServer {self.public_url} {'running' if self._server.running else 'stopped'}>"

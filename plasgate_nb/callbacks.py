"""The callback receiver: a real HTTP server that durably records DLRs and batch callbacks.

Routes (``{campaign}`` and ``{key}`` URL-quoted, ``{token}`` the campaign's secret token, carried in
the path so that a gateway appending ``?id=...`` to the URL cannot lose it):

- ``GET|POST /dlr/{campaign}/{token}/{key}`` a delivery report for one personalized message (the key
  ``_group``: grouped content, paired with its row by message id);
- ``GET /batch/{campaign}/{token}`` and ``GET /errback/{campaign}/{token}`` batch callbacks;
- ``GET /health``.

Every accepted report is committed to the ledger before the answer ``200 ACK/Jasmin``; reports are
committed in groups (one transaction for all that arrived while the previous one was written), so a
burst costs a few commits, not one per request. A report that cannot be stored gets a 503 so the
gateway retries; malformed input gets a 4xx with a short reason and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._dlr import parse_batch_callback, parse_dlr
from ._keys import GROUP_KEY
from .errors import CallbackError, LedgerError
from .server import BackgroundServer, Mode

__all__ = ["ACK", "CallbackServer", "EventSink", "callback_urls", "create_app"]

logger = logging.getLogger("plasgate_nb")

ACK = "ACK/Jasmin"
MAX_BODY = 16 * 1024
MAX_FIELDS = 40
GATHER_TURNS = 8  # event-loop turns the writer waits for more reports while more keep arriving


class EventSink(Protocol):
    """What the receiver needs from a ledger."""

    def campaign_token(self, campaign: str) -> str | None:
        """Return the campaign's callback token, or None for an unknown campaign."""
        ...

    def record_events(self, events: list[dict[str, Any]]) -> int:
        """Durably record DLR and batch-callback events in one transaction."""
        ...


def callback_urls(public_url: str, campaign: str, token: str) -> dict[str, str]:
    """Return the URLs the gateway is told: ``dlr_url`` (with a ``{key}`` slot), batch and errback."""
    base = public_url.rstrip("/")
    name = quote(campaign, safe="")
    return {
        "dlr_url": f"{base}/dlr/{name}/{token}/{{key}}",
        "callback_url": f"{base}/batch/{name}/{token}",
        "errback_url": f"{base}/errback/{name}/{token}",
    }


def _is_refusal(exc: LedgerError) -> bool:
    """Tell a validation refusal (the event itself is bad) from a storage failure."""
    return exc.__cause__ is None


Outcome = tuple[str, str]  # ("ok" | "refused" | "failed", reason)


def _record(sink: EventSink, events: list[dict[str, Any]]) -> Outcome:
    """Record ``events`` through ``sink`` and describe the outcome (never raises)."""
    try:
        sink.record_events(events)
    except LedgerError as exc:
        return ("refused" if _is_refusal(exc) else "failed", str(exc))
    except Exception as exc:  # never crash the receiver; the gateway retries on 503
        return "failed", type(exc).__name__
    return "ok", ""


def _writer_main(ledger_url: str, conn: Connection) -> None:
    """Writer process: open the ledger, say ready, then record each group received and answer its outcome."""
    from .ledger import Ledger

    sink = Ledger(ledger_url)
    sink.campaign_token("")  # open the connection now rather than on the first report
    conn.send(True)
    while True:
        try:
            events = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_record(sink, events))


class _WriterProcess:
    """A writer process fed through a pipe; the event loop waits on the pipe itself (no helper threads).

    A process pool's helper threads compete with the event loop for the GIL and add latency to every
    group; here the request and the answer each are one pickle over the pipe.
    """

    def __init__(self, ledger_url: str) -> None:
        context = multiprocessing.get_context("spawn")  # safe beside the server's threads
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_writer_main, args=(ledger_url, child), daemon=True, name="plasgate-nb-writer"
        )
        self.process.start()
        child.close()

    async def _reply(self) -> Any:
        """Wait (without blocking the loop) for the writer's next answer."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self.conn.fileno()
        loop.add_reader(fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        return self.conn.recv()

    async def started(self) -> None:
        """Return once the writer has opened its ledger."""
        await self._reply()

    async def record(self, events: list[dict[str, Any]]) -> Outcome:
        """Record ``events`` in the writer; EOFError/OSError when the writer is gone."""
        self.conn.send(events)
        return await self._reply()

    def close(self) -> None:
        """Stop the writer (it ends when the pipe closes) and wait for it."""
        self.conn.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class _GroupWriter:
    """Collect events from concurrent requests and commit them together, releasing each after commit.

    Commits run one at a time, in a writer thread or (``ledger_url`` given) a writer process, which
    lets the ledger's Python work run on another core than the HTTP handling: while one group is
    written, the next one is received and parsed.
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
        if self.process is None or self.ledger_url is None:
            return "failed", "the writer process is not started"
        try:
            return await self.process.record(events)
        except (EOFError, OSError) as exc:  # the writer process died: answer 503, start a new one
            logger.error("the callback writer process stopped (%s); starting a new one", type(exc).__name__)
            self.process.close()
            self.process = _WriterProcess(self.ledger_url)
            await self.process.started()
            return "failed", type(exc).__name__

    async def run(self) -> None:
        """Write queued events group by group until cancelled."""
        while True:
            group = [await self.queue.get()]
            for _ in range(GATHER_TURNS):  # let requests already received join (fewer, larger commits)
                size = self.queue.qsize()
                await asyncio.sleep(0)
                if self.queue.qsize() == size:
                    break
            while len(group) < self.max_group and not self.queue.empty():
                group.append(self.queue.get_nowait())
            outcome, reason = await self._commit([e for e, _ in group])
            if outcome == "ok":
                for _, future in group:
                    if not future.done():
                        future.set_result(None)
                continue
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

    async def close(self) -> None:
        """Stop the writer task and its thread or process."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.executor is not None:
            self.executor.shutdown(wait=True)
        if self.process is not None:
            self.process.close()


async def _fields(request: Request) -> dict[str, str]:
    """Read the callback's fields from the query string, a form body or a JSON body (bounded)."""
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
        except ValueError as exc:
            raise CallbackError("body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise CallbackError("JSON body must be an object")
        fields.update({str(k): str(v) for k, v in data.items() if isinstance(v, str | int)})
    elif text:
        try:
            fields.update(parse_qsl(text, keep_blank_values=True, strict_parsing=True, max_num_fields=MAX_FIELDS))
        except ValueError as exc:
            raise CallbackError("body is not a valid form") from exc
    return fields


def create_app_from(sink: EventSink, *, ledger_url: str | None = None) -> Starlette:
    """Build the receiver app over ``sink`` (a Ledger, or anything with the EventSink methods).

    With ``ledger_url``, commits run in a writer process that opens that ledger.
    """
    tokens: dict[str, str] = {}
    writer = _GroupWriter(sink, ledger_url=ledger_url)

    def token_ok(request: Request, campaign: str) -> bool:
        """Whether the path carries the campaign's token (known tokens are cached; unknown names are not)."""
        expected = tokens.get(campaign)
        if expected is None:
            expected = sink.campaign_token(campaign)
            if expected is not None:
                tokens[campaign] = expected
        given = request.path_params.get("token", "")
        return expected is not None and hmac.compare_digest(given.encode(), expected.encode())

    def handler(parse: Callable[[Mapping[str, str], str, Request], dict[str, Any]]) -> Callable[..., Any]:
        async def endpoint(request: Request) -> Response:
            campaign = request.path_params["campaign"]
            try:
                allowed = token_ok(request, campaign)
            except Exception as exc:  # the ledger cannot be read: the gateway retries later
                logger.error("could not check a callback token: %s", type(exc).__name__)
                return PlainTextResponse("storage unavailable, retry later", status_code=503)
            if not allowed:
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
                return PlainTextResponse("storage unavailable, retry later", status_code=503)
            return PlainTextResponse(ACK)

        return endpoint

    def dlr(fields: Mapping[str, str], campaign: str, request: Request) -> dict[str, Any]:
        key = request.path_params.get("key")
        return parse_dlr(fields, campaign=campaign, message_key=None if key == GROUP_KEY else key)

    def batch(fields: Mapping[str, str], campaign: str, request: Request) -> dict[str, Any]:
        return parse_batch_callback(fields, campaign=campaign, errback=False)

    def errback(fields: Mapping[str, str], campaign: str, request: Request) -> dict[str, Any]:
        return parse_batch_callback(fields, campaign=campaign, errback=True)

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await writer.start()
        try:
            yield
        finally:
            await writer.close()

    return Starlette(
        routes=[
            Route("/dlr/{campaign}/{token}/{key}", handler(dlr), methods=["GET", "POST"]),
            Route("/batch/{campaign}/{token}", handler(batch), methods=["GET"]),
            Route("/errback/{campaign}/{token}", handler(errback), methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def create_app(ledger_url: str, *, writer: str = "process") -> Starlette:
    """Build the receiver app over the ledger at ``ledger_url`` (the factory used in a child process).

    ``writer="process"`` commits in a writer process beside the server (HTTP and ledger work on two
    cores), ``"thread"`` in a thread of the server's process.
    """
    from .ledger import Ledger

    if writer not in ("process", "thread"):
        raise CallbackError(f"writer must be 'process' or 'thread', not {writer!r}")
    return create_app_from(Ledger(ledger_url), ledger_url=ledger_url if writer == "process" else None)


class CallbackServer:
    """A callback receiver serving in a child process (default) or a thread, sharing the ledger's database.

    ``public_url`` is what the gateway is told (a tunnel or reverse proxy in front of this machine);
    by default the local URL.
    """

    def __init__(
        self,
        ledger: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
        mode: Mode = "process",
    ) -> None:
        self.ledger = ledger
        self.public_url_setting = public_url
        if mode == "process":
            self._server = BackgroundServer(
                "plasgate_nb.callbacks:create_app",
                kwargs={"ledger_url": ledger.url},
                host=host,
                port=port,
                mode="process",
            )
        else:
            self._server = BackgroundServer(create_app_from, kwargs={"sink": ledger}, host=host, port=port)

    @property
    def url(self) -> str:
        """The local URL the receiver listens on."""
        return self._server.url

    @property
    def public_url(self) -> str:
        """The URL the gateway is told to call."""
        return (self.public_url_setting or self._server.url).rstrip("/")

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

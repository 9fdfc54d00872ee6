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
from concurrent.futures import BrokenExecutor, Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Protocol
from urllib.parse import parse_qsl, quote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._dlr import parse_batch_callback, parse_dlr
from .batch import GROUP_KEY
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


_WORKER_SINK: list[EventSink] = []  # the ledger a writer process opened


def _open_worker(ledger_url: str) -> None:
    """Writer process initializer: open the ledger once."""
    from .ledger import Ledger

    _WORKER_SINK.append(Ledger(ledger_url))


def _warm_worker() -> bool:
    """Writer process task: open the ledger's connection now rather than on the first report."""
    _WORKER_SINK[0].campaign_token("")
    return True


def _record_in_worker(events: list[dict[str, Any]]) -> Outcome:
    """Writer process task: record ``events`` in the ledger opened by ``_open_worker``."""
    return _record(_WORKER_SINK[0], events)


def _writer_process(ledger_url: str) -> ProcessPoolExecutor:
    """A one-process pool (spawned: safe beside the server's threads) that writes to ``ledger_url``."""
    return ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_open_worker, initargs=(ledger_url,))


class _GroupWriter:
    """Collect events from concurrent requests and commit them together, releasing each after commit.

    Commits run one at a time, in a writer thread or (``ledger_url`` given) a writer process, which
    lets the ledger's Python work run on another core than the HTTP handling: while one group is
    written, the next one is received and parsed.
    """

    def __init__(self, sink: EventSink, *, ledger_url: str | None = None, max_group: int = 2000) -> None:
        self.max_group = max_group
        self.queue: asyncio.Queue[tuple[dict[str, Any], asyncio.Future[None]]] = asyncio.Queue()
        self.executor: Executor
        self.write: Callable[[list[dict[str, Any]]], Outcome]
        if ledger_url is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="plasgate-nb-ledger")
            self.write = functools.partial(_record, sink)
        else:
            self.executor = _writer_process(ledger_url)
            self.write = _record_in_worker
        self.ledger_url = ledger_url
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the writer task; a writer process is started and its ledger opened before this returns."""
        if isinstance(self.executor, ProcessPoolExecutor):
            await asyncio.get_running_loop().run_in_executor(self.executor, _warm_worker)
        self.task = asyncio.create_task(self.run())

    async def submit(self, event: dict[str, Any]) -> None:
        """Queue ``event`` and return once it is committed (raises if the commit failed)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((event, future))
        await future

    async def _commit(self, events: list[dict[str, Any]]) -> Outcome:
        """Run one commit in the writer; a broken writer is a storage failure (503: the gateway retries)."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, self.write, events)
        except BrokenExecutor as exc:  # the writer process died: answer 503 (the gateway retries), start anew
            logger.error("the callback writer process stopped (%s); starting a new one", type(exc).__name__)
            if self.ledger_url is not None:
                self.executor.shutdown(wait=False)
                self.executor = _writer_process(self.ledger_url)
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
        self.executor.shutdown(wait=True)


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
            fields.update(parse_qsl(text, keep_blank_values=True, strict_parsing=True,
                                    max_num_fields=MAX_FIELDS))
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

    def __init__(self, ledger: Any, *, host: str = "127.0.0.1", port: int = 0, public_url: str | None = None,
                 mode: Mode = "process") -> None:
        self.ledger = ledger
        self.public_url_setting = public_url
        if mode == "process":
            self._server = BackgroundServer("plasgate_nb.callbacks:create_app", kwargs={"ledger_url": ledger.url},
                                            host=host, port=port, mode="process")
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

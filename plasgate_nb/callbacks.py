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
few commits, not one per request (``_writer``: a group leaves while the loop still parses the rest of
a burst). In process mode the writer process commits a group and, while a thread of its own waits for
the disk (one ``fdatasync`` covering every group committed meanwhile, see ``ledger._wal``), already
takes the next one; each group is answered once its sync returned. A
report that cannot be stored gets a 503 so the gateway retries; malformed input gets a 4xx with a
short reason and changes nothing. Connections that do not finish their request headers within
``header_timeout`` seconds are closed (slowloris). With ``smpp=SmppConfig(...)`` the
receiver also keeps a ``bind_receiver`` to the gateway and stores late receipts and replies
(``smpp.receiver``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._dlr import parse_batch_callback, parse_dlr
from ._keys import DIGEST_LENGTH, GROUP_KEY
from ._mo import parse_mo
from ._writer import GroupWriter, is_refusal
from .errors import CallbackError, LedgerError
from .server import BackgroundServer, Mode

if TYPE_CHECKING:
    from .smpp.config import SmppConfig

__all__ = ["ACK", "HEADER_TIMEOUT", "CallbackServer", "EventSink", "callback_urls", "create_app", "reply_url"]

logger = logging.getLogger("plasgate_nb")

ACK = "ACK/Jasmin"
MAX_BODY = 16 * 1024
MAX_FIELDS = 40
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
    writer = GroupWriter(sink, ledger_url=ledger_url)

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
            if is_refusal(exc):
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

"""The simulator's HTTP face: Plasgate's REST and HTTP API routes, the report, and admin routes.

``create_app(config, admin_token)`` is the factory BackgroundServer calls (in a thread or a child
process). Admin routes under ``/_sim/`` need the ``X-Sim-Admin`` header; the parent's Simulator uses
them to read the record, change faults, move the clock and set balances.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import math
import random
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from .clock import ScheduleError, SimClock, parse_schedule
from .config import Account, SimulatorConfig
from .dlr import Dispatcher
from .faults import FaultBook, FaultMiddleware, fault_from_dict
from .mo import MoThrower
from .model import Gateway, InsufficientBalance, MessageSpec, new_ids
from .parse import (
    MSISDN,
    NO_ROUTE,
    Invalid,
    check_content,
    check_dlr,
    check_sender,
    parse_batch,
    parse_single,
)
from .smpp_server import GatewayBackend, SmppServer

__all__ = ["ADMIN_HEADER", "create_app"]

ADMIN_HEADER = "X-Sim-Admin"
logger = logging.getLogger("plasgate_nb")


def _json(status: int, body: Any, **headers: str) -> JSONResponse:
    """A JSON answer."""
    return JSONResponse(body, status_code=status, headers=headers or None)


def _text(status: int, text: str) -> PlainTextResponse:
    """A Jasmin HTTP API answer (text/plain)."""
    return PlainTextResponse(text, status_code=status)


class _ThenSchedule(JSONResponse):
    """A JSON answer that schedules its request's receipts once it has left (or failed to leave).

    Jasmin answers a batch first, then its workers hand each number to the HTTP API and throw the batch
    callbacks, errbacks and DLRs: none can reach the client before the 200 is on the wire.
    """

    def __init__(self, content: Any, *, after: Callable[[], None]) -> None:
        super().__init__(content, status_code=200)
        self.after = after

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Send the answer, then schedule (also when the client has gone: the gateway accepted)."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.after()


class SimApp:
    """Routes over one Gateway, Dispatcher and FaultBook."""

    def __init__(self, config: SimulatorConfig, admin_token: str | None) -> None:
        self.config = config
        self.admin_token = admin_token
        self.clock = SimClock(speed=config.clock_speed, start=config.start_time)
        self.gateway = Gateway(config, self.clock)
        self.dispatcher = Dispatcher(
            self.gateway,
            concurrency=config.callback_concurrency,
            timeout=config.callback_timeout,
            retries=config.callback_retries,
            retry_delay=config.callback_retry_delay,
        )
        self.faults = FaultBook(config.faults, rng=random.Random(None if config.seed is None else config.seed + 2))
        self.mo_http = MoThrower(
            retries=config.callback_retries, retry_delay=config.callback_retry_delay, timeout=config.callback_timeout
        )
        self.dispatcher.on_opt_out = self._opt_out
        self.smpp: SmppServer | None = None
        if config.smpp:
            self.smpp = SmppServer(
                GatewayBackend(self.gateway),
                port=config.smpp_port,
                book=self.faults,
                enquire_link_interval=config.smpp_enquire_link_interval,
            )

    # -- helpers -----------------------------------------------------------------------------------
    def _opt_out(self, index: int) -> None:
        """A handset replies its opt-out keyword: to the account's MO URL, else to its SMPP receiver."""
        account, sender, destination, text = self.gateway.opt_out(index)
        if account.mo_url:
            self.mo_http.throw(account.mo_url, sender=sender, destination=destination, text=text)
        elif self.smpp is not None:
            self.smpp.send_mo(account.username, sender=sender, destination=destination, text=text)
        else:
            logger.debug("simulator: an opt-out reply has nowhere to go (no mo_url, no SMPP)")

    def _rest_account(self, request: Request) -> Account | None:
        """Authenticate ``?private_key=`` + ``X-Secret``."""
        return self.gateway.authenticate_rest(request.query_params.get("private_key"), request.headers.get("x-secret"))

    def _limited(self, account: Account, route: str) -> str | None:
        """Return the Retry-After value when the account is over the route's rate limit."""
        wait = self.gateway.check_rate(account, route)
        return None if wait is None else str(max(1, math.ceil(wait)))

    def _too_many(self, route: str, retry: str) -> Response:
        """The REST 429 answer, naming the limit actually configured for ``route``."""
        limits = self.config.rate_limits
        per = "minute" if limits.window == 60 else f"{limits.window:g} s"
        return _json(
            429, {"message": f"Too many requests: {getattr(limits, route)} per {per}."}, **{"Retry-After": retry}
        )

    async def _flush(self, request: Request, events: list[Any]) -> None:
        """Throw the request's callbacks before answering when the fault asks for it."""
        if events:
            await self.dispatcher.throw_now(events)

    @staticmethod
    def _flags(request: Request) -> frozenset[str]:
        """Return the callback faults hitting this request."""
        return request.scope.get("sim.flags", frozenset())

    @staticmethod
    async def _body(request: Request) -> Any:
        """Parse the JSON body or raise Invalid naming the body."""
        try:
            return json.loads(await request.body())
        except ValueError as exc:
            raise Invalid({"body": [f"Malformed JSON: {exc}"]}) from exc

    # -- REST --------------------------------------------------------------------------------------
    async def rest_send(self, request: Request) -> Response:
        """POST /rest/send: one message, answers its queue_id (= the id its DLRs carry)."""
        account = self._rest_account(request)
        if account is None:
            return _json(401, {"message": "Invalid private key or secret."})
        if (retry := self._limited(account, "rest")) is not None:
            return self._too_many("rest", retry)
        try:
            spec = parse_single(await self._body(request), account)
            if not self.gateway.routed(spec.to[0]):
                return _json(412, {"message": NO_ROUTE.rstrip('"')})  # Jasmin's REST drops the closing quote
            ids, events = self.gateway.submit(account, "rest", [spec], flags=self._flags(request))
        except Invalid as exc:
            return _json(400, {"message": exc.errors})
        except InsufficientBalance as exc:
            return _json(402, {"message": f"Insufficient balance: {exc}"})
        await self._flush(request, events)
        return _json(200, {"queue_id": ids[0][0], "message_count": 1})

    async def rest_batch(self, request: Request) -> Response:
        """POST /rest/batch-send: many messages; queue_id is the batch id of the batch callbacks."""
        account = self._rest_account(request)
        if account is None:
            return _json(401, {"message": "Invalid private key or secret."})
        if (retry := self._limited(account, "batch")) is not None:
            return self._too_many("batch", retry)
        try:
            specs, config = parse_batch(
                await self._body(request),
                account,
                reject_invalid=self.config.batch_invalid_numbers == "reject",
                routed=self.gateway.routed,
            )
            due = None
            if config.get("schedule_at") not in (None, ""):
                due = parse_schedule(config["schedule_at"], self.clock.now())
            batch_id = new_ids(1)[0]
            _ids, events = self.gateway.submit(
                account,
                "batch",
                specs,
                batch_id=batch_id,
                due_at=due,
                callback_url=config.get("callback_url"),
                errback_url=config.get("errback_url"),
                flags=self._flags(request),
                defer=True,
            )
        except Invalid as exc:
            return _json(400, {"message": exc.errors})
        except ScheduleError as exc:
            return _json(412, {"message": str(exc), "error": "schedule_at"})
        except InsufficientBalance as exc:
            return _json(402, {"message": f"Insufficient balance: {exc}"})
        answer = {"queue_id": batch_id, "message_count": sum(len(s.to) + len(s.invalid) for s in specs)}
        if "callbacks_before_response" in self._flags(request):
            await self._flush(request, events)
            return _json(200, answer)
        return _ThenSchedule(answer, after=lambda: self.gateway.schedule(events))

    async def report(self, request: Request) -> Response:
        """GET /report: the account's transaction report, masked areas as ******."""
        account = self._rest_account(request)
        if account is None:
            return _json(401, {"message": "Invalid private key or secret."})
        return _json(200, self.gateway.report(account, batch_id=request.query_params.get("batch_id")))

    # -- HTTP API ----------------------------------------------------------------------------------
    async def api_send(self, request: Request) -> Response:
        """POST (or GET) /api/send: Jasmin's HTTP API with Plasgate's field names."""
        form: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            raw = await request.body()
            try:
                if request.headers.get("content-type", "").startswith("application/json"):
                    parsed = json.loads(raw)
                    if not isinstance(parsed, dict):
                        raise ValueError("not an object")
                    form.update({k: str(v) for k, v in parsed.items()})
                else:
                    form.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except (ValueError, UnicodeDecodeError) as exc:
                return _text(400, f'Error "Unknown error: {exc}"')
        for key in ("to", "username", "password"):
            if not form.get(key):
                return _text(400, f'Error "Mandatory argument [{key}] is not found."')
        account = self.gateway.authenticate_api(str(form["username"]), str(form["password"]))
        if account is None:
            return _text(403, f'Error "Authentication failure for username:{form["username"]}"')
        if (retry := self._limited(account, "api")) is not None:
            response = _text(429, 'Error "User throughput exceeded"')
            response.headers["Retry-After"] = retry
            return response
        if not form.get("content"):
            return _text(400, 'Error "content or hex-content not present."')
        errors: dict[str, list[str]] = {}
        sender = check_sender(form.get("sender"), account, "sender", errors)
        content = check_content(form.get("content"), "content", errors)
        url, level, method = check_dlr(form, "", errors)
        if not MSISDN.fullmatch(str(form["to"])):
            errors.setdefault("to", [])
        if errors:
            key = next(iter(errors))
            return _text(400, f'Error "Argument [{key}] has an invalid value: [{form.get(key)}]."')
        if not self.gateway.routed(str(form["to"])):
            return _text(412, NO_ROUTE)
        spec = MessageSpec([str(form["to"])], content, sender, url, level, method)
        try:
            ids, events = self.gateway.submit(account, "api", [spec], flags=self._flags(request))
        except InsufficientBalance:
            return _text(403, 'Error "Cannot charge submit_sm, check RouterPB log file for details"')
        await self._flush(request, events)
        return _text(200, f'Success "{ids[0][0]}"')

    # -- admin -------------------------------------------------------------------------------------
    def _admin(self, request: Request) -> bool:
        """Check the admin token."""
        given = request.headers.get(ADMIN_HEADER.lower(), "")
        token = (self.admin_token or "").encode()
        return bool(token) and hmac.compare_digest(given.encode(), token)

    async def admin_records(self, request: Request) -> Response:
        """GET /_sim/records: every accepted recipient as JSON Lines."""
        if not self._admin(request):
            return _json(403, {"message": "admin token required"})
        offset = int(request.query_params.get("offset", 0))

        async def lines() -> AsyncIterator[bytes]:
            chunk: list[str] = []
            for record in self.gateway.records(offset):
                chunk.append(json.dumps(record, ensure_ascii=False))
                if len(chunk) >= 2000:
                    yield ("\n".join(chunk) + "\n").encode()
                    chunk = []
            if chunk:
                yield ("\n".join(chunk) + "\n").encode()

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    async def admin_state(self, request: Request) -> Response:
        """GET /_sim/state: clock, balances, counts, callback statistics, faults."""
        if not self._admin(request):
            return _json(403, {"message": "admin token required"})
        return _json(200, self.state())

    def state(self) -> dict[str, Any]:
        """Return the simulator's state as plain values."""
        return {
            "now": self.clock.now(),
            "speed": self.clock.speed,
            "balances": self.gateway.balances,
            "records": len(self.gateway.ids),
            "unrecorded": self.gateway.unrecorded,
            "requests": self.gateway.request_seq,
            "scheduled": self.gateway.scheduled,
            "in_flight": self.dispatcher.in_flight,
            "idle": self.dispatcher.idle and not self.mo_http.in_flight,
            "callbacks": self.dispatcher.stats,
            "faults": self.faults.describe(),
            "smpp_port": self.smpp.port if self.smpp is not None else None,
            "smpp": dict(self.smpp.stats) if self.smpp is not None else None,
            "mo_http": {**self.mo_http.stats, "in_flight": self.mo_http.in_flight},
        }

    async def admin_control(self, request: Request) -> Response:
        """POST /_sim/control: {"faults": [...]} | {"advance": s} | {"speed": x} | {"balance": {u: x}}
        | {"mo": {"account", "from", "to", "text"[, "via": "http", "url"]}} (a reply from a handset, over SMPP
        or posted to ``url`` as Jasmin's MO connector does) | {"smpp_drop": true} (cut every SMPP link)."""
        if not self._admin(request):
            return _json(403, {"message": "admin token required"})
        try:
            body = json.loads(await request.body())
            if "faults" in body:
                self.faults.set([fault_from_dict(f) for f in body["faults"]])
            if "speed" in body:
                self.clock.set_speed(float(body["speed"]))
            if "advance" in body:
                self.clock.advance(float(body["advance"]))
            if "mo" in body and body["mo"].get("via") == "http":  # posted to an MO URL, as Jasmin's connector
                mo = body["mo"]
                self.mo_http.throw(
                    str(mo["url"]), sender=str(mo["from"]), destination=str(mo["to"]), text=str(mo["text"])
                )
            elif "mo" in body:  # {"mo": {"account", "from", "to", "text"}}: a handset replies over SMPP
                if self.smpp is None:
                    raise ValueError("the simulator serves no SMPP (smpp=True)")
                mo = body["mo"]
                self.smpp.send_mo(
                    str(mo["account"]), sender=str(mo["from"]), destination=str(mo["to"]), text=str(mo["text"])
                )
            if body.get("smpp_drop"):
                if self.smpp is None:
                    raise ValueError("the simulator serves no SMPP (smpp=True)")
                self.smpp.drop_connections()
            for username, amount in (body.get("balance") or {}).items():
                if username not in self.gateway.balances:
                    raise ValueError(f"no account {username!r}")
                self.gateway.balances[username] = float(amount)
        except (ValueError, TypeError, KeyError) as exc:
            return _json(400, {"message": str(exc)})
        return _json(200, self.state())

    async def admin_report(self, request: Request) -> Response:
        """GET /_sim/report?account=NAME: an account's transaction report (for Python)."""
        if not self._admin(request):
            return _json(403, {"message": "admin token required"})
        account = self.gateway.accounts.get(request.query_params.get("account", ""))
        if account is None:
            return _json(404, {"message": "no such account"})
        return _json(200, self.gateway.report(account, batch_id=request.query_params.get("batch_id")))

    async def ping(self, request: Request) -> Response:
        """GET /ping: liveness."""
        return _text(200, "Jasmin/PONG")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Run the receipt dispatcher (and the SMPP server, when configured) for the server's lifetime."""
        await self.dispatcher.start()
        try:
            if self.smpp is not None:
                await self.smpp.start_async()
            yield
        finally:
            if self.smpp is not None:
                await self.smpp.stop_async()
            await self.mo_http.aclose()
            await self.dispatcher.stop()


def create_app(config: SimulatorConfig | None = None, admin_token: str | None = None) -> FaultMiddleware:
    """Build the simulator's ASGI app (the factory for BackgroundServer and the CLI)."""
    sim = SimApp(config or SimulatorConfig(), admin_token)
    routes = [
        Route("/rest/send", sim.rest_send, methods=["POST"]),
        Route("/rest/batch-send", sim.rest_batch, methods=["POST"]),
        Route("/api/send", sim.api_send, methods=["GET", "POST"]),
        Route("/report", sim.report, methods=["GET"]),
        Route("/ping", sim.ping, methods=["GET"]),
        Route("/_sim/records", sim.admin_records, methods=["GET"]),
        Route("/_sim/state", sim.admin_state, methods=["GET"]),
        Route("/_sim/control", sim.admin_control, methods=["POST"]),
        Route("/_sim/report", sim.admin_report, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=sim.lifespan)
    wrapped = FaultMiddleware(app, sim.faults)
    wrapped.sim = sim  # type: ignore[attr-defined]
    return wrapped

"""Send requests to Plasgate over HTTP: REST batch-send, REST single send and the HTTP API, behind one client.

This is the only module that imports httpx. It is async inside (``httpx.AsyncClient``, several requests
in flight, a sliding-window limiter per send path) and offers a plain synchronous API for notebooks that
also works inside a running event loop (Jupyter): the coroutine then runs on a private loop in a
helper thread. The retry policy follows DESIGN.md section 6: only what provably did not reach the
gateway (connection refused, DNS or TLS failure, connect and pool timeouts: the request was never
written) and what the gateway refused unread (429, Jasmin's ``403 User throughput exceeded``) is retried
automatically; anything that may come after the gateway accepted the request (408, 503 and every 5xx,
read and write timeouts, a dropped connection) comes back as ``uncertain`` and is never resent here.
Tests inject an ``httpx.AsyncBaseTransport`` (e.g. ``httpx.MockTransport``).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence, Sized
from dataclasses import replace
from typing import Any

import httpx

from ._classify import Outcome, SendResult, classify, failure, parse_retry_after
from ._ratelimit import RateLimiter, projected_seconds
from ._sync import run_sync
from .batch import Batch
from .errors import ConfigError
from .gateway import Gateway, install_log_redaction, redact

__all__ = ["ENDPOINTS", "GatewayClient", "Outcome", "SendResult", "parse_retry_after", "redact", "run_sync"]

logger = logging.getLogger("plasgate_nb")
Hook = Callable[[Any], Awaitable[None] | None]
ENDPOINTS = {"batch": "/rest/batch-send", "single": "/rest/send", "http": "/api/send"}
USER_AGENT = "plasgate-nb/0.1"
# Raised before a byte of the request was written: httpx maps a refused connection, a DNS failure and a
# failed TLS handshake to ConnectError; a proxy that refused the tunnel to ProxyError.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)

install_log_redaction()


async def _call(hook: Hook | None, arg: Any) -> None:
    """Call a sync or async hook."""
    if hook is None:
        return
    value = hook(arg)
    if inspect.isawaitable(value):
        await value


class GatewayClient:
    """Send :class:`~plasgate_nb.batch.Batch` requests to the gateway and classify each answer.

    One client keeps one rate limiter per send path for its whole life, across sync and async calls.
    ``transport`` replaces the network (e.g. ``httpx.MockTransport``); ``clock``/``sleep`` drive the
    limiters in tests.
    """

    def __init__(
        self,
        gateway: Gateway | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Create a client for ``gateway`` (default: ``Gateway.from_env()``)."""
        self.gateway = gateway if gateway is not None else Gateway.from_env()
        self._transport = transport
        self._ssl: ssl.SSLContext | bool | None = None
        self._sleep = sleep
        self.limiters = {
            path: RateLimiter(limit, clock=clock, sleep=sleep) for path, limit in self.gateway.rate_limits.items()
        }

    def __repr__(self) -> str:
        """Show the gateway (secrets masked)."""
        return f"GatewayClient({self.gateway!r})"

    # -------------------------------------------------------------------------------- plumbing
    def _client(self) -> httpx.AsyncClient:
        """Build an AsyncClient for one run (clients are bound to the event loop that uses them)."""
        gw = self.gateway
        timeout = httpx.Timeout(
            connect=gw.connect_timeout, read=gw.read_timeout, write=gw.write_timeout, pool=gw.pool_timeout
        )
        limits = httpx.Limits(
            max_connections=gw.max_in_flight,
            max_keepalive_connections=gw.max_in_flight,
            keepalive_expiry=gw.keepalive_expiry,
        )
        kwargs: dict[str, Any] = {"timeout": timeout, "headers": {"User-Agent": USER_AGENT}}
        if self._transport is not None:
            kwargs["transport"] = self._transport
        else:
            kwargs["limits"] = limits
            kwargs["verify"] = self._ssl_context()
        return httpx.AsyncClient(**kwargs)

    def _ssl_context(self) -> ssl.SSLContext | bool:
        """Build the TLS context once per client: loading a CA bundle costs tens of milliseconds."""
        if self._ssl is None:
            verify = self.gateway.ssl_context()
            self._ssl = httpx.create_ssl_context(verify=True) if verify is True else verify
        return self._ssl

    def _build(self, client: httpx.AsyncClient, request: Batch) -> httpx.Request:
        """Turn a Batch into an httpx request with the credentials of its send path."""
        gw = self.gateway
        url = gw.base_url + ENDPOINTS[request.path]
        if request.path == "http":
            form = {k: str(v) for k, v in request.payload.items()}
            form.update(username=gw.username or "", password=gw.password or "")
            return client.build_request("POST", url, data=form)
        headers = {"X-Secret": gw.secret or "", "Content-Type": "application/json", "Accept": "application/json"}
        return client.build_request(
            "POST", url, params={"private_key": gw.private_key or ""}, headers=headers, content=request.encoded()
        )

    async def _attempt(self, client: httpx.AsyncClient, request: Batch) -> SendResult:
        """Send once and classify the answer or the failure."""
        try:
            response = await client.send(self._build(client, request))
        except _NOT_SENT as exc:
            return failure("retry", f"not sent: {type(exc).__name__}: {exc}", request=request)
        except httpx.TimeoutException as exc:  # read/write timeout: the body may have been processed
            return failure("uncertain", f"no answer: {type(exc).__name__}: {exc}", request=request)
        except httpx.TransportError as exc:  # dropped connection, protocol error after sending
            return failure(
                "uncertain", f"connection failed after sending: {type(exc).__name__}: {exc}", request=request
            )
        except httpx.RequestError as exc:  # e.g. an answer that cannot be decoded: the request was sent
            return failure("uncertain", f"unreadable answer: {type(exc).__name__}: {exc}", request=request)
        except httpx.InvalidURL as exc:
            raise ConfigError(f"invalid gateway URL {redact(self.gateway.base_url)!r}: {redact(str(exc))}") from exc
        return classify(
            request.path,
            response.status_code,
            response.text,
            retry_after=response.headers.get("Retry-After"),
            recipients=request.recipients,
            request=request,
        )

    async def _send_one(self, client: httpx.AsyncClient, request: Batch, before_send: Hook | None) -> SendResult:
        """Wait for the limiter, call ``before_send`` once, then send with automatic safe retries."""
        gw = self.gateway
        limiter = self.limiters[request.path]
        await limiter.acquire()
        await _call(before_send, request)
        attempt = 0
        while True:
            attempt += 1
            result = await self._attempt(client, request)
            if result.outcome != "retry":
                if result.status == 503 and result.retry_after:  # not resent (it may have been taken), but
                    limiter.pause(min(result.retry_after, gw.max_retry_wait))  # the next requests back off
                break
            wait = result.retry_after
            if wait is None:
                wait = gw.default_retry_after if result.status == 429 else min(2.0**attempt, 30.0)
            if result.status == 429:
                limiter.pause(min(wait, gw.max_retry_wait))
            if attempt > gw.max_retries or wait > gw.max_retry_wait:
                result = _with(result, attempt, wait)
                break
            logger.info(
                "request %s: %s; retrying in %.1f s (attempt %d of %d)",
                request.batch_id,
                result.reason,
                wait,
                attempt + 1,
                gw.max_retries + 1,
            )
            if result.status != 429:
                await self._sleep(wait)
            await limiter.acquire()
        result = _with(result, attempt, result.retry_after)
        level = logging.DEBUG if result.outcome == "accepted" else logging.WARNING
        logger.log(
            level,
            "request %s (%s, %d recipient(s)): %s%s",
            request.batch_id,
            request.path,
            request.recipients,
            result.outcome,
            f" ({result.reason})" if result.reason else "",
        )
        return result

    # -------------------------------------------------------------------------------- async API
    async def asend(self, request: Batch, *, before_send: Hook | None = None) -> SendResult:
        """Send one request and return its classified result."""
        results = await self.asend_many([request], before_send=before_send)
        return results[0]

    async def asend_many(
        self,
        requests: Iterable[Batch],
        *,
        before_send: Hook | None = None,
        on_result: Hook | None = None,
        keep_results: bool = True,
    ) -> list[SendResult]:
        """Send requests with up to ``max_in_flight`` in flight; return results in input order.

        ``before_send(request)`` (sync or async) runs right before a request first leaves: the campaign
        marks its rows ``submitting`` and commits there. ``on_result(result)`` runs as each answer
        arrives, so the ledger can settle the batch at once. Hooks run on the event loop, one at a
        time. If a hook raises, no further request is started, those in flight finish (their
        ``on_result`` still runs), and the first error is raised.

        ``requests`` may be a lazy iterator (``batch.iter_requests``): each request is taken from it when
        a connection is free, so only those in flight are in memory. ``keep_results=False`` returns an
        empty list instead of holding every result (and with it every request) until the end.
        """
        if isinstance(requests, Sequence):  # every path's credentials before anything leaves
            for path in sorted({r.path for r in requests}):
                self.gateway.require(path)
        queue = iter(requests)
        first = next(queue, None)
        if first is None:
            return []
        checked = {first.path}
        self.gateway.require(first.path)
        results: dict[int, SendResult] = {}
        queue = enumerate(itertools.chain([first], queue))
        errors: list[BaseException] = []
        hook_lock = asyncio.Lock()

        async def locked(hook: Hook | None, arg: Any) -> None:
            """Run a hook under the lock so hooks never overlap."""
            async with hook_lock:
                await _call(hook, arg)

        async def worker(client: httpx.AsyncClient) -> None:
            """Take requests one by one until none are left or a hook failed."""
            while not errors:
                try:
                    taken = next(queue, None)  # a lazy iterator builds the request here
                    if taken is None:
                        return
                    index, request = taken
                    if request.path not in checked:  # a path's credentials, before its first request
                        self.gateway.require(request.path)
                        checked.add(request.path)
                    result = await self._send_one(
                        client, request, (lambda r: locked(before_send, r)) if before_send else None
                    )
                except Exception as exc:
                    errors.append(exc)
                    return
                if keep_results:
                    results[index] = result
                try:
                    await locked(on_result, result)
                except Exception as exc:
                    errors.append(exc)
                    return

        async with self._client() as client:
            workers = self.gateway.max_in_flight
            if isinstance(requests, Sized):
                workers = min(workers, len(requests))
            await asyncio.gather(*(worker(client) for _ in range(max(workers, 1))))
        if errors:
            raise errors[0]
        return [results[i] for i in sorted(results)]

    # -------------------------------------------------------------------------------- sync API
    def send(self, request: Batch, *, before_send: Hook | None = None) -> SendResult:
        """Send one request (synchronous; safe inside Jupyter)."""
        return run_sync(self.asend(request, before_send=before_send))

    def send_many(
        self,
        requests: Iterable[Batch],
        *,
        before_send: Hook | None = None,
        on_result: Hook | None = None,
        keep_results: bool = True,
    ) -> list[SendResult]:
        """Send many requests (synchronous; safe inside Jupyter); see :meth:`asend_many`."""
        return run_sync(
            self.asend_many(requests, before_send=before_send, on_result=on_result, keep_results=keep_results)
        )

    def projected_seconds(self, requests: int, path: str = "batch") -> float:
        """Return the least wall time ``requests`` requests on ``path`` need under this client's limits."""
        if path not in self.limiters:
            raise ConfigError(f"unknown send path {path!r}")
        return projected_seconds(requests, self.limiters[path].limit)


def _with(result: SendResult, attempts: int, retry_after: float | None) -> SendResult:
    """Return ``result`` with its attempt count and retry-after set."""
    return replace(result, attempts=attempts, retry_after=retry_after)

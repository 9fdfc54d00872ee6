"""Shared helpers of the simulator tests: a real callback receiver and request shortcuts."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from plasgate_nb.server import BackgroundServer
from plasgate_nb.simulator import Simulator


class Receiver:
    """A small real HTTP server recording every callback; answers ``ACK/Jasmin`` unless told otherwise."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.plans: dict[str, list[tuple[int, str]]] = {}
        self.server = BackgroundServer(self._app, mode="thread")

    def _app(self) -> Starlette:
        """Build the receiving app."""

        async def handle(request: Request) -> PlainTextResponse:
            body = (await request.body()).decode()
            self.calls.append(
                {
                    "method": request.method,
                    "path": request.url.path,
                    "raw_query": request.url.query,
                    "query": dict(request.query_params),
                    "body": body,
                    "form": dict(parse_qsl(body)),
                    "headers": dict(request.headers),
                    "at": time.monotonic(),
                }
            )
            plan = self.plans.get(request.url.path)
            status, text = plan.pop(0) if plan else (200, "ACK/Jasmin")
            return PlainTextResponse(text, status_code=status)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST"])])

    def __enter__(self) -> Receiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def url(self, path: str) -> str:
        """Return the full URL of ``path`` on this receiver."""
        return f"{self.server.url}{path}"

    def on(self, path: str, path_calls: int | None = None) -> list[dict[str, Any]]:
        """Return the calls received on ``path``."""
        return [c for c in self.calls if c["path"] == path]

    def wait(self, path: str, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``path`` received at least ``n`` calls; return them."""
        deadline = time.monotonic() + timeout
        while len(self.on(path)) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        calls = self.on(path)
        if len(calls) < n:
            raise AssertionError(f"{path}: {len(calls)} calls, expected {n}: {calls}")
        return calls

    def fields(self, path: str) -> list[dict[str, str]]:
        """Return the DLR fields of each call on ``path`` (query for GET, form for POST)."""
        return [c["query"] if c["method"] == "GET" else c["form"] for c in self.on(path)]


def rest(
    sim: Simulator, path: str, body: Any, *, secret: str | None = None, timeout: float = 10.0, raw: bytes | None = None
) -> httpx.Response:
    """POST a REST request with the simulator's credentials."""
    creds = sim.credentials
    headers = {"X-Secret": creds.secret if secret is None else secret}
    if raw is not None:
        headers["Content-Type"] = "application/json"
        return httpx.post(
            f"{sim.url}{path}",
            params={"private_key": creds.private_key},
            headers=headers,
            content=raw,
            timeout=timeout,
            trust_env=False,
        )
    return httpx.post(
        f"{sim.url}{path}",
        params={"private_key": creds.private_key},
        headers=headers,
        json=body,
        timeout=timeout,
        trust_env=False,
    )


def api(sim: Simulator, **form: Any) -> httpx.Response:
    """POST an HTTP API form with the simulator's username/password unless given."""
    creds = sim.credentials
    data = {"username": creds.username, "password": creds.password, "sender": creds.sender, **form}
    return httpx.post(
        f"{sim.url}/api/send", data={k: v for k, v in data.items() if v is not None}, timeout=10.0, trust_env=False
    )


def single(to: str = "85512345678", content: str = "Hello from lab", **extra: Any) -> dict[str, Any]:
    """A /rest/send body."""
    return {"sender": "SMS Info", "to": to, "content": content, **extra}

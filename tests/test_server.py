"""Tests of the background uvicorn runner: thread and process modes over real sockets."""

from __future__ import annotations

import socket

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from plasgate_nb.errors import PlasgateError
from plasgate_nb.server import BackgroundServer, bind_socket


def make_app(greeting: str = "hello") -> Starlette:
    """A one-route app used by the tests (importable for process mode)."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse(greeting)

    return Starlette(routes=[Route("/", hello)])


def test_bind_socket_uses_tcp_proto() -> None:
    sock = bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockname()[1] > 0
    finally:
        sock.close()


def test_thread_mode_serves_and_stops() -> None:
    server = BackgroundServer(make_app, kwargs={"greeting": "hi"})
    with server:
        assert server.running
        assert httpx.get(server.url + "/").text == "hi"
    assert not server.running
    server.stop()  # idempotent
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/", timeout=1)


def test_process_mode_serves_and_stops() -> None:
    server = BackgroundServer("tests.test_server:make_app", kwargs={"greeting": "from child"}, mode="process")
    with server:
        assert "running" in repr(server)
        assert httpx.get(server.url + "/").text == "from child"
    assert not server.running


def test_process_mode_reports_a_bad_factory() -> None:
    server = BackgroundServer("tests.test_server:no_such_factory", mode="process")
    with pytest.raises(PlasgateError, match="failed to start"):
        server.start()
    assert not server.running


def test_process_mode_needs_an_import_string() -> None:
    with pytest.raises(PlasgateError, match="module:function"):
        BackgroundServer(make_app, mode="process")

"""The simulator's raw HTTP/1.1 callback client (``_wire``) and the dispatcher on top of it, against small
scripted asyncio servers on real loopback sockets: keep-alive reuse, bodies (length, chunked, until
close), interim answers, closed and hung connections, timeouts, refused URLs, https, retry until ACK."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from plasgate_nb.simulator import SimulatorConfig
from plasgate_nb.simulator._wire import WireClient, WireClosed, WireError, WireTimeout, encode_headers, split_url
from plasgate_nb.simulator.clock import SimClock
from plasgate_nb.simulator.delivery import INTERIM_STATUS
from plasgate_nb.simulator.dlr import DLR_HEADERS, Dispatcher
from plasgate_nb.simulator.model import Gateway, MessageSpec

ACK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nACK/Jasmin"
# an answer: raw bytes (a list: written piece by piece), "close" (no answer), "hang",
# or ("then-close", raw bytes): write them, then close the connection
Answer = bytes | list[bytes] | str | tuple[str, bytes]
Plan = Callable[[int, int, bytes], Answer]  # (request number, connection number, raw request) -> answer


class RawServer:
    """A scripted HTTP/1.1 server: reads each request, answers what the plan says, records everything."""

    def __init__(self, plan: Plan, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.plan = plan
        self.requests: list[tuple[int, bytes]] = []  # (connection number, raw request)
        self.connections = 0
        self.ssl_context = ssl_context
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def url(self, path: str = "/cb", scheme: str = "http") -> str:
        """The URL of ``path`` on this server."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one connection."""
        self.connections += 1
        conn = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                raw = head + (await reader.readexactly(length) if length else b"")
                self.requests.append((conn, raw))
                answer = self.plan(len(self.requests), conn, raw)
                if answer == "close":
                    return
                if answer == "hang":
                    await asyncio.sleep(30)
                    return
                if isinstance(answer, tuple):
                    writer.write(answer[1])
                    await writer.drain()
                    return
                if isinstance(answer, list):  # in pieces, a moment apart
                    for piece in answer:
                        writer.write(piece)
                        await writer.drain()
                        await asyncio.sleep(0.005)
                else:
                    writer.write(answer)  # type: ignore[arg-type]
                if b"connection: close" in bytes(answer if isinstance(answer, bytes) else b"".join(answer)).lower():
                    return
        finally:
            writer.close()


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async test body."""
    return asyncio.run(coro())


def always(answer: Answer) -> Plan:
    """A plan answering ``answer`` to every request."""
    return lambda _n, _c, _raw: answer


# -- the client ------------------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection_and_writes_plain_requests() -> None:
    async def body() -> None:
        async with RawServer(always(ACK)) as server:
            client = WireClient(timeout=2)
            for i in range(20):
                resp = await client.request(
                    "GET", server.url("/dlr?key=row-1"), query=f"id=m{i}&level=1", headers=DLR_HEADERS
                )
                assert (resp.status, resp.body, resp.header("Content-Type")) == (200, b"ACK/Jasmin", "text/plain")
            post = await client.request(
                "POST", server.url("/dlr"), headers=encode_headers(DLR_HEADERS), body=b"id=x&level=2"
            )
            assert post.text == "ACK/Jasmin"
            await client.aclose()
            assert server.connections == 1 and client.connections_opened == 1
            first, last = server.requests[0][1], server.requests[-1][1]
            assert first.startswith(
                f"GET /dlr?key=row-1&id=m0&level=1 HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
            )
            assert b"\r\nUser-Agent: Jasmin gateway/1.0 DLRThrower\r\n" in first
            assert b"content-length" not in first.lower()
            assert last.startswith(b"POST /dlr HTTP/1.1\r\n")
            assert last.endswith(b"\r\nContent-Length: 12\r\n\r\nid=x&level=2")

    run(body)


def test_concurrent_requests_use_separate_connections_then_pool_them() -> None:
    async def body() -> None:
        async with RawServer(always(ACK)) as server:
            client = WireClient(timeout=2, max_idle=3)
            answers = await asyncio.gather(*(client.request("GET", server.url()) for _ in range(5)))
            assert [a.body for a in answers] == [b"ACK/Jasmin"] * 5
            assert server.connections == 5 and client.idle_connections == 3
            await client.request("GET", server.url())
            assert server.connections == 5  # reused a pooled one
            await client.aclose()

    run(body)


def test_chunked_answer_in_pieces_with_extension_and_trailer() -> None:
    chunked = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nACK/",
        b"\r\n6\r\nJas",
        b"min\r\n0\r\nX-Trailer: yes\r\n\r\n",
    ]

    async def body() -> None:
        async with RawServer(always(chunked)) as server:
            client = WireClient(timeout=2)
            for _ in range(3):
                assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"
            await client.aclose()
            assert server.connections == 1

    run(body)


def test_interim_answer_skipped_and_body_read_until_close() -> None:
    answers = {1: [b"HTTP/1.1 100 Continue\r\n\r\n", ACK], 2: b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\nACK/Jasmin"}

    async def body() -> None:
        async with RawServer(lambda n, _c, _r: answers.get(n, ACK)) as server:
            client = WireClient(timeout=2)
            assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"
            assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"  # no length: until close
            assert (await client.request("GET", server.url())).status == 200
            await client.aclose()
            assert [c for c, _ in server.requests] == [1, 1, 2]  # the closed connection was not reused

    run(body)


def test_server_closing_a_kept_alive_connection_gets_one_fresh_try() -> None:
    async def body() -> None:
        # request 2 arrives on connection 1, which the server then closes without a byte of answer
        async with RawServer(lambda n, _c, _r: "close" if n == 2 else ACK) as server:
            client = WireClient(timeout=2)
            assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"
            assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"
            await client.aclose()
            assert [c for c, _ in server.requests] == [1, 1, 2]

    run(body)


def test_server_closing_a_fresh_connection_or_mid_answer_is_an_error() -> None:
    answers: dict[int, Answer] = {1: "close", 2: ("then-close", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nACK/")}

    async def body() -> None:
        async with RawServer(lambda n, _c, _r: answers.get(n, ACK)) as server:
            client = WireClient(timeout=2)
            with pytest.raises(WireClosed):  # no answer at all on a fresh connection: not retried
                await client.request("GET", server.url())
            with pytest.raises(WireClosed, match="middle of the body"):
                await client.request("GET", server.url())
            assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"
            await client.aclose()
            assert len(server.requests) == 3 and server.connections == 3

    run(body)


def test_timeout_drops_the_connection_and_the_next_request_works() -> None:
    async def body() -> None:
        async with RawServer(lambda n, _c, _r: "hang" if n == 1 else ACK) as server:
            client = WireClient(timeout=0.2)
            start = time.monotonic()
            with pytest.raises(WireTimeout):
                await client.request("GET", server.url())
            assert 0.15 < time.monotonic() - start < 1.5
            assert (await client.request("GET", server.url())).body == b"ACK/Jasmin"
            assert server.connections == 2
            await client.aclose()

    run(body)


def test_refused_connection_and_refused_urls() -> None:
    async def body() -> None:
        client = WireClient(timeout=1)
        async with RawServer(always(ACK)) as server:
            url = server.url()
        with pytest.raises(WireError, match="cannot connect"):
            await client.request("GET", url)  # nothing listens there any more
        for bad in (
            "ftp://127.0.0.1/x",
            "mailto:ops@example.com",
            "/relative",
            "http:///nohost",
            "http://127.0.0.1:99999/x",
        ):
            with pytest.raises(WireError):
                await client.request("GET", bad)
        with pytest.raises(WireError, match="URL-encoded"):
            await client.request("GET", "http://127.0.0.1/x", query="a=b\r\nX-Evil: 1")
        with pytest.raises(WireError, match="invalid header"):
            await client.request("GET", "http://127.0.0.1/x", headers={"X-A": "b\r\nX-Evil: 1"})
        await client.aclose()

    run(body)


def test_split_url_escapes_and_defaults() -> None:
    assert split_url("http://Example.com/a b/ស?q=1 2") == (
        ("http", "example.com", 80),
        "/a%20b/%E1%9E%9F?q=1%202",
        "example.com",
    )
    assert split_url("https://h:8443") == (("https", "h", 8443), "/", "h:8443")
    assert split_url("http://[::1]:8080/x")[2] == "[::1]:8080"


def test_malformed_answer_is_an_error() -> None:
    async def body() -> None:
        async with RawServer(always(b"SMTP ready\r\n\r\n")) as server:
            client = WireClient(timeout=1)
            with pytest.raises(WireError, match="not an HTTP"):
                await client.request("GET", server.url())
            await client.aclose()

    run(body)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_a_trusted_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def body() -> None:
        async with RawServer(always(ACK), ssl_context=server_ctx) as server:
            untrusting = WireClient(timeout=2)
            with pytest.raises(WireError, match="cannot connect"):
                await untrusting.request("GET", server.url(scheme="https"))
            await untrusting.aclose()
            client = WireClient(timeout=2, ssl_context=ssl.create_default_context(cafile=str(cert)))
            for _ in range(3):
                assert (await client.request("GET", server.url(scheme="https"))).body == b"ACK/Jasmin"
            await client.aclose()
            assert server.connections == 1  # one kept-alive connection (the refused handshake never got one)

    run(body)


# -- the dispatcher over the wire client -----------------------------------------------------------


def _gateway(**config: Any) -> Gateway:
    """A gateway with a fast clock."""
    return Gateway(SimulatorConfig(seed=5, **config), SimClock(speed=1000))


async def _drain(dispatcher: Dispatcher, timeout: float = 5.0) -> None:
    """Wait until the dispatcher has nothing left to do."""
    deadline = time.monotonic() + timeout
    while not dispatcher.idle:
        if time.monotonic() > deadline:
            raise AssertionError(f"dispatcher still busy: {dispatcher.stats}")
        await asyncio.sleep(0.01)


def test_non_ack_answers_are_retried_until_ack() -> None:
    answers: dict[int, Answer] = {
        1: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK",
        2: b"HTTP/1.1 503 Busy\r\nContent-Length: 10\r\n\r\nACK/Jasmin",
        3: [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", b"a\r\nACK/Jasmin\r\n0\r\n\r\n"],
    }

    async def body() -> None:
        async with RawServer(lambda n, _c, _r: answers.get(n, ACK)) as server:
            gateway = _gateway(callback_retry_delay=0.5)
            dispatcher = Dispatcher(gateway, concurrency=4, timeout=1, retries=3, retry_delay=0.5)
            await dispatcher.start()
            account = gateway.accounts["demo"]
            gateway.submit(
                account, "rest", [MessageSpec(["85512345678"], "hi", "SMS Info", server.url("/d"), 1, "POST")]
            )
            await _drain(dispatcher)
            await dispatcher.stop()
            assert dispatcher.stats == {"attempts": 3, "acked": 1, "retried": 2, "given_up": 0, "duplicates": 0}
            bodies = {raw.split(b"\r\n\r\n", 1)[1] for _c, raw in server.requests}
            assert len(server.requests) == 3 and len(bodies) == 1 and b"level=1" in bodies.pop()

    run(body)


def test_dispatcher_bulk_sends_on_bounded_kept_alive_connections() -> None:
    async def body() -> None:
        async with RawServer(always(ACK)) as server:
            gateway = _gateway()
            dispatcher = Dispatcher(gateway, concurrency=6, timeout=2)
            await dispatcher.start()
            numbers = [f"8551234{i:04d}" for i in range(1500)]
            gateway.submit(
                gateway.accounts["demo"],
                "batch",
                [MessageSpec(numbers, "hi", "SMS Info", server.url("/d"), 3, "GET")],
                batch_id="b1",
                callback_url=server.url("/cb"),
            )
            await _drain(dispatcher, timeout=30)
            await dispatcher.stop()
            # NEVER and ESME_ERROR get no level 2; an interim report (UNKNOWN or ENROUTE) comes before some finals
            level2 = sum(
                0 if gateway.codes[i] in (4, 5) else 2 if gateway.codes[i] in INTERIM_STATUS else 1
                for i in range(len(numbers))
            )
            assert dispatcher.stats["acked"] == len(server.requests) == 2 * len(numbers) + level2
            assert server.connections <= 6
            paths = [raw.split(b" ", 2)[1].split(b"?")[0] for _c, raw in server.requests]
            assert paths.count(b"/cb") == len(numbers)

    run(body)


def test_timed_out_callback_is_retried_then_given_up() -> None:
    async def body() -> None:
        async with RawServer(always("hang")) as server:
            gateway = _gateway()
            dispatcher = Dispatcher(gateway, concurrency=2, timeout=0.1, retries=1, retry_delay=0.1)
            await dispatcher.start()
            gateway.submit(
                gateway.accounts["demo"],
                "rest",
                [MessageSpec(["85512345678"], "hi", "SMS Info", server.url("/d"), 1, "GET")],
            )
            await _drain(dispatcher)
            await dispatcher.stop()
            assert dispatcher.stats["attempts"] == 2 and dispatcher.stats["given_up"] == 1
            assert server.connections == 2

    run(body)

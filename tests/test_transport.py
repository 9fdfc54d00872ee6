"""Tests for plasgate_nb.transport, gateway and the rate limiter: wire shapes, classification, retries,
rate limits, concurrency, hooks, the sync API inside a running loop, and secret redaction."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pandas as pd
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from plasgate_nb._classify import classify, parse_retry_after
from plasgate_nb._keys import key_digest
from plasgate_nb._ratelimit import RateLimiter, projected_seconds
from plasgate_nb.batch import build_batches, build_singles, dumps
from plasgate_nb.errors import ConfigError
from plasgate_nb.gateway import Gateway, RedactingFilter, redact
from plasgate_nb.server import BackgroundServer
from plasgate_nb.transport import GatewayClient, run_sync

KEY = "pk_live_9f8e7d6c5b4a"
SECRET = "$2y$10$Abc/Def+Ghi=Jkl"
PASSWORD = "pa$$w0rd&x=1"


def frame(n: int) -> pd.DataFrame:
    """Return n personalized rows."""
    return pd.DataFrame(
        {
            "message_key": [f"k{i}" for i in range(n)],
            "msisdn": [f"85512{i:06d}" for i in range(n)],
            "content": [f"Hello {i}" for i in range(n)],
        }
    )


def gateway(**options: Any) -> Gateway:
    """Return a test gateway with every credential set and limits off unless given."""
    options.setdefault("rate_limits", {"batch": None, "single": None, "http": None})
    options.setdefault("base_url", "http://gw.test")
    return Gateway(private_key=KEY, secret=SECRET, username="acme", password=PASSWORD, **options)


class FakeTime:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        """Return the fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the fake time instead of waiting."""
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


def client_for(handler: Callable[[httpx.Request], Any], **options: Any) -> tuple[GatewayClient, FakeTime]:
    """Return a client on a MockTransport with a fake clock."""
    fake = FakeTime()
    client = GatewayClient(
        gateway(**options), transport=httpx.MockTransport(handler), clock=fake.clock, sleep=fake.sleep
    )
    return client, fake


def ok(request: httpx.Request) -> httpx.Response:
    """Accept everything like Plasgate does."""
    if request.url.path == "/api/send":
        return httpx.Response(200, text='Success "0b2c1f9e-0000-4000-8000-000000000001"')
    body = json.loads(request.content)
    count = sum(len(m["to"]) for m in body["messages"]) if "messages" in body else 1
    return httpx.Response(200, json={"queue_id": "q-1", "message_count": count})


# ------------------------------------------------------------------------------------------ wire shapes
def test_batch_send_wire_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    client, _ = client_for(handler)
    [batch] = build_batches(frame(3), sender="SMS Info")
    result = client.send(batch)
    assert result.outcome == "accepted" and result.queue_id == "q-1" and result.message_count == 3
    assert result.status == 200 and result.reason is None and result.attempts == 1
    [req] = seen
    assert req.method == "POST" and req.url.path == "/rest/batch-send"
    assert req.url.params["private_key"] == KEY
    assert req.headers["X-Secret"] == SECRET
    assert req.headers["Content-Type"] == "application/json"
    assert req.content == dumps(batch.payload)


def test_single_and_http_api_wire_shape() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    client, _ = client_for(handler)
    single = build_singles(frame(1), sender="SMS Info")[0]
    http = build_singles(frame(1), sender="SMS Info", path="http", dlr=True, dlr_url="https://h/d/{key}")[0]
    r1, r2 = client.send_many([single, http])
    assert r1.outcome == "accepted" and r1.queue_id == "q-1"
    assert r2.outcome == "accepted" and r2.message_id == "0b2c1f9e-0000-4000-8000-000000000001"
    assert r2.gateway_id == r2.message_id
    rest, form = sorted(seen, key=lambda r: r.url.path, reverse=True)
    assert rest.url.path == "/rest/send" and json.loads(rest.content) == single.payload
    assert form.url.path == "/api/send" and "private_key" not in form.url.params
    fields = {k: v[0] for k, v in parse_qs(form.content.decode()).items()}
    assert fields == {
        "sender": "SMS Info",
        "to": "85512000000",
        "content": "Hello 0",
        "dlr": "yes",
        "dlr_url": f"https://h/d/{key_digest('k0')}",  # the slot carries the key digest
        "dlr_level": "3",
        "dlr_method": "POST",
        "username": "acme",
        "password": PASSWORD,
    }


# ------------------------------------------------------------------------------------------ classification
@pytest.mark.parametrize(
    ("path", "status", "body", "outcome", "reason"),
    [
        ("batch", 200, '{"queue_id": "q", "message_count": 2}', "accepted", None),
        ("batch", 200, '{"message_count": 2}', "uncertain", "without queue_id"),
        ("batch", 201, "", "uncertain", "suspicious"),
        (
            "batch",
            400,
            '{"message": {"to": ["invalid"], "sender": ["not approved"]}}',
            "rejected",
            "to: invalid, sender: not approved",
        ),
        ("batch", 401, '{"message": "Invalid private key"}', "rejected", "HTTP 401: Invalid private key"),
        ("batch", 402, '{"error": "Insufficient balance"}', "rejected", "Insufficient balance"),
        (
            "single",
            403,
            '{"message": "Error \\"Authentication failure for username:x\\""}',
            "rejected",
            "Authentication failure for username:x",
        ),
        ("batch", 412, '{"title": "Cannot schedule batch in past date"}', "rejected", "past date"),
        ("batch", 404, "not found", "rejected", "HTTP 404"),
        ("batch", 429, '{"message": "Too many requests"}', "retry", "Too many requests"),
        # every answer that may follow an accepted request is uncertain (DESIGN.md section 6)
        ("batch", 503, "", "uncertain", "HTTP 503"),
        ("batch", 503, '{"message": "Service Unavailable"}', "uncertain", "Service Unavailable"),
        ("single", 408, '{"message": "Request Timeout"}', "uncertain", "HTTP 408: Request Timeout"),
        ("http", 408, "", "uncertain", "HTTP 408"),
        ("http", 503, "Service Unavailable", "uncertain", "HTTP 503"),
        ("batch", 504, "<html>gateway timeout</html>", "uncertain", "HTTP 504"),
        ("batch", 500, '{"message": "boom"}', "uncertain", "boom"),
        ("batch", 502, "<html>bad gateway</html>", "uncertain", "HTTP 502"),
        ("http", 200, 'Success "abc-123"', "accepted", None),
        ("http", 200, "OK", "uncertain", "without a message id"),
        ("http", 400, 'Error "Argument [to] has an invalid value: [abc]."', "rejected", "[to] has an invalid"),
        ("http", 403, 'Error "User throughput exceeded"', "retry", "throughput"),
        ("http", 403, 'Error "Authentication failure for username:x"', "rejected", "Authentication failure"),
        ("http", 412, 'Error "No route found"', "rejected", "No route found"),
        (
            "http",
            500,
            'Error "Cannot send submit_sm, check SMPPClientManagerPB log file for details"',
            "uncertain",
            "Cannot send submit_sm",
        ),
    ],
)
def test_classification(path: str, status: int, body: str, outcome: str, reason: str | None) -> None:
    result = classify(path, status, body)
    assert result.outcome == outcome
    assert result.status == status and result.body == body
    if reason is None:
        assert result.reason is None
    else:
        assert reason in (result.reason or "")


def test_accepted_count_mismatch_is_noted() -> None:
    result = classify("batch", 200, '{"queue_id": "q", "message_count": 1}', recipients=2)
    assert result.outcome == "accepted" and "1 message(s) for 2" in (result.reason or "")


def test_retry_after_parsing() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    from datetime import UTC, datetime

    now = datetime(2026, 11, 25, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 25 Nov 2026 09:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 08:00:00 GMT", now=now) == 0.0


@pytest.mark.parametrize(
    ("error", "outcome", "calls"),
    [
        (httpx.ConnectError, "retry", 3),
        (httpx.ConnectTimeout, "retry", 3),
        (httpx.PoolTimeout, "retry", 3),
        (httpx.ReadTimeout, "uncertain", 1),
        (httpx.WriteTimeout, "uncertain", 1),
        (httpx.ReadError, "uncertain", 1),
        (httpx.RemoteProtocolError, "uncertain", 1),
    ],
)
def test_network_errors_retry_only_when_not_sent(error: type[Exception], outcome: str, calls: int) -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        raise error(f"failed talking to {request.url}", request=request)

    client, fake = client_for(handler, max_retries=2)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert (result.outcome, count, result.attempts) == (outcome, calls, calls)
    assert result.status is None and error.__name__ in (result.reason or "")
    assert KEY not in (result.reason or "")  # the URL in the error text is redacted
    assert fake.sleeps == ([2.0, 4.0] if outcome == "retry" else [])


def test_connect_error_then_success_is_accepted() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.ConnectError("refused", request=request)
        return ok(request)

    client, _ = client_for(handler)
    result = client.send(build_batches(frame(2), sender="SMS Info")[0])
    assert result.outcome == "accepted" and result.attempts == 2


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_answers_that_may_follow_acceptance_are_never_retried(status: int) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, headers={"Retry-After": "1"}, text="oops")

    client, fake = client_for(handler, max_retries=5)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert (result.outcome, result.attempts, calls, fake.sleeps) == ("uncertain", 1, 1, [])


def test_503_with_retry_after_pauses_the_endpoint_without_resending() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) == 1:
            return httpx.Response(503, headers={"Retry-After": "7"}, json={"message": "Service Unavailable"})
        return ok(request)

    client, fake = client_for(handler, max_in_flight=1)
    first, second = client.send_many(build_batches(frame(2), sender="SMS Info", max_recipients=1))
    assert (first.outcome, first.attempts, second.outcome) == ("uncertain", 1, "accepted")
    assert len(calls) == 2  # the 503'd request was not sent again
    assert fake.sleeps == [7.0]  # the next request waited for the gateway's Retry-After


def test_jasmin_throughput_403_is_retried_as_refused_unread() -> None:
    answers = [httpx.Response(403, text='Error "User throughput exceeded"')]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop() if answers else ok(request)

    client, fake = client_for(handler)
    result = client.send(build_singles(frame(1), sender="SMS Info", path="http")[0])
    assert (result.outcome, result.attempts) == ("accepted", 2) and fake.sleeps == [2.0]


# ------------------------------------------------------------------------------------------ 429 and limits
def test_429_pauses_the_endpoint_for_retry_after_then_succeeds() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "7"}, json={"message": "slow down"})]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop() if answers else ok(request)

    client, fake = client_for(handler)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert result.outcome == "accepted" and result.attempts == 2
    assert fake.sleeps == [7.0]


def test_429_with_too_long_retry_after_is_handed_back() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "3600"})

    client, fake = client_for(handler, max_retry_wait=120.0)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert (result.outcome, result.retry_after, result.attempts) == ("retry", 3600.0, 1)
    assert fake.sleeps == []
    assert client.limiters["batch"].paused_for == 120.0  # the endpoint stays paused for later calls


def test_429_storm_gives_up_after_max_retries() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429)

    client, fake = client_for(handler, max_retries=2, default_retry_after=5.0)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert (result.outcome, calls) == ("retry", 3)
    assert fake.sleeps == [5.0, 5.0]


def test_limiter_sliding_window_waits() -> None:
    fake = FakeTime()
    limiter = RateLimiter(3, window=60, clock=fake.clock, sleep=fake.sleep)
    assert [limiter.reserve() for _ in range(7)] == [0, 0, 0, 60, 60, 60, 120]
    fake.now += 200  # later, the window is free again
    assert limiter.reserve() == 0


def test_limiter_pause_and_off() -> None:
    fake = FakeTime()
    limiter = RateLimiter(None, clock=fake.clock, sleep=fake.sleep)
    assert [limiter.reserve() for _ in range(1000)] == [0] * 1000
    limiter.pause(12.5)
    assert limiter.paused_for == 12.5 and limiter.reserve() == 12.5
    assert asyncio.run(limiter.acquire()) == 12.5
    with pytest.raises(ValueError, match="at least 1"):
        RateLimiter(0)


def test_limiter_acquire_rechecks_a_pause_that_began_while_waiting() -> None:
    fake = FakeTime()
    limiter = RateLimiter(1, window=10, clock=fake.clock, sleep=fake.sleep)
    limiter.reserve()

    async def sleep_then_pause(seconds: float) -> None:
        await fake.sleep(seconds)
        if len(fake.sleeps) == 1:
            limiter.pause(30)

    limiter.sleep = sleep_then_pause
    assert asyncio.run(limiter.acquire()) == 40.0


def test_client_respects_rate_limit_per_endpoint() -> None:
    client, fake = client_for(ok, rate_limits={"batch": 2, "single": 3, "http": None})
    batches = build_batches(frame(5), sender="SMS Info", max_recipients=1)
    results = client.send_many(batches)
    assert [r.outcome for r in results] == ["accepted"] * 5
    assert sum(fake.sleeps) == 120.0  # 2 now, 2 after 60 s, 1 after 120 s
    singles = build_singles(frame(3), sender="SMS Info")
    before = len(fake.sleeps)
    client.send_many(singles)
    assert fake.sleeps[before:] == []  # a separate limiter, 3/min
    assert client.projected_seconds(1_000_000, "batch") == 60 * (500_000 - 1)
    assert projected_seconds(100, 100) == 0 and projected_seconds(250, 100) == 120
    assert projected_seconds(10**6, None) == 0


# ---------------------------------------------------------------------------------- concurrency, hooks
def test_in_flight_requests_are_bounded_and_concurrent() -> None:
    state = {"now": 0, "peak": 0}
    full: list[asyncio.Event] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not full:
            full.append(asyncio.Event())
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        if state["now"] == 3:
            full[0].set()
        await asyncio.wait_for(full[0].wait(), 5)  # the first three meet here: deterministic overlap
        await asyncio.sleep(0)
        state["now"] -= 1
        return ok(request)

    client = GatewayClient(gateway(max_in_flight=3), transport=httpx.MockTransport(handler))
    results = client.send_many(build_batches(frame(12), sender="SMS Info", max_recipients=1))
    assert len(results) == 12 and state["peak"] == 3


def test_hooks_order_and_results_in_input_order() -> None:
    events: list[tuple[str, str]] = []

    others_done: list[asyncio.Event] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if not others_done:
            others_done.append(asyncio.Event())
        key = json.loads(request.content)["messages"][0]["to"][0]
        events.append(("wire", key))
        if key.endswith("0"):  # the first one answers only once the three others are settled
            await asyncio.wait_for(others_done[0].wait(), 5)
        return ok(request)

    batches = build_batches(frame(4), sender="SMS Info", max_recipients=1)
    client = GatewayClient(gateway(max_in_flight=4), transport=httpx.MockTransport(handler))
    done: list[str] = []

    def before(batch: Any) -> None:
        events.append(("before", batch.payload["messages"][0]["to"][0]))

    async def after(result: Any) -> None:
        done.append(result.request.batch_id)
        if len(done) == 3:
            others_done[0].set()

    results = client.send_many(batches, before_send=before, on_result=after)
    assert [r.request.batch_id for r in results] == [b.batch_id for b in batches]
    assert done[-1] == batches[0].batch_id and sorted(done) == sorted(b.batch_id for b in batches)
    for number in {n for _, n in events}:
        assert events.index(("before", number)) < events.index(("wire", number))


def test_a_lazy_iterator_is_taken_one_request_per_free_connection_and_nothing_is_kept() -> None:
    taken: list[int] = []
    seen_at_send: list[int] = []

    def lazy() -> Any:
        for batch in build_batches(frame(12), sender="SMS Info", max_recipients=1):
            taken.append(1)
            yield batch

    def before(batch: Any) -> None:
        seen_at_send.append(len(taken))

    client, _ = client_for(ok, max_in_flight=3)
    results = client.send_many(lazy(), before_send=before, keep_results=False)
    assert results == [] and len(taken) == 12 and len(seen_at_send) == 12
    assert all(seen <= sent + 3 for sent, seen in enumerate(seen_at_send))  # never more than 3 ahead
    assert len(client.send_many(iter([]))) == 0


def test_a_lazy_iterator_still_checks_credentials_before_the_first_request() -> None:
    wire: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        wire.append(request.url.path)
        return ok(request)

    client = GatewayClient(
        Gateway(base_url="https://gw.example", private_key="", secret="", sender="SMS Info"),
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(ConfigError):
        client.send_many(iter(build_batches(frame(2), sender="SMS Info")))
    assert wire == []


def test_before_send_failure_stops_new_requests() -> None:
    wire: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        wire.append(request.url.path)
        return ok(request)

    calls = 0

    def before(batch: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("ledger is locked")

    client, _ = client_for(handler, max_in_flight=1)
    with pytest.raises(RuntimeError, match="ledger is locked"):
        client.send_many(build_batches(frame(5), sender="SMS Info", max_recipients=1), before_send=before)
    assert len(wire) == 1


def test_sync_api_inside_a_running_event_loop() -> None:
    client, _ = client_for(ok)
    batches = build_batches(frame(3), sender="SMS Info", max_recipients=1)
    threads: list[str] = []

    def before(batch: Any) -> None:
        threads.append(threading.current_thread().name)

    async def notebook_cell() -> list[Any]:
        return client.send_many(batches, before_send=before)  # like a Jupyter cell: a loop is running

    results = asyncio.run(notebook_cell())
    assert [r.outcome for r in results] == ["accepted"] * 3
    assert set(threads) == {"plasgate-nb-sync"}
    assert run_sync(asyncio.sleep(0, result=5)) == 5


def test_run_sync_propagates_errors_from_the_helper_thread() -> None:
    async def boom() -> None:
        raise ValueError("inside")

    async def cell() -> None:
        run_sync(boom())

    with pytest.raises(ValueError, match="inside"):
        asyncio.run(cell())


# ------------------------------------------------------------------------------------------ config, secrets
def test_missing_credentials_name_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PLASGATE_PRIVATE_KEY",
        "PLASGATE_SECRET",
        "PLASGATE_USERNAME",
        "PLASGATE_PASSWORD",
        "PLASGATE_BASE_URL",
        "PLASGATE_SENDER",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PLASGATE_PRIVATE_KEY", KEY)
    client = GatewayClient(transport=httpx.MockTransport(ok))
    with pytest.raises(ConfigError, match="PLASGATE_SECRET"):
        client.send(build_batches(frame(1), sender="SMS Info")[0])
    with pytest.raises(ConfigError, match="PLASGATE_USERNAME, PLASGATE_PASSWORD"):
        client.send(build_singles(frame(1), sender="SMS Info", path="http")[0])


def test_from_env_passes_values_verbatim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLASGATE_BASE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("PLASGATE_PRIVATE_KEY", KEY)
    monkeypatch.setenv("PLASGATE_SECRET", SECRET)
    monkeypatch.setenv("PLASGATE_SENDER", "Acme")
    gw = Gateway.from_env(username="u1")
    assert (gw.base_url, gw.private_key, gw.secret, gw.sender, gw.username) == (
        "http://127.0.0.1:9",
        KEY,
        SECRET,
        "Acme",
        "u1",
    )


def test_repr_and_errors_hide_secrets(tmp_path: Any) -> None:
    gw = gateway()
    for text in (repr(gw), str(gw), repr(GatewayClient(gw))):
        assert KEY not in text and SECRET not in text and PASSWORD not in text
        assert "private_key='***'" in text
    with pytest.raises(ConfigError) as info:
        Gateway(base_url=f"ftp://x/?private_key={KEY}")
    assert KEY not in str(info.value)
    with pytest.raises(ConfigError, match="CA bundle"):
        gateway(verify=str(tmp_path / "none.pem"))
    with pytest.raises(ConfigError, match="rate_limits"):
        gateway(rate_limits={"smpp": 1})


def test_redact_helper() -> None:
    gateway()  # registers the secrets
    text = (
        f"POST http://gw/rest/send?private_key={KEY}&x=1 X-Secret: {SECRET} "
        f"password={PASSWORD} {json.dumps({'X-Secret': SECRET})} raw {SECRET}"
    )
    cleaned = redact(text)
    for secret in (KEY, SECRET, PASSWORD, "pa%24%24w0rd"):
        assert secret not in cleaned
    assert "private_key=***&x=1" in cleaned
    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "url %s", (f"?private_key={KEY}",), None)
    assert RedactingFilter().filter(record) and record.getMessage() == "url ?private_key=***"


def echo_app() -> Starlette:
    """A tiny gateway stand-in that answers every path like Plasgate accepts."""

    async def rest(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"queue_id": "q-real", "message_count": 1})

    async def api(request: Request) -> PlainTextResponse:
        form = parse_qs((await request.body()).decode())
        if form.get("password") != [PASSWORD]:
            return PlainTextResponse('Error "Authentication failure"', status_code=403)
        return PlainTextResponse('Success "11111111-2222-4333-8444-555555555555"')

    return Starlette(
        routes=[
            Route("/rest/send", rest, methods=["POST"]),
            Route("/rest/batch-send", rest, methods=["POST"]),
            Route("/api/send", api, methods=["POST"]),
        ]
    )


def test_no_secret_in_httpx_logs_over_a_real_socket(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "plasgate_nb"):
        caplog.set_level(logging.DEBUG, logger=name)
    with BackgroundServer(echo_app, mode="thread") as server:
        client = GatewayClient(gateway(base_url=server.url))
        requests = [
            build_batches(frame(1), sender="SMS Info")[0],
            build_singles(frame(1), sender="SMS Info")[0],
            build_singles(frame(1), sender="SMS Info", path="http")[0],
        ]
        results = client.send_many(requests)
    assert [r.outcome for r in results] == ["accepted"] * 3
    names = {r.name for r in caplog.records}
    assert "httpx" in names and any(n.startswith("httpcore") for n in names)
    assert any("private_key=***" in r.getMessage() for r in caplog.records if r.name == "httpx")
    everything = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in (KEY, SECRET, PASSWORD, "pa%24%24w0rd", "%242y%2410"):
        assert secret not in everything


# ------------------------------------------------------------------------------------------ against the simulator
@pytest.fixture(scope="module")
def sim() -> Any:
    """One simulator for this module's real-socket tests (thread mode)."""
    from plasgate_nb.simulator import Simulator, SimulatorConfig

    with Simulator(SimulatorConfig(seed=7), mode="thread") as simulator:
        yield simulator


@pytest.fixture
def sim_client(sim: Any) -> GatewayClient:
    """A client with the simulator's credentials, limits off, faults cleared."""
    sim.clear_faults()
    c = sim.credentials
    gw = Gateway(
        base_url=sim.url,
        private_key=c.private_key,
        secret=c.secret,
        username=c.username,
        password=c.password,
        sender=c.sender,
        rate_limits={"batch": None, "single": None, "http": None},
        read_timeout=2.0,
    )
    return GatewayClient(gw)


_BLOCKS: dict[str, int] = {}


def audience(prefix: str, n: int = 3) -> pd.DataFrame:
    """Rows with numbers no other test uses (one block per prefix), the first two sharing their content."""
    block = _BLOCKS.setdefault(prefix, len(_BLOCKS) + 1)
    return pd.DataFrame(
        {
            "message_key": [f"{prefix}{i}" for i in range(n)],
            "msisdn": [f"8551{block:03d}{i:04d}" for i in range(n)],
            "content": ["Same for all" if i < 2 else f"Code #ma#{i:04d}#ma#" for i in range(n)],
        }
    )


def recorded(sim: Any, numbers: Any) -> list[dict[str, Any]]:
    """Return the simulator's accepted records for these numbers."""
    wanted = set(numbers)
    return [r for r in sim.records() if r["to"] in wanted]


def test_simulator_all_three_paths(sim: Any, sim_client: GatewayClient) -> None:
    df = audience("three")
    sender = sim_client.gateway.sender
    requests = (
        build_batches(df, sender=sender)
        + build_singles(df, sender=sender)
        + build_singles(df, sender=sender, path="http")
    )
    results = sim_client.send_many(requests)
    assert [r.outcome for r in results] == ["accepted"] * 7
    assert results[0].message_count == 3 and results[0].queue_id
    assert all(r.message_id for r in results[4:])
    records = recorded(sim, df["msisdn"])
    assert sorted(r["route"] for r in records) == ["api"] * 3 + ["batch"] * 3 + ["rest"] * 3
    assert {r["content"] for r in records} == set(df["content"])


def test_simulator_401_and_403_are_rejected(sim: Any, sim_client: GatewayClient) -> None:
    df = audience("auth")
    bad = GatewayClient(sim_client.gateway.with_options(secret="wrong$secret", password="wrong"))
    batch, http = bad.send_many(
        [build_batches(df, sender="SMS Info")[0], build_singles(df, sender="SMS Info", path="http")[0]]
    )
    assert (batch.outcome, batch.status) == ("rejected", 401)
    assert (http.outcome, http.status) == ("rejected", 403) and "Authentication" in (http.reason or "")
    assert recorded(sim, df["msisdn"]) == []


def test_simulator_400_names_the_field(sim: Any, sim_client: GatewayClient) -> None:
    df = audience("sender")
    result = sim_client.send(build_singles(df, sender="NotApproved")[0])
    assert (result.outcome, result.status) == ("rejected", 400)
    assert "sender" in (result.reason or "")
    assert recorded(sim, df["msisdn"]) == []


def test_simulator_throttle_is_retried_and_sent_once(sim: Any, sim_client: GatewayClient) -> None:
    from plasgate_nb.simulator import Fault

    df = audience("throttle")
    sim.set_faults(Fault("throttle", route="batch", count=1))
    fake = FakeTime()  # the wait is logical: the limiter's clock moves when it sleeps
    client = GatewayClient(sim_client.gateway, clock=fake.clock, sleep=fake.sleep)
    result = client.send(build_batches(df, sender="SMS Info")[0])
    assert (result.outcome, result.attempts) == ("accepted", 2)
    assert len(fake.sleeps) == 1 and fake.sleeps[0] > 0  # the simulator's Retry-After was honoured
    assert len(recorded(sim, df["msisdn"])) == 3


@pytest.mark.parametrize(
    ("kind", "status"),
    [("drop_after", 500), ("error_after", 500), ("error_after", 503), ("error_after", 408), ("delay_after", 500)],
)
def test_simulator_ambiguous_failures_are_uncertain_and_not_resent(
    sim: Any, sim_client: GatewayClient, kind: str, status: int
) -> None:
    from plasgate_nb.simulator import Fault

    df = audience(f"{kind}{status}")
    sim.set_faults(Fault(kind, route="batch", count=1, status=status, delay=1.0))
    client = GatewayClient(sim_client.gateway.with_options(read_timeout=0.3, max_retry_wait=2.0))
    result = client.send(build_batches(df, sender="SMS Info")[0])
    assert result.outcome == "uncertain" and result.attempts == 1
    assert len(recorded(sim, df["msisdn"])) == 3  # it was accepted exactly once: resending would duplicate


@pytest.mark.parametrize("status", [503, 408])
@pytest.mark.parametrize(("path", "route"), [("single", "rest"), ("http", "api")])
def test_simulator_late_errors_on_single_sends_are_uncertain_and_not_resent(
    sim: Any, sim_client: GatewayClient, path: str, route: str, status: int
) -> None:
    from plasgate_nb.simulator import Fault

    df = audience(f"late-{path}-{status}", n=1)
    sim.set_faults(Fault("error_after", route=route, count=1, status=status))
    client = GatewayClient(sim_client.gateway.with_options(max_retry_wait=2.0))
    result = client.send(build_singles(df, sender="SMS Info", path=path)[0])
    assert (result.outcome, result.status, result.attempts) == ("uncertain", status, 1)
    assert len(recorded(sim, df["msisdn"])) == 1


@pytest.mark.parametrize("delay", [0.0, 0.3])  # while the helper starts, and while the caller waits
def test_interrupting_run_sync_cancels_the_helper_thread(delay: float) -> None:
    import signal
    import time

    class Interrupted(Exception):
        """Stands in for KeyboardInterrupt."""

    started, cancelled = threading.Event(), threading.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def on_signal(signum: int, frame: Any) -> None:
        raise Interrupted

    def interrupt_when_started() -> None:
        started.wait(5)
        time.sleep(delay)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)

    async def cell() -> None:
        run_sync(forever())

    previous = signal.signal(signal.SIGUSR1, on_signal)
    try:
        threading.Thread(target=interrupt_when_started, name="test-interrupter").start()
        with pytest.raises(Interrupted):
            asyncio.run(cell())
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert cancelled.is_set()
    assert not [t for t in threading.enumerate() if t.name == "plasgate-nb-sync"]


def test_tls_context_is_built_once_per_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import ssl

    import certifi

    calls: list[Any] = []
    real = httpx.create_ssl_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(httpx, "create_ssl_context", counting)
    with BackgroundServer(echo_app, mode="thread") as server:
        client = GatewayClient(gateway(base_url=server.url))
        for _ in range(3):
            assert client.send(build_singles(frame(1), sender="SMS Info")[0]).outcome == "accepted"
    assert len(calls) == 1
    assert isinstance(gateway(verify=certifi.where()).ssl_context(), ssl.SSLContext)
    assert gateway(verify=False).ssl_context() is False


def test_undecodable_answer_is_uncertain_and_bad_url_is_a_config_error() -> None:
    def gzip_lie(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=b"not gzip at all")

    client, _ = client_for(gzip_lie)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert result.outcome == "uncertain" and "DecodingError" in (result.reason or "")
    with pytest.raises(ConfigError, match="not a valid URL") as info:  # refused before anything is marked or sent
        client_for(ok, base_url="http://[::1")
    assert KEY not in str(info.value) and SECRET not in str(info.value)


def test_tls_failure_and_refused_connection_are_retried_over_real_sockets() -> None:
    """Nothing was written: a TLS handshake that fails (a plain-HTTP server behind https://) and a port
    nobody listens on are retried; the server saw a ClientHello, never a request."""
    import socket

    seen: list[bytes] = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(10)

    def plain_http_server() -> None:
        for _ in range(2):  # the first attempt and its one retry
            conn, _addr = listener.accept()
            with conn:
                seen.append(conn.recv(4096))
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    thread = threading.Thread(target=plain_http_server, name="tls-refuser")
    thread.start()
    try:
        port = listener.getsockname()[1]
        fake = FakeTime()
        client = GatewayClient(
            gateway(base_url=f"https://127.0.0.1:{port}", max_retries=1), clock=fake.clock, sleep=fake.sleep
        )
        result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    finally:
        thread.join(timeout=10)
        listener.close()
    assert (result.outcome, result.attempts, result.status) == ("retry", 2, None)
    assert "ConnectError" in (result.reason or "") and fake.sleeps == [2.0]
    assert len(seen) == 2 and all(hello[:1] == b"\x16" for hello in seen)  # TLS handshake records, no HTTP
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    closed.bind(("127.0.0.1", 0))
    free_port = closed.getsockname()[1]
    closed.close()  # nobody listens there now: connection refused
    client = GatewayClient(gateway(base_url=f"http://127.0.0.1:{free_port}", max_retries=1), sleep=FakeTime().sleep)
    result = client.send(build_batches(frame(1), sender="SMS Info")[0])
    assert (result.outcome, result.attempts) == ("retry", 2) and "ConnectError" in (result.reason or "")

"""Fault injection, process mode and the CLI of the simulator, over real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from plasgate_nb.simulator import DeliveryModel, Fault, RateLimits, Simulator, SimulatorConfig
from plasgate_nb.simulator.cli import parse_carrier, parse_limits
from plasgate_nb.simulator.faults import parse_fault
from tests.simulator_helpers import Receiver, api, rest, single


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A fast thread-mode simulator."""
    with Simulator(SimulatorConfig(seed=5, clock_speed=1000, callback_retry_delay=0.5), mode="thread") as s:
        yield s


def test_error_before_processing_records_nothing(sim: Simulator) -> None:
    sim.set_faults(Fault("error_before", route="rest", count=1, status=503))
    assert rest(sim, "/rest/send", single()).status_code == 503
    assert sim.records() == []
    assert rest(sim, "/rest/send", single()).status_code == 200
    assert len(sim.records()) == 1


def test_fault_route_filter(sim: Simulator) -> None:
    sim.set_faults(Fault("error_before", route="batch"))
    assert rest(sim, "/rest/send", single()).status_code == 200
    body = {"messages": [{"to": "85512345678", "content": "x", "sender": "SMS Info"}]}
    assert rest(sim, "/rest/batch-send", body).status_code == 500


def test_throttle_fault_is_429(sim: Simulator) -> None:
    sim.set_faults(Fault("throttle", count=1))
    resp = rest(sim, "/rest/send", single())
    assert resp.status_code == 429 and resp.headers["retry-after"] == "60"
    assert sim.records() == []


def test_error_after_accepting_keeps_the_record(sim: Simulator) -> None:
    sim.set_faults(Fault("error_after", count=1))
    assert rest(sim, "/rest/send", single()).status_code == 500
    assert len(sim.records()) == 1


def test_delay_after_accepting_times_the_client_out(sim: Simulator) -> None:
    sim.set_faults(Fault("delay_after", count=1, delay=1.0))
    with pytest.raises(httpx.ReadTimeout):
        rest(sim, "/rest/send", single(), timeout=0.3)
    assert len(sim.records()) == 1


def test_drop_after_accepting_closes_without_answer(sim: Simulator) -> None:
    sim.set_faults(Fault("drop_after", route="batch", count=1))
    body = {"messages": [{"to": ["85512345678", "85512345679"], "content": "x", "sender": "SMS Info"}]}
    with pytest.raises(httpx.RemoteProtocolError, match="without sending"):
        rest(sim, "/rest/batch-send", body)
    assert len(sim.records()) == 2
    assert rest(sim, "/rest/batch-send", body).status_code == 200


def test_probability_faults_are_seeded(sim: Simulator) -> None:
    sim.set_faults(Fault("error_before", probability=0.5))
    codes = [rest(sim, "/rest/send", single()).status_code for _ in range(40)]
    assert 5 < codes.count(500) < 35 and codes.count(200) == len(sim.records())
    assert sim.state()["faults"][0]["probability"] == 0.5
    sim.clear_faults()
    assert sim.state()["faults"] == []


def test_duplicate_callbacks(sim: Simulator) -> None:
    with Receiver() as receiver:
        sim.set_faults(Fault("duplicate_callbacks", count=1))
        rest(sim, "/rest/send", single(dlr_url=receiver.url("/dup"), dlr_level=3))
        receiver.wait("/dup", 4)
        sim.wait_idle()
        levels = sorted(f["level"] for f in receiver.fields("/dup"))
        assert levels == ["1", "1", "2", "2"]


def test_out_of_order_callbacks(sim: Simulator) -> None:
    with Receiver() as receiver:
        sim.set_faults(Fault("out_of_order_callbacks"))
        rest(sim, "/rest/send", single(dlr_url=receiver.url("/ooo"), dlr_level=3))
        receiver.wait("/ooo", 2)
        assert [f["level"] for f in receiver.fields("/ooo")] == ["2", "1"]


def test_callbacks_before_the_send_response(sim: Simulator) -> None:
    with Receiver() as receiver:
        sim.set_faults(Fault("callbacks_before_response"))
        body = {
            "messages": [
                {
                    "to": "85512345678",
                    "content": "x",
                    "sender": "SMS Info",
                    "dlr_url": receiver.url("/early"),
                    "dlr_level": 3,
                }
            ],
            "batch_config": {"callback_url": receiver.url("/early-cb")},
        }
        resp = rest(sim, "/rest/batch-send", body)
        assert resp.status_code == 200
        assert len(receiver.on("/early-cb")) == 1 and len(receiver.on("/early")) == 2


def test_parse_fault_cli_form() -> None:
    fault = parse_fault("error_after:batch:n=2:status=502")
    assert (fault.kind, fault.route, fault.count, fault.status) == ("error_after", "batch", 2, 502)
    assert parse_fault("drop_after:p=0.25").probability == 0.25
    with pytest.raises(ValueError, match="unknown fault kind"):
        parse_fault("explode")


def test_process_mode_is_driven_from_the_parent() -> None:
    with Receiver() as receiver, Simulator(SimulatorConfig(seed=2)) as sim:
        assert sim.mode == "process"
        sim.set_faults(Fault("error_after", count=1))
        assert rest(sim, "/rest/send", single()).status_code == 500
        body = {
            "messages": [{"to": "85512345678", "content": "x", "sender": "SMS Info"}],
            "batch_config": {"callback_url": receiver.url("/p"), "schedule_at": "600s"},
        }
        assert rest(sim, "/rest/batch-send", body).status_code == 200
        assert [r["route"] for r in sim.records()] == ["rest", "batch"]
        sim.advance(600)
        receiver.wait("/p", 1)


def test_cli_serves_until_sigint() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "plasgate_nb.cli", "simulator", "--port", "0", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith("Plasgate simulator listening on http://127.0.0.1:")
        url = first.split()[-1]
        banner = "".join(proc.stdout.readline() for _ in range(6))  # type: ignore[union-attr]
        assert "X-Secret: sk$demo$" in banner
        assert httpx.get(f"{url}/ping", trust_env=False).text == "Jasmin/PONG"
        proc.send_signal(signal.SIGINT)
        out, _err = proc.communicate(timeout=15)
        assert proc.returncode == 0 and "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_limits_and_carriers_parse_and_refuse_nonsense() -> None:
    limits = parse_limits(["batch=20", "api=off"])
    assert (limits.rest, limits.batch, limits.api) == (200, 20, None)
    assert parse_limits(["rest=5"], off=True) == RateLimits(rest=5, batch=None, api=None)
    for bad in ("batch", "sms=3", "batch=fast", "batch=-1"):
        with pytest.raises(ValueError, match="--limit"):
            parse_limits([bad])
    model = parse_carrier("metfone:undeliverable=0.2,latency=30", DeliveryModel())
    metfone = next(c for c in model.carriers if c.name == "metfone")
    assert (metfone.undeliverable, metfone.median_latency) == (0.2, 30.0)
    assert [c for c in model.carriers if c.name != "metfone"] == [
        c for c in DeliveryModel().carriers if c.name != "metfone"
    ]
    assert parse_carrier("other:rejected=0.5", DeliveryModel()).fallback.rejected == 0.5
    for bad in ("nokia:latency=1", "smart", "smart:speed=3", "smart:rejected=2", "smart:undeliverable=0.6,expired=0.6"):
        with pytest.raises(ValueError, match="--carrier"):
            parse_carrier(bad, DeliveryModel())


def test_cli_options_shape_the_served_gateway() -> None:
    """A carrier that never delivers and a batch limit of 1/min, as a user would start them from a shell."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "plasgate_nb.cli", "simulator", "--port", "0", "--seed", "1"]
    argv += ["--limit", "batch=1", "--carrier", "cellcard:undeliverable=1,expired=0,rejected=0,latency=1"]
    argv += ["--clock-speed", "100"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        url = proc.stdout.readline().split()[-1]  # type: ignore[union-attr]
        lines = [proc.stdout.readline() for _ in range(11)]  # type: ignore[union-attr]
        text = "".join(lines)
        assert "limits:    rest 200/min, batch 1/min, api 200/min" in text
        assert "cellcard  undeliverable 1, expired 0, rejected 0" in text
        creds = {"private_key": "pk_demo_7f3a9c2e41b8"}
        headers = {"X-Secret": "sk$demo$5d1e8b0a93c4"}
        body = {"globals": {"sender": "SMS Info"}, "messages": [{"to": "85512345678", "content": "hi"}]}
        with httpx.Client(base_url=url, params=creds, headers=headers, trust_env=False) as client:
            assert client.post("/rest/batch-send", json=body).status_code == 200
            throttled = client.post("/rest/batch-send", json=body)
            assert throttled.status_code == 429 and throttled.headers["Retry-After"]
            deadline = time.monotonic() + 20
            while (status := client.get("/report").json()[0]["status"]) != "UNDELIV" and time.monotonic() < deadline:
                time.sleep(0.05)  # 100x clock: the 1 s median latency passes in about 10 ms
            assert status == "UNDELIV"  # cellcard (855 12...) now never delivers
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    bad = subprocess.run([*argv[:4], "--limit", "sms=3"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "--limit 'sms=3'" in bad.stderr


# ------------------------------------------------------------------------------ refusals and late answers
@pytest.mark.parametrize("status", [503, 408, 502])
def test_error_after_accepting_answers_the_status_and_still_delivers(sim: Simulator, status: int) -> None:
    """503/408 after the request was taken: recorded, charged, and every receipt still comes."""
    with Receiver() as receiver:
        sim.set_faults(Fault("error_after", route="rest", count=1, status=status))
        resp = rest(sim, "/rest/send", single(to="85512345670", dlr_url=receiver.url("/late"), dlr_level=3))
        assert resp.status_code == status
        assert resp.headers.get("retry-after") == ("1" if status == 503 else None)  # an invitation to resend
        (record,) = [r for r in sim.records() if r["to"] == "85512345670"]
        receiver.wait("/late", 1)
        sim.wait_idle()
        assert {f["id"] for f in receiver.fields("/late")} == {record["message_id"]}


def test_error_fault_status_must_be_408_or_5xx() -> None:
    assert parse_fault("error_after:batch:status=408").status == 408
    with pytest.raises(ValueError, match="408 or a 5xx"):
        parse_fault("error_after:status=404")
    with pytest.raises(ValueError, match="408 or a 5xx"):
        parse_fault("error_before:status=200")


def test_batch_errbacks_for_unrouted_and_malformed_numbers_come_after_the_200(sim: Simulator) -> None:
    """A number no route serves (855 13..., qb) and a malformed one: 200 for the batch, then errbacks."""
    with Receiver() as receiver:
        body = {
            "globals": {"sender": "SMS Info"},
            "messages": [{"to": ["85512345671", "85513345672", "8551234"], "content": "x"}],
            "batch_config": {"callback_url": receiver.url("/cb"), "errback_url": receiver.url("/eb")},
        }
        answer = rest(sim, "/rest/batch-send", body)
        assert answer.status_code == 200 and answer.json()["message_count"] == 3
        errbacks = sorted(receiver.wait("/eb", 2), key=lambda c: c["query"]["to"])
        (ok,) = receiver.wait("/cb", 1)
        sim.wait_idle()
    assert [r["to"] for r in sim.records()] == ["85512345671"]  # refused numbers are neither recorded nor charged
    assert ok["query"]["to"] == "85512345671"
    assert [(c["query"]["to"], c["query"]["status"], c["query"]["statusText"]) for c in errbacks] == [
        ("8551234", "0", 'HTTPAPI error: Error "Argument [to] has an invalid value: [8551234].'),
        ("85513345672", "0", 'HTTPAPI error: Error "No route found'),
    ]
    assert {c["query"]["batchId"] for c in errbacks} == {answer.json()["queue_id"]}


def test_batch_receipts_are_scheduled_only_once_the_answer_has_left() -> None:
    """Driven at the ASGI level: when the 200's body is handed to the server, no receipt is scheduled yet."""
    import asyncio
    import json

    from plasgate_nb.simulator.app import create_app

    app = create_app(SimulatorConfig(seed=1))
    gateway = app.sim.gateway  # type: ignore[attr-defined]
    creds = SimulatorConfig().accounts[0]
    body = json.dumps(
        {
            "globals": {"sender": "SMS Info"},
            "messages": [{"to": ["85512345673", "85513345674"], "content": "x", "dlr_url": "http://127.0.0.1:9/d"}],
            "batch_config": {"callback_url": "http://127.0.0.1:9/cb", "errback_url": "http://127.0.0.1:9/eb"},
        }
    ).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/rest/batch-send",
        "raw_path": b"/rest/batch-send",
        "query_string": f"private_key={creds.private_key}".encode(),
        "headers": [(b"x-secret", creds.secret.encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    seen: list[tuple[str, int]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, object]) -> None:
        seen.append((str(message["type"]), gateway.scheduled))

    asyncio.run(app(scope, receive, send))
    assert seen == [("http.response.start", 0), ("http.response.body", 0)]
    assert len(gateway.ids) == 1  # accepted and recorded before answering ...
    assert gateway.scheduled == 3  # ... its batch callback, level-1 DLR and the errback only after


@pytest.mark.parametrize("path", ["rest", "api"])
def test_single_sends_to_an_unrouted_number_are_412(sim: Simulator, path: str) -> None:
    balance = sim.state()["balances"]["demo"]
    if path == "rest":
        resp = rest(sim, "/rest/send", single(to="85513345675"))
        assert (resp.status_code, resp.json()) == (412, {"message": 'Error "No route found'})
    else:
        resp = api(sim, to="85513345675", content="x")
        assert (resp.status_code, resp.text) == (412, 'Error "No route found"')
    assert sim.records() == [] and sim.state()["balances"]["demo"] == balance

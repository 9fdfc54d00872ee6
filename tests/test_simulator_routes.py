"""The simulator's send routes over real sockets: answers, validation, auth, limits, balance, report."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest

from plasgate_nb.simulator import Account, RateLimits, Simulator, SimulatorConfig
from tests.simulator_helpers import api, rest, single


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A thread-mode simulator with the default demo account."""
    with Simulator(SimulatorConfig(seed=7, clock_speed=1000), mode="thread") as s:
        yield s


def test_rest_send_answers_queue_id_and_records_it(sim: Simulator) -> None:
    resp = rest(sim, "/rest/send", single(content="Code #ma#4321#ma# ok"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["message_count"] == 1
    (record,) = sim.records()
    assert record["message_id"] == body["queue_id"]
    assert record["route"] == "rest" and record["to"] == "85512345678" and record["sender"] == "SMS Info"
    assert record["delivered_text"] == "Code 4321 ok"
    assert record["content_report"] == "Code ****** ok"
    assert record["attempt"] == 1 and record["batch_id"] is None


def test_batch_send_gives_each_recipient_its_own_id(sim: Simulator) -> None:
    body = {
        "globals": {"sender": "SMS Info"},
        "messages": [{"to": ["85512345601", "85512345602"], "content": "A"}, {"to": "85512345603", "content": "B"}],
    }
    resp = rest(sim, "/rest/batch-send", body)
    assert resp.status_code == 200
    answer = resp.json()
    assert answer["message_count"] == 3
    records = sim.records()
    assert [r["to"] for r in records] == ["85512345601", "85512345602", "85512345603"]
    assert {r["batch_id"] for r in records} == {answer["queue_id"]}
    assert len({r["message_id"] for r in records}) == 3
    assert answer["queue_id"] not in {r["message_id"] for r in records}
    assert [r["content"] for r in records] == ["A", "A", "B"]


def test_api_send_answers_like_jasmin(sim: Simulator) -> None:
    resp = api(sim, to="85512345678", content="Hello")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    assert resp.text.startswith('Success "') and resp.text.endswith('"')
    assert sim.records()[0]["message_id"] == resp.text[9:-1]
    assert sim.records()[0]["route"] == "api"


@pytest.mark.parametrize(
    ("form", "status", "text"),
    [
        ({"password": "wrong"}, 403, 'Error "Authentication failure for username:demo"'),
        ({"username": "nobody"}, 403, 'Error "Authentication failure for username:nobody"'),
        ({"to": None}, 400, 'Error "Mandatory argument [to] is not found."'),
        ({"content": None}, 400, 'Error "content or hex-content not present."'),
        ({"to": "abc"}, 400, 'Error "Argument [to] has an invalid value: [abc]."'),
        ({"dlr_level": "4"}, 400, 'Error "Argument [dlr_level] has an invalid value: [4]."'),
        ({"sender": "Unknown"}, 400, 'Error "Argument [sender] has an invalid value: [Unknown]."'),
    ],
)
def test_api_send_errors(sim: Simulator, form: dict[str, str | None], status: int, text: str) -> None:
    resp = api(sim, **{"to": "85512345678", "content": "Hello", **form})
    assert (resp.status_code, resp.text) == (status, text)
    assert sim.records() == []


def test_rest_auth_failures_are_401(sim: Simulator) -> None:
    assert rest(sim, "/rest/send", single(), secret="nope").status_code == 401
    resp = httpx.post(f"{sim.url}/rest/batch-send", json={"messages": []}, trust_env=False)
    assert resp.status_code == 401 and "message" in resp.json()
    assert sim.records() == []


def test_secret_is_passed_verbatim_with_dollar(sim: Simulator) -> None:
    assert "$" in sim.credentials.secret
    assert rest(sim, "/rest/send", single(), secret=sim.credentials.secret.replace("$", "")).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (single(to="012345678"), "to"),
        (single(to="+85512345678"), "to"),
        (single(content=""), "content"),
        (single(sender="TooLongSender1"), "sender"),
        (single(sender="NotMine"), "sender"),
        (single(dlr_url="ftp://x/y"), "dlr_url"),
        (single(dlr_level=4, dlr_url="http://127.0.0.1:1/x"), "dlr_level"),
        (single(dlr_method="PUT"), "dlr_method"),
        (single(dlr="maybe"), "dlr"),
    ],
)
def test_rest_send_validation_names_the_field(sim: Simulator, body: dict[str, object], field: str) -> None:
    resp = rest(sim, "/rest/send", body)
    assert resp.status_code == 400
    assert field in resp.json()["message"]
    assert sim.records() == []


def test_malformed_json_is_400(sim: Simulator) -> None:
    resp = rest(sim, "/rest/send", None, raw=b'{"to": "855')
    assert resp.status_code == 400 and "body" in resp.json()["message"]


def test_batch_validation_names_message_fields(sim: Simulator) -> None:
    body = {
        "globals": {"sender": "SMS Info"},
        "messages": [{"to": "85512345678", "content": "ok"}, {"to": "85512345679", "content": ""}],
    }
    resp = rest(sim, "/rest/batch-send", body)
    assert resp.status_code == 400 and "messages[1].content" in resp.json()["message"]
    resp = rest(sim, "/rest/batch-send", {"globals": {"sender": "SMS Info"}})
    assert resp.status_code == 400 and "messages" in resp.json()["message"]
    assert sim.records() == []


def test_batch_invalid_numbers_can_be_rejected() -> None:
    with Simulator(SimulatorConfig(batch_invalid_numbers="reject"), mode="thread") as sim:
        resp = rest(
            sim,
            "/rest/batch-send",
            {"messages": [{"to": ["85512345678", "abc"], "content": "x", "sender": "SMS Info"}]},
        )
        assert resp.status_code == 400 and "messages[0].to" in resp.json()["message"]


def test_rate_limits_answer_429_with_retry_after_until_the_window_passes() -> None:
    config = SimulatorConfig(rate_limits=RateLimits(rest=2, batch=1, api=1, window=60))
    with Simulator(config, mode="thread") as sim:
        assert [rest(sim, "/rest/send", single()).status_code for _ in range(2)] == [200, 200]
        resp = rest(sim, "/rest/send", single())
        assert resp.status_code == 429 and 1 <= int(resp.headers["retry-after"]) <= 60
        batch = {"messages": [{"to": "85512345678", "content": "x", "sender": "SMS Info"}]}
        assert [rest(sim, "/rest/batch-send", batch).status_code for _ in range(2)] == [200, 429]
        assert [api(sim, to="85512345678", content="x").status_code for _ in range(2)] == [200, 429]
        assert len(sim.records()) == 4
        sim.advance(61)
        assert rest(sim, "/rest/send", single()).status_code == 200


def test_rate_limits_off() -> None:
    with Simulator(SimulatorConfig(rate_limits=RateLimits.off()), mode="thread") as sim:
        batch = {"messages": [{"to": "85512345678", "content": "x", "sender": "SMS Info"}]}
        assert {rest(sim, "/rest/batch-send", batch).status_code for _ in range(110)} == {200}


def test_balance_exhausted_is_402_and_ucs2_costs_more() -> None:
    account = Account(balance=0.05, price_per_segment=0.01)
    with Simulator(SimulatorConfig(accounts=(account,)), mode="thread") as sim:
        khmer = "សួស្តី" * 20  # 120 UTF-16 units -> 2 parts
        assert rest(sim, "/rest/send", single(content=khmer)).status_code == 200
        record = sim.records()[0]
        assert (record["encoding"], record["segments"]) == ("UCS-2", 2)
        assert sim.state()["balances"]["demo"] == pytest.approx(0.03)
        batch = {"messages": [{"to": ["85512345678"] * 4, "content": "x", "sender": "SMS Info"}]}
        resp = rest(sim, "/rest/batch-send", batch)
        assert resp.status_code == 402 and "balance" in resp.json()["message"].lower()
        assert api(sim, to="85512345678", content="x" * 200).status_code == 200  # 2 parts, 0.02
        resp = api(sim, to="85512345678", content="x" * 200)  # 0.01 left, 0.02 needed
        assert (resp.status_code, resp.text[:21]) == (403, 'Error "Cannot charge ')
        sim.set_balance(1.0)
        assert rest(sim, "/rest/batch-send", batch).status_code == 200
        assert len(sim.records()) == 6


def test_report_masks_areas_and_needs_auth(sim: Simulator) -> None:
    rest(sim, "/rest/send", single(content="OTP #ma#907311#ma#, ref #ma#A1#ma#"))
    creds = sim.credentials
    resp = httpx.get(
        f"{sim.url}/report",
        params={"private_key": creds.private_key},
        headers={"X-Secret": creds.secret},
        trust_env=False,
    )
    assert resp.status_code == 200
    (row,) = resp.json()
    assert row["content"] == "OTP ******, ref ******"
    assert "907311" not in resp.text and "#ma#" not in resp.text
    assert sim.report()[0]["content"] == row["content"]
    assert httpx.get(f"{sim.url}/report", params={"private_key": creds.private_key}, trust_env=False).status_code == 401


def test_accounts_are_separate() -> None:
    other = Account(username="shop", password="shop-pass", private_key="pk_shop", secret="sk$shop", senders=("SHOP",))
    with Simulator(SimulatorConfig(accounts=(Account(), other)), mode="thread") as sim:
        creds = sim.credentials_for("shop")
        resp = httpx.post(
            f"{sim.url}/rest/send",
            params={"private_key": creds.private_key},
            headers={"X-Secret": creds.secret},
            trust_env=False,
            json={"sender": "SHOP", "to": "85512345678", "content": "x"},
        )
        assert resp.status_code == 200
        assert rest(sim, "/rest/send", single(), secret=creds.secret).status_code == 401
        assert sim.records()[0]["account"] == "shop"
        assert sim.report() == [] and len(sim.report(account="shop")) == 1


def test_attempt_counts_repeats_and_dump_jsonl(sim: Simulator, tmp_path: object) -> None:
    for _ in range(2):
        rest(sim, "/rest/send", single())
    assert [r["attempt"] for r in sim.records()] == [1, 2]
    path = tmp_path / "record.jsonl"  # type: ignore[operator]
    assert sim.dump_jsonl(path) == 2
    assert len(path.read_text().splitlines()) == 2


def test_reprs_hide_secrets() -> None:
    config = SimulatorConfig()
    account = config.accounts[0]
    with Simulator(replace(config, seed=1), mode="thread") as sim:
        for text in (repr(sim), repr(sim.config), repr(sim.credentials), str(sim.credentials)):
            assert account.secret not in text and account.password not in text
            assert account.private_key not in text


def test_429_names_the_configured_limit() -> None:
    with Simulator(SimulatorConfig(rate_limits=RateLimits(rest=1, batch=1, api=1, window=60)), mode="thread") as sim:
        rest(sim, "/rest/send", single())
        resp = rest(sim, "/rest/send", single())
        assert resp.status_code == 429 and resp.json()["message"] == "Too many requests: 1 per minute."

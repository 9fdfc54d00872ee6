"""Tests of the callback receiver over real sockets: parsing, tokens, durable ACK, group commit, refusals."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from plasgate_nb._dlr import parse_batch_callback, parse_dlr, parse_jasmin_date
from plasgate_nb._keys import key_digest
from plasgate_nb.callbacks import ACK, CallbackServer, callback_urls
from plasgate_nb.errors import CallbackError
from plasgate_nb.ledger import Ledger

CAMPAIGN = "spring sale"


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "ledger.db")
    led.open_campaign(CAMPAIGN)
    rows = pd.DataFrame(
        {
            "message_key": ["k1", "k2", "k3"],
            "msisdn": ["85512345678", "85512345679", "85512345670"],
            "content": ["a", "b", "b"],
        }
    )
    led.plan(CAMPAIGN, rows)
    led.mark_submitting(CAMPAIGN, ["k1"], batch_id="b1")
    led.settle(CAMPAIGN, ["k1"], state="accepted", queue_id="q1")
    led.mark_submitting(CAMPAIGN, ["k2", "k3"], batch_id="b2")
    led.settle(CAMPAIGN, ["k2", "k3"], state="uncertain", reason="read timeout")
    yield led
    led.close()


@pytest.fixture
def server(ledger: Ledger) -> Iterator[CallbackServer]:
    with CallbackServer(ledger, mode="thread") as srv:
        yield srv


def route(ledger: Ledger) -> tuple[int, str]:
    """The campaign's ledger id and callback token (what its callback URLs carry)."""
    info = ledger.open_campaign(CAMPAIGN)
    return info.id, info.token


def urls(server: CallbackServer, ledger: Ledger) -> dict[str, str]:
    return callback_urls(server.public_url, *route(ledger))


def level2(message_id: str, status: str = "DELIVRD") -> dict[str, str]:
    return {
        "id": message_id,
        "level": "2",
        "message_status": status,
        "connector": "smsc",
        "id_smsc": "5E8F",
        "sub": "001",
        "dlvrd": "001",
        "subdate": "2611250932",
        "donedate": "2611250933",
        "err": "000",
        "text": "Hello",
    }


def row(ledger: Ledger, key: str) -> dict[str, Any]:
    frame = ledger.messages(CAMPAIGN)
    return frame.set_index("message_key").loc[key].to_dict()


# ------------------------------------------------------------------------------------------ parsing
def test_parse_dlr_level2_reads_jasmin_fields() -> None:
    event = parse_dlr(level2("abc-1"), campaign="c", message_key="k")
    assert (event["message_id"], event["level"], event["status"], event["err"]) == ("abc-1", 2, "DELIVRD", "000")
    # 2611250933 is 09:33 in Phnom Penh (UTC+7) -> 02:33 UTC
    assert event["done_at"] == datetime(2026, 11, 25, 2, 33, tzinfo=UTC)
    assert event["raw"]["id_smsc"] == "5E8F"
    assert "text" not in event["raw"]  # the message's first characters may hold masked values


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "missing field 'id'"),
        ({"id": "x", "level": "3", "message_status": "DELIVRD"}, "level"),
        ({"id": "x", "level": "1", "message_status": "DELIVRD"}, "ESME"),
        ({"id": "x", "level": "2", "message_status": "ESME_ROK"}, "delivery status"),
        ({"id": "x" * 300, "level": "2", "message_status": "DELIVRD"}, "too long"),
        ({"id": "a b", "level": "2", "message_status": "DELIVRD"}, "not a message id"),
    ],
)
def test_parse_dlr_refuses_malformed(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(CallbackError, match=reason):
        parse_dlr(fields, campaign="c", message_key=None)


def test_parse_batch_callback_success_and_errback() -> None:
    ok = parse_batch_callback(
        {"batchId": "q1", "to": "85512345678", "status": "1", "statusText": 'Success "m-1"'},
        campaign="c",
        errback=False,
    )
    assert (ok["message_id"], ok["msisdn"], ok["ok"], ok["source"]) == ("m-1", "85512345678", True, "batch")
    bad = parse_batch_callback(
        {"batchId": "q1", "to": "85512345678", "status": "0", "statusText": "Error: no route"},
        campaign="c",
        errback=True,
    )
    assert (bad["message_id"], bad["ok"], bad["error"]) == (None, False, "Error: no route")


def test_parse_jasmin_date_rejects_garbage() -> None:
    assert parse_jasmin_date("nonsense") is None
    assert parse_jasmin_date("2613450000") is None  # month 13
    assert parse_jasmin_date(None) is None


# ------------------------------------------------------------------------------------------ server
def test_dlr_with_key_is_recorded_then_acked(server: CallbackServer, ledger: Ledger) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    answer = httpx.post(url, data=level2("m-k1"))
    assert (answer.status_code, answer.text) == (200, ACK)
    current = row(ledger, "k1")
    assert current["delivery_status"] == "DELIVRD"
    assert current["message_id"] == "m-k1"


def test_get_and_json_dlrs_are_accepted(server: CallbackServer, ledger: Ledger) -> None:
    base = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    level1 = {"id": "m-k1", "level": "1", "message_status": "ESME_ROK", "connector": "smsc"}
    assert httpx.get(base, params=level1).text == ACK
    assert httpx.post(base, json=level2("m-k1")).text == ACK
    events = ledger.events(CAMPAIGN)
    assert sorted(events["level"].tolist()) == [1, 2]


def test_duplicate_reports_are_recorded_once(server: CallbackServer, ledger: Ledger) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    for _ in range(3):
        assert httpx.post(url, data=level2("m-k1")).text == ACK
    assert len(ledger.events(CAMPAIGN)) == 1


def test_late_non_final_report_does_not_overwrite_final(server: CallbackServer, ledger: Ledger) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    httpx.post(url, data=level2("m-k1", "UNDELIV"))
    httpx.post(url, data=level2("m-k1", "ENROUTE"))
    assert row(ledger, "k1")["delivery_status"] == "UNDELIV"


def test_batch_callback_pairs_id_and_settles_uncertain(server: CallbackServer, ledger: Ledger) -> None:
    ledger_urls = urls(server, ledger)
    # the batch answer never came (uncertain); the gateway's callback proves k2 was accepted
    ledger.settle(CAMPAIGN, ["k2"], state="uncertain", queue_id="q2")
    answer = httpx.get(
        ledger_urls["callback_url"],
        params={"batchId": "q2", "to": "85512345679", "status": "1", "statusText": 'Success "m-k2"'},
    )
    assert answer.text == ACK
    current = row(ledger, "k2")
    assert (current["state"], current["message_id"]) == ("accepted", "m-k2")
    # a grouped DLR (no key) now finds its row through the message id
    group_url = ledger_urls["dlr_url"].format(key="_group")
    assert httpx.post(group_url, data=level2("m-k2")).text == ACK
    assert row(ledger, "k2")["delivery_status"] == "DELIVRD"


def test_forged_report_without_token_is_refused(server: CallbackServer, ledger: Ledger) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    token = ledger.campaign_token(CAMPAIGN) or ""
    for forged in (url.replace(token, "wrong"), url.replace(token, token[:-1])):
        answer = httpx.post(forged, data=level2("m-k1"))
        assert answer.status_code == 403
    assert httpx.post(url.replace(f"/{token}/", "/"), data=level2("m-k1")).status_code == 404
    cid = route(ledger)[0]
    for unknown in (url.replace(f"/dlr/{cid}/", "/dlr/9999/"), url.replace(f"/dlr/{cid}/", "/dlr/spring%20sale/")):
        assert httpx.post(unknown, data=level2("m-k1")).status_code == 403
    assert ledger.events(CAMPAIGN).empty


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"data": {"id": "m", "level": "9", "message_status": "DELIVRD"}}, 400),
        ({"content": b"\xff\xfe\xfa", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 400),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"[1, 2]", "headers": {"content-type": "application/json"}}, 400),
        ({"content": b"x" * 20000, "headers": {"content-type": "application/x-www-form-urlencoded"}}, 413),
    ],
)
def test_malformed_requests_get_4xx_and_change_nothing(
    server: CallbackServer, ledger: Ledger, kwargs: dict[str, Any], status: int
) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    assert httpx.post(url, **kwargs).status_code == status
    assert ledger.events(CAMPAIGN).empty
    assert httpx.get(f"{server.url}/health").text == "ok"


def test_wrong_method_is_refused(server: CallbackServer, ledger: Ledger) -> None:
    url = urls(server, ledger)["callback_url"]
    assert httpx.post(url, data={"batchId": "q"}).status_code == 405


def test_storage_failure_answers_503_so_the_gateway_retries(
    server: CallbackServer, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))

    def broken(events: list[dict[str, Any]]) -> int:
        raise OSError("disk full")

    monkeypatch.setattr(ledger, "record_events", broken)
    answer = httpx.post(url, data=level2("m-k1"))
    assert answer.status_code == 503
    assert "ACK" not in answer.text
    monkeypatch.undo()
    assert httpx.post(url, data=level2("m-k1")).text == ACK


def test_concurrent_reports_are_committed_in_groups(
    server: CallbackServer, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = urls(server, ledger)["dlr_url"].format(key="_group")
    groups: list[int] = []
    original = ledger.record_events

    def counting(events: list[dict[str, Any]]) -> int:
        groups.append(len(events))
        return original(events)

    monkeypatch.setattr(ledger, "record_events", counting)

    async def burst() -> list[httpx.Response]:
        import asyncio

        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=50)) as client:
            return await asyncio.gather(*(client.post(url, data=level2(f"m-{i}")) for i in range(200)))

    import asyncio

    answers = asyncio.run(burst())
    assert all(a.text == ACK for a in answers)
    assert sum(groups) == 200
    assert len(groups) < 200  # several reports shared a commit
    assert len(ledger.events(CAMPAIGN)) == 200


def test_process_mode_shares_the_ledger_file(ledger: Ledger) -> None:
    with CallbackServer(ledger) as srv:
        assert "running" in repr(srv)
        url = callback_urls(srv.public_url, *route(ledger))["dlr_url"]
        assert httpx.post(url.format(key=key_digest("k1")), data=level2("m-k1")).text == ACK
    assert row(ledger, "k1")["delivery_status"] == "DELIVRD"


def test_process_mode_commits_concurrent_reports_in_its_writer_process(ledger: Ledger) -> None:
    import asyncio

    with CallbackServer(ledger) as srv:
        url = callback_urls(srv.public_url, *route(ledger))["dlr_url"]

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=20)) as client:
                return await asyncio.gather(
                    *(client.get(url.format(key="_group"), params=level2(f"p-{i}")) for i in range(100))
                )

        answers = asyncio.run(burst())
    assert [a.text for a in answers] == [ACK] * 100
    assert sorted(ledger.events(CAMPAIGN)["message_id"]) == sorted(f"p-{i}" for i in range(100))


def _children(pid: int) -> list[int]:
    """The pids of ``pid``'s child processes (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_dead_writer_process_means_503_then_a_new_writer(ledger: Ledger) -> None:
    import os
    import signal

    with CallbackServer(ledger) as srv:
        url = callback_urls(srv.public_url, *route(ledger))["dlr_url"]
        server_pid = srv.pids[0]
        writers = [
            pid
            for pid in _children(server_pid)  # not multiprocessing's resource tracker
            if b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(writers) == 1
        os.kill(writers[0], signal.SIGKILL)
        answer = httpx.post(url.format(key=key_digest("k1")), data=level2("m-k1"), timeout=30)
        assert answer.status_code == 503 and ACK not in answer.text
        assert (
            httpx.post(url.format(key=key_digest("k1")), data=level2("m-k1"), timeout=30).text == ACK
        )  # the retry lands
    assert row(ledger, "k1")["delivery_status"] == "DELIVRD"


def test_deeply_nested_json_is_a_400_not_a_500(server: CallbackServer, ledger: Ledger) -> None:
    url = urls(server, ledger)["dlr_url"].format(key=key_digest("k1"))
    for depth in (2_000, 7_000):
        body = '{"id": ' + "[" * depth + "]" * depth + "}"
        answer = httpx.post(url, content=body.encode(), headers={"content-type": "application/json"})
        assert answer.status_code == 400, answer.text
    assert ledger.events(CAMPAIGN).empty
    assert httpx.get(f"{server.url}/health").text == "ok"


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes the connection (True) or 10 s pass without it (False)."""
    sock.settimeout(10)
    try:
        while chunk := sock.recv(4096):
            if not chunk:
                break
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_connections_that_never_finish_their_headers_are_closed(ledger: Ledger, mode: str) -> None:
    with CallbackServer(ledger, mode=mode, header_timeout=0.3) as srv:  # type: ignore[arg-type]
        host, port = srv.url.removeprefix("http://").split(":")
        # slowloris: a request line and one header, then silence
        with socket.create_connection((host, int(port))) as slow:
            slow.sendall(b"POST /dlr/1/token/" + b"a" * 32 + b" HTTP/1.1\r\nHost: x\r\n")
            assert _closed_by_server(slow)
        # a keep-alive connection whose second request stalls in its headers is closed too, after the
        # first was answered
        with socket.create_connection((host, int(port))) as kept:
            kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            kept.settimeout(10)
            assert b"200 OK" in kept.recv(4096)
            kept.sendall(b"GET /health HTTP/1.1\r\nHo")
            assert _closed_by_server(kept)
        # a prompt request on a fresh connection is answered as before
        url = callback_urls(srv.public_url, *route(ledger))["dlr_url"].format(key=key_digest("k1"))
        assert httpx.post(url, data=level2("m-k1")).text == ACK


def test_header_timeout_must_be_positive(ledger: Ledger) -> None:
    with pytest.raises(CallbackError, match="header_timeout"):
        CallbackServer(ledger, header_timeout=0)


def test_the_writer_process_stores_good_groups_beside_a_refused_one(ledger: Ledger) -> None:
    """Groups waiting together share one transaction; a refused event fails only its own group."""
    import multiprocessing
    import threading

    from plasgate_nb._writer import writer_main as _writer_main

    ours, theirs = multiprocessing.Pipe()
    writer = threading.Thread(target=_writer_main, args=(ledger.url, theirs))
    writer.start()
    try:
        assert ours.recv() is True  # the writer opened the ledger
        good = parse_dlr(level2("w-1"), campaign=CAMPAIGN, message_key=None)
        bad = {**parse_dlr(level2("w-2"), campaign=CAMPAIGN, message_key=None), "level": 7}
        for seq, group in ((1, [good]), (2, [bad]), (3, [{**good, "message_id": "w-3"}])):
            ours.send((seq, group))
        answers = dict(ours.recv() for _ in range(3))
    finally:
        ours.close()
        writer.join(30)
    assert not writer.is_alive()
    assert answers[1] == answers[3] == ("ok", "") and answers[2][0] == "refused"
    assert sorted(ledger.events(CAMPAIGN)["message_id"]) == ["w-1", "w-3"]

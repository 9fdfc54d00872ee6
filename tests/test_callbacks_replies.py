"""Replies (MO) over HTTP: the simulator posts them as Jasmin's MO connector does; the receiver stores them.

The recorded exchanges of ``reference/jasmin/http_api.md`` section 5 are replayed byte for byte, then the
simulator's own MO posts are checked against them and stored over real sockets (SQLite and PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest

from plasgate_nb.callbacks import ACK, CallbackServer, reply_url
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import Simulator, SimulatorConfig
from plasgate_nb.simulator.mo import mo_body
from tests.conftest import wait_for
from tests.test_ledger import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

# the bodies Jasmin 0.11.1 posted to its MO URL (http_api.md section 5), byte for byte
RECORDED_GSM = (
    b"id=1c16677f-7bdc-44f1-a8d6-3686376158c7&from=85512345695&to=1234&origin-connector=upstream"
    b"&content=Reply+from+85512345695&binary=5265706c792066726f6d203835353132333435363935&priority=0&coding=%00"
)
RECORDED_UCS2 = (
    b"id=80f3ae7d-f526-43d1-94f0-65c095776f02&from=85512345694&to=1234&origin-connector=upstream"
    b"&content=%17%85%17%B6%17%9F%00+%17%A2%17%9A%17%82%17%BB%17%8E&binary=178517b6179f002017a2179a178217bb178e"
    b"&priority=0&coding=%08"
)
JASMIN_HEADERS = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "text/plain",
    "User-Agent": "Jasmin gateway/1.0 deliverSmHttpThrower",
}
KHMER_REPLY = "ចាស អរគុណ"  # U+1785 U+17B6 U+179F, space, U+17A2 U+179A U+1782 U+17BB U+178E


@pytest.fixture
def ledger(url: str) -> Iterator[Ledger]:  # noqa: F811
    with Ledger(url) as led:
        yield led


def test_recorded_jasmin_mo_posts_are_stored_as_replies(ledger: Ledger) -> None:
    with CallbackServer(ledger, mode="thread") as receiver:
        assert receiver.reply_url == reply_url(receiver.public_url, ledger.reply_token())
        for body in (RECORDED_GSM, RECORDED_UCS2):
            answer = httpx.post(receiver.reply_url, content=body, headers=JASMIN_HEADERS)
            assert (answer.status_code, answer.text) == (200, ACK)
    replies = ledger.replies()
    assert replies["msisdn"].tolist() == ["85512345695", "85512345694"]
    assert replies["destination"].tolist() == ["1234", "1234"]
    assert replies["text"].tolist() == ["Reply from 85512345695", KHMER_REPLY]
    assert replies["data_coding"].tolist() == [0, 8]
    assert replies["campaign"].isna().all()  # a reply names no campaign


def test_the_simulator_posts_mo_as_jasmin_does() -> None:
    def fields(body: bytes) -> dict[str, str]:
        return {k: v for k, v in parse_qsl(body.decode("ascii"), encoding="latin-1") if k != "id"}

    for recorded, sender, text in (
        (RECORDED_GSM, "85512345695", "Reply from 85512345695"),
        (RECORDED_UCS2, "85512345694", KHMER_REPLY),
    ):
        ours = mo_body(sender=sender, destination="1234", text=text)
        assert fields(ours) == fields(recorded)
        assert ours.split(b"&", 1)[1] == recorded.split(b"&", 1)[1]  # byte for byte after the id


def test_simulated_replies_over_http_land_in_the_replies_table(ledger: Ledger) -> None:
    config = SimulatorConfig(seed=2, callback_retry_delay=0.05)
    with Simulator(config, mode="thread") as sim, CallbackServer(ledger, mode="thread") as receiver:
        sim.reply("85512000001", "STOP", via="http", url=receiver.reply_url)
        sim.reply("85512000002", KHMER_REPLY + " 🙏", via="http", url=receiver.reply_url, to="1234")
        wait_for(lambda: len(ledger.replies()) == 2)
        wait_for(lambda: sim.state()["mo_http"]["acked"] == 2)
        state = sim.state()["mo_http"]
        assert (state["given_up"], state["in_flight"]) == (0, 0)
    replies = ledger.replies().sort_values("msisdn").reset_index(drop=True)
    assert replies["text"].tolist() == ["STOP", KHMER_REPLY + " 🙏"]
    assert replies["destination"].tolist() == [sim.credentials.sender, "1234"]
    assert replies["data_coding"].tolist() == [0, 8]


def test_a_receiver_that_was_down_gets_the_reply_on_a_retry(tmp_path: Path) -> None:
    with Ledger(tmp_path / "down.db") as ledger:
        receiver = CallbackServer(ledger, mode="thread").start()
        port = int(receiver.url.rsplit(":", 1)[1])
        target = receiver.reply_url
        receiver.stop()
        config = SimulatorConfig(seed=2, callback_retry_delay=1.0, callback_retries=5)
        with Simulator(config, mode="thread") as sim:
            sim.reply("85512000003", "late", via="http", url=target)
            wait_for(lambda: sim.state()["mo_http"]["attempts"] >= 1)
            with CallbackServer(ledger, port=port, mode="thread"):
                wait_for(lambda: sim.state()["mo_http"]["acked"] == 1)
        assert ledger.replies()["text"].tolist() == ["late"]


@pytest.mark.parametrize(
    ("path_token", "body", "status"),
    [
        ("wrong", RECORDED_GSM, 403),
        (None, RECORDED_GSM.replace(b"from=85512345695&", b""), 400),
        (None, RECORDED_GSM.replace(b"binary=5265", b"binary=zz65"), 400),
        (None, RECORDED_GSM.replace(b"from=85512345695", b"from=" + b"9" * 40), 400),
        (None, RECORDED_GSM.replace(b"coding=%00", b"coding=%00%00%00%00"), 400),
        (None, RECORDED_GSM + b"&pad=" + b"x" * 20_000, 413),
    ],
)
def test_bad_mo_posts_are_refused_and_store_nothing(
    tmp_path: Path, path_token: str | None, body: bytes, status: int
) -> None:
    with Ledger(tmp_path / "bad.db") as ledger, CallbackServer(ledger, mode="thread") as receiver:
        target = receiver.reply_url if path_token is None else reply_url(receiver.public_url, path_token)
        answer = httpx.post(target, content=body, headers=JASMIN_HEADERS)
        assert answer.status_code == status and answer.text != ACK
        assert ledger.replies().empty


def test_the_reply_token_is_kept_by_the_ledger(tmp_path: Path) -> None:
    path = tmp_path / "token.db"
    with Ledger(path) as ledger:
        first = ledger.reply_token()
    with Ledger(path) as ledger:
        assert ledger.reply_token() == first and len(first) >= 20

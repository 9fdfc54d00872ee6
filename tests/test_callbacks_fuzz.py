"""Fuzz the callback receiver over raw sockets: 10,000+ hostile requests never crash it or touch the ledger.

A seeded generator builds requests of many kinds (random and mutated fields with the right token,
valid reports with a wrong token, huge and truncated bodies, bad encodings, wrong methods, path
traversal, odd content types, garbage that is not HTTP); they are sent concurrently over raw TCP
to a thread-mode receiver. The server must answer no 5xx, keep answering ``/health``, and leave the
ledger exactly as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote, urlencode

import pandas as pd
import pytest

from plasgate_nb._keys import key_digest
from plasgate_nb.callbacks import ACK, CallbackServer
from plasgate_nb.ledger import Ledger

CAMPAIGN = "fuzz campaign"
REQUESTS = 10_000
CONCURRENCY = 24
SEED = 20260105
VALID_L2 = {
    "id": "m-k1",
    "level": "2",
    "message_status": "DELIVRD",
    "connector": "smsc",
    "id_smsc": "5E8F",
    "sub": "001",
    "dlvrd": "001",
    "subdate": "2611250932",
    "donedate": "2611250933",
    "err": "000",
}
VALID_BATCH = {"batchId": "q1", "to": "85512345678", "status": "1", "statusText": 'Success "m-k1"'}


@dataclass
class Hostile:
    """One raw request, whether it is complete HTTP (else the client half-closes), and its kind."""

    kind: str
    data: bytes
    complete: bool = True
    expect: int | None = None  # a status the server must answer, when one is certain


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    led = Ledger(tmp_path / "fuzz.db")
    led.open_campaign(CAMPAIGN)
    led.plan(
        CAMPAIGN,
        pd.DataFrame({"message_key": ["k1", "k2"], "msisdn": ["85512345678", "85512345679"], "content": ["a", "b"]}),
    )
    led.mark_submitting(CAMPAIGN, ["k1", "k2"], batch_id="b1")
    led.settle(CAMPAIGN, ["k1"], state="accepted", queue_id="q1", message_ids={"k1": "m-k1"})
    led.settle(CAMPAIGN, ["k2"], state="uncertain", reason="read timeout")
    yield led
    led.close()


def snapshot(ledger: Ledger, path: Path) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Everything a report could change: the campaign's messages and events, and all events stored."""
    with sqlite3.connect(path) as db:
        total = db.execute("SELECT count(*) FROM plasgate_events").fetchone()[0]
    return ledger.messages(CAMPAIGN), ledger.events(CAMPAIGN), total


class Generator:
    """Seeded builder of hostile requests against one receiver."""

    def __init__(self, rng: random.Random, token: str, campaign_id: int) -> None:
        self.rng = rng
        self.token = token
        self.name = str(campaign_id)  # callback URLs name the campaign by its ledger id

    def text(self, limit: int = 40) -> str:
        """Random text: ASCII, punctuation, Khmer, control characters, surrogates escaped."""
        alphabet = string.printable + "ក ខ គ ឃ ង ៗ \x00\x7f\u202e\ufffd😀"
        return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, limit)))

    def random_fields(self) -> dict[str, str]:
        """Fields with real names and random values, or random names."""
        names = [*VALID_L2, *VALID_BATCH, "text", "x", ""]
        return {
            self.rng.choice(names) if self.rng.random() < 0.8 else self.text(8): self.text()
            for _ in range(self.rng.randint(0, 12))
        }

    def broken_report(self) -> dict[str, str]:
        """A DLR with one change that must make it invalid."""
        fields = dict(VALID_L2)
        breakers: list[Callable[[], None]] = [
            lambda: fields.pop(self.rng.choice(["id", "level", "message_status"])),
            lambda: fields.update(level=self.rng.choice(["0", "3", "-1", "1.0", "２", " 2", "", "2\x00"])),
            lambda: fields.update(
                message_status=self.rng.choice(["delivrd", "ESME_ROK", "DELIVRD\x00", "DELIV RD", "OK", ""])
            ),
            lambda: fields.update(id=self.rng.choice(["a b", "m/1", "../k1", "x" * 101, "m\x00", "m;drop", ""])),
            lambda: fields.update(id="m-k1" * 80),
            lambda: fields.update(level="1", message_status=self.rng.choice(["DELIVRD", "esme_rok", "ESME_"])),
        ]
        self.rng.choice(breakers)()
        return fields

    def broken_batch(self) -> dict[str, str]:
        """A batch callback with one change that must make it invalid."""
        fields = dict(VALID_BATCH)
        breakers: list[Callable[[], None]] = [
            lambda: fields.pop(self.rng.choice(["batchId", "to", "status"])),
            lambda: fields.update(to=self.rng.choice(["abc", "12", "+", "8551234567890123456789", "855 12"])),
            lambda: fields.update(status=self.rng.choice(["2", "", "yes", "01"])),
            lambda: fields.update(statusText=self.rng.choice(["Success", 'Success ""', "Success m-k1", 'OK "x"'])),
            lambda: fields.update(batchId=self.rng.choice(["a b", "", "q" * 101, "q/1"])),
        ]
        self.rng.choice(breakers)()
        return fields

    @staticmethod
    def http(
        method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None, *, length: int | None = None
    ) -> bytes:
        """A raw HTTP/1.1 request (Connection: close) with a Content-Length unless told otherwise."""
        lines = [f"{method} {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body) if length is None else length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace") + body

    def dlr_path(self, token: str | None = None, key: str = "k1") -> str:
        """The DLR path of ``key`` (its digest, as callback URLs carry it) with the right (or a given) token."""
        return f"/dlr/{self.name}/{self.token if token is None else token}/{key_digest(key)}"

    def wrong_token(self) -> str:
        """A token that is not the campaign's (near misses included)."""
        return self.rng.choice(
            [
                self.token[:-1],
                self.token + "x",
                self.token.upper(),
                "x" * len(self.token),
                quote(self.token + "/"),
                "%00",
                "0",
            ]
        )

    def build(self) -> Hostile:
        """One hostile request of a random kind."""
        kind = self.rng.choices(list(self.kinds), weights=[w for w, _ in self.kinds.values()])[0]
        return self.kinds[kind][1](self)

    # -- kinds ---------------------------------------------------------------------------------------
    def k_random_get(self) -> Hostile:
        fields = self.broken_report() if self.rng.random() < 0.5 else self.random_fields()
        if "id" in fields and fields.get("level") in ("1", "2") and self.rng.random() < 0.5:
            fields["level"] = "3"
        return Hostile("random GET", self.http("GET", f"{self.dlr_path()}?{urlencode(fields)}"), expect=None)

    def k_random_form(self) -> Hostile:
        body = urlencode(self.broken_report()).encode()
        return Hostile(
            "broken form",
            self.http("POST", self.dlr_path(), body, {"Content-Type": "application/x-www-form-urlencoded"}),
            expect=400,
        )

    def k_random_json(self) -> Hostile:
        value = self.rng.choice([self.broken_report(), [1, 2], "s", None, 3, {"id": {"a": 1}}, {"level": [2]}])
        body = json.dumps(value).encode()
        return Hostile(
            "broken JSON", self.http("POST", self.dlr_path(), body, {"Content-Type": "application/json"}), expect=400
        )

    def k_broken_batch(self) -> Hostile:
        target = f"/batch/{self.name}/{self.token}?{urlencode(self.broken_batch())}"
        return Hostile("broken batch", self.http("GET", target), expect=400)

    def k_wrong_token(self) -> Hostile:
        if self.rng.random() < 0.5:
            body = urlencode(VALID_L2).encode()
            data = self.http(
                "POST", self.dlr_path(self.wrong_token()), body, {"Content-Type": "application/x-www-form-urlencoded"}
            )
        else:
            data = self.http("GET", f"/batch/{self.name}/{self.wrong_token()}?{urlencode(VALID_BATCH)}")
        return Hostile("wrong token", data)

    def k_unknown_campaign(self) -> Hostile:
        name = quote(self.text(20), safe="") or "x"
        return Hostile("unknown campaign", self.http("GET", f"/dlr/{name}/{self.token}/k1?{urlencode(VALID_L2)}"))

    def k_no_token(self) -> Hostile:
        return Hostile("no token", self.http("GET", f"/dlr/{self.name}/k1?{urlencode(VALID_L2)}"), expect=404)

    def k_huge(self) -> Hostile:
        size = self.rng.choice([16 * 1024 + 1, 64 * 1024, 300 * 1024])
        body = (urlencode(VALID_L2) + "&pad=" + "x" * size).encode()
        if self.rng.random() < 0.5:
            return Hostile(
                "huge body",
                self.http("POST", self.dlr_path(), body, {"Content-Type": "application/x-www-form-urlencoded"}),
            )
        chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        return Hostile(
            "huge chunked",
            self.http("POST", self.dlr_path(), chunked, {"Transfer-Encoding": "chunked"}, length=None).replace(
                b"Content-Length: " + str(len(chunked)).encode() + b"\r\n", b""
            ),
        )

    def k_lying_length(self) -> Hostile:
        declared = self.rng.choice(["-1", "abc", "99999999999999999999", "1e3", " 10"])
        data = self.http("POST", self.dlr_path(), b"id=x", {"Content-Type": "application/x-www-form-urlencoded"})
        return Hostile(
            "bad content-length",
            data.replace(b"Content-Length: 4", f"Content-Length: {declared}".encode()),
            complete=False,
        )

    def k_bad_encoding(self) -> Hostile:
        raw = self.rng.choice(
            [
                b"\xff\xfe\xfa",
                b"id=\xc3\x28&level=2",
                b"id=m%FF%FE&level=2&message_status=DELIVRD",
                "id=m-k1&level=2&message_status=DELIVRD".encode("utf-16"),
                b"\x00" * 50,
            ]
        )
        ctype = self.rng.choice(
            [
                "application/x-www-form-urlencoded",
                "application/json",
                "application/x-www-form-urlencoded; charset=latin-1",
            ]
        )
        return Hostile("bad encoding", self.http("POST", self.dlr_path(), raw, {"Content-Type": ctype}))

    def k_bad_query_encoding(self) -> Hostile:
        query = self.rng.choice(
            [
                "id=%ff%fe&level=2&message_status=DELIVRD",
                "id=m-k1&level=%C0%AF",
                "id=m%00k1&level=2&message_status=DELIVRD",
                "%%%&&&===",
                "id=m-k1&level=2&" * 30,
            ]
        )
        return Hostile("bad query", self.http("GET", f"{self.dlr_path()}?{query}"))

    def k_wrong_method(self) -> Hostile:
        method = self.rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
        target = self.rng.choice(
            [
                self.dlr_path(),
                f"/batch/{self.name}/{self.token}?{urlencode(VALID_BATCH)}",
                f"/errback/{self.name}/{self.token}",
            ]
        )
        expect = 405 if method in ("PUT", "DELETE", "PATCH", "OPTIONS") else None  # an unknown verb may be a 400
        return Hostile("wrong method", self.http(method, target, urlencode(VALID_L2).encode()), expect=expect)

    def k_traversal(self) -> Hostile:
        target = self.rng.choice(
            [
                "/dlr/../../etc/passwd",
                f"/dlr/{self.name}/../{self.token}/k1",
                "/dlr/%2e%2e/%2e%2e/x/y",
                f"/dlr/{self.name}/{self.token}/k1/../../../health",
                f"/dlr/{self.name}/{self.token}/..%2f..%2fk2",
                "//dlr//x",
                "/health/../dlr",
                "/%00",
                "/dlr/" + "a/" * 200,
                f"/batch/{self.name}%2f{self.token}",
            ]
        )
        return Hostile("path traversal", self.http("GET", f"{target}?{urlencode(VALID_L2)}"))

    def k_odd_content_type(self) -> Hostile:
        ctype = self.rng.choice(
            [
                "multipart/form-data; boundary=x",
                "text/plain",
                "application/xml",
                "",
                "image/png",
                "application/json; charset=utf-8",
                "application/x-www-form-urlencoded\x00",
            ]
        )
        body = self.rng.choice(
            [
                b'--x\r\nContent-Disposition: form-data; name="id"\r\n\r\nm\r\n--x--',
                b"<dlr id='m-k1'/>",
                b"id&&level==2",
                json.dumps(self.broken_report()).encode(),
            ]
        )
        return Hostile("odd content type", self.http("POST", self.dlr_path(), body, {"Content-Type": ctype}))

    def k_truncated(self) -> Hostile:
        body = urlencode(VALID_L2).encode()
        data = self.http("POST", self.dlr_path(), body, {"Content-Type": "application/x-www-form-urlencoded"})
        return Hostile("truncated body", data[: len(data) - self.rng.randint(1, len(body))], complete=False)

    def k_garbage(self) -> Hostile:
        data = self.rng.choice(
            [
                bytes(self.rng.getrandbits(8) for _ in range(self.rng.randint(1, 300))),
                b"GET / HTTP/9.9\r\n\r\n",
                b"GET\r\n\r\n",
                b"\r\n\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\n" * 3,
                b"POST /dlr/a/b/c HTTP/1.1\r\nHost: x\r\nX: " + b"h" * 70_000 + b"\r\n\r\n",
                b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            ]
        )
        return Hostile("garbage", data, complete=False)

    kinds: ClassVar[dict[str, tuple[float, Callable[[Generator], Hostile]]]] = {
        "random_get": (3, k_random_get),
        "random_form": (3, k_random_form),
        "random_json": (2, k_random_json),
        "broken_batch": (2, k_broken_batch),
        "wrong_token": (2, k_wrong_token),
        "unknown_campaign": (1, k_unknown_campaign),
        "no_token": (0.5, k_no_token),
        "huge": (0.3, k_huge),
        "lying_length": (0.5, k_lying_length),
        "bad_encoding": (1, k_bad_encoding),
        "bad_query": (1, k_bad_query_encoding),
        "wrong_method": (1, k_wrong_method),
        "traversal": (1, k_traversal),
        "odd_content_type": (1, k_odd_content_type),
        "truncated": (1, k_truncated),
        "garbage": (1, k_garbage),
    }


async def exchange(port: int, request: Hostile) -> int | None:
    """Send ``request`` on a fresh connection; return the answer's status, or None if the server just closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.data)
        await writer.drain()
        if not request.complete and writer.can_write_eof():
            writer.write_eof()
        head = await asyncio.wait_for(reader.read(64 * 1024), timeout=10)
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            await writer.wait_closed()
    if not head:
        return None
    line = head.split(b"\r\n", 1)[0].split()
    if len(line) < 2 or not line[1].isdigit():
        raise AssertionError(f"not an HTTP answer to {request.kind}: {head[:80]!r}")
    return int(line[1])


async def health(port: int) -> bool:
    """Whether ``/health`` answers ``ok``."""
    status = await exchange(port, Hostile("health", Generator.http("GET", "/health")))
    return status == 200


async def fuzz(port: int, token: str, campaign_id: int) -> tuple[Counter[tuple[str, int | None]], list[str]]:
    """Send REQUESTS hostile requests with CONCURRENCY workers; return (kind, status) counts and failures."""
    gen = Generator(random.Random(SEED), token, campaign_id)
    requests = [gen.build() for _ in range(REQUESTS)]
    seen: Counter[tuple[str, int | None]] = Counter()
    failures: list[str] = []
    queue = iter(enumerate(requests))

    async def worker() -> None:
        for index, request in queue:
            status = await exchange(port, request)
            seen[(request.kind, status)] += 1
            if status is not None and status >= 500:
                failures.append(f"{request.kind} -> {status}: {request.data[:120]!r}")
            elif request.expect is not None and status != request.expect:
                failures.append(f"{request.kind} -> {status}, expected {request.expect}: {request.data[:120]!r}")
            if index % 500 == 0 and not await health(port):
                failures.append(f"health check failed after request {index}")

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return seen, failures


def test_hostile_requests_never_crash_the_receiver_or_touch_the_ledger(ledger: Ledger, tmp_path: Path) -> None:
    before = snapshot(ledger, tmp_path / "fuzz.db")
    info = ledger.open_campaign(CAMPAIGN)
    token = info.token
    with CallbackServer(ledger, mode="thread") as server:
        port = int(server.url.rsplit(":", 1)[1])
        seen, failures = asyncio.run(fuzz(port, token, info.id))
        assert asyncio.run(health(port))
        after = snapshot(ledger, tmp_path / "fuzz.db")
        # the server still works: a genuine report is stored and ACKed after the storm
        import httpx

        genuine = httpx.post(f"{server.url}/dlr/{info.id}/{token}/{key_digest('k1')}", data=VALID_L2)
        assert (genuine.status_code, genuine.text) == (200, ACK)
    assert failures == [], Counter(f.split(":")[0] for f in failures)
    assert sum(seen.values()) == REQUESTS
    kinds = {kind for kind, _ in seen}
    assert len(kinds) == len(Generator.kinds) + 1  # every kind was exercised ("huge" has two labels)
    statuses = Counter(status for _, status in seen.elements())
    assert statuses[403] > 500 and statuses[400] > 3000 and statuses[405] > 300  # the checks really ran
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])
    assert after[2] == before[2]
    assert ledger.messages(CAMPAIGN).set_index("message_key").loc["k1", "delivery_status"] == "DELIVRD"

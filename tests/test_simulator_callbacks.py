"""DLR and batch callbacks of the simulator, received by a real HTTP listener: fields, levels, methods,
retry-until-ACK, special numbers, scheduling and the seeded delivery model."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from plasgate_nb.simulator import Simulator, SimulatorConfig
from plasgate_nb.simulator.clock import GATEWAY_TZ
from tests.simulator_helpers import Receiver, api, rest, single

L1_KEYS = ["id", "level", "message_status", "connector"]
L2_KEYS = [
    "id",
    "level",
    "message_status",
    "connector",
    "id_smsc",
    "sub",
    "dlvrd",
    "subdate",
    "donedate",
    "err",
    "text",
]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A callback listener answering ACK/Jasmin."""
    with Receiver() as r:
        yield r


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A fast simulator (clock x1000, tiny retry delay)."""
    config = SimulatorConfig(seed=3, clock_speed=1000, callback_retry_delay=0.5)
    with Simulator(config, mode="thread") as s:
        yield s


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_dlr_levels_and_methods(sim: Simulator, receiver: Receiver, level: int, method: str) -> None:
    path = f"/dlr/{level}{method}"
    resp = rest(sim, "/rest/send", single(dlr="yes", dlr_url=receiver.url(path), dlr_level=level, dlr_method=method))
    queue_id = resp.json()["queue_id"]
    expected = {1: ["1"], 2: ["2"], 3: ["1", "2"]}[level]
    calls = receiver.wait(path, len(expected))
    sim.wait_idle()
    assert len(receiver.on(path)) == len(expected)
    fields = receiver.fields(path)
    assert sorted(f["level"] for f in fields) == expected
    for call, f in zip(calls, fields, strict=True):
        assert call["method"] == method
        assert call["headers"]["user-agent"] == "Jasmin gateway/1.0 DLRThrower"
        assert call["headers"]["content-type"] == "application/x-www-form-urlencoded"
        assert f["id"] == queue_id
        raw = call["raw_query"] if method == "GET" else call["body"]
        keys = [pair.split("=")[0] for pair in raw.split("&")]
        assert keys == (L1_KEYS if f["level"] == "1" else L2_KEYS)
        if f["level"] == "1":
            assert f["message_status"] == "ESME_ROK"
        else:
            assert f["message_status"] == "DELIVRD" and f["dlvrd"] == "001" and f["err"] == "000"
            assert f["text"] == "Hello from lab" and f["connector"] == f["id_smsc"].lower()
            today = datetime.now(GATEWAY_TZ).strftime("%y%m%d")
            assert f["subdate"][:6] == today and len(f["donedate"]) == 10


def test_dlr_keeps_the_clients_query_string(sim: Simulator, receiver: Receiver) -> None:
    url = receiver.url("/dlr/keyed") + "?key=row-42"
    rest(sim, "/rest/send", single(dlr_url=url, dlr_level=1, dlr_method="GET"))
    (call,) = receiver.wait("/dlr/keyed", 1)
    assert call["query"]["key"] == "row-42" and call["query"]["level"] == "1"


def test_dlr_text_is_first_20_chars_of_last_part(sim: Simulator, receiver: Receiver) -> None:
    content = "Plasgate lab long message test. " * 6
    rest(sim, "/rest/send", single(content=content, dlr_url=receiver.url("/long"), dlr_level=2))
    (f,) = [c["form"] for c in receiver.wait("/long", 1)]
    assert f["text"] == content[153:173]


def test_dlr_off_when_dlr_is_no(sim: Simulator, receiver: Receiver) -> None:
    rest(sim, "/rest/send", single(dlr="no", dlr_url=receiver.url("/off"), dlr_level=3))
    api(sim, to="85512345678", content="x", dlr_url=receiver.url("/api"), dlr_level="3", dlr_method="GET")
    receiver.wait("/api", 2)
    sim.wait_idle()
    assert receiver.on("/off") == []


def test_dlr_retried_until_ack(sim: Simulator, receiver: Receiver) -> None:
    receiver.plans["/nack"] = [(200, "OK"), (500, "boom")]
    rest(sim, "/rest/send", single(dlr_url=receiver.url("/nack"), dlr_level=1, dlr_method="GET"))
    calls = receiver.wait("/nack", 3)
    sim.wait_idle()
    assert len(receiver.on("/nack")) == 3
    assert len({c["raw_query"] for c in calls}) == 1
    assert sim.state()["callbacks"]["retried"] == 2


def test_dlr_gives_up_after_the_configured_retries(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.plans["/never/tok-5ecret"] = [(200, "nope")] * 10
    config = SimulatorConfig(clock_speed=1000, callback_retries=1, callback_retry_delay=0.5)
    caplog.set_level(logging.DEBUG, logger="plasgate_nb")
    with Simulator(config, mode="thread") as sim:
        rest(sim, "/rest/send", single(dlr_url=receiver.url("/never/tok-5ecret"), dlr_level=1))
        receiver.wait("/never/tok-5ecret", 2)
        state = sim.wait_idle()
        assert len(receiver.on("/never/tok-5ecret")) == 2 and state["callbacks"]["given_up"] == 1
    said = [r.getMessage() for r in caplog.records]
    assert any("gave up a callback to http://127.0.0.1:" in m for m in said)
    assert not [m for m in said if "tok-5ecret" in m]  # a receiver's token in the URL path never reaches a log


@pytest.mark.parametrize(
    ("suffix", "level1", "level2"),
    [
        ("001", "ESME_ROK", [("UNDELIV", "001")]),
        ("002", "ESME_ROK", [("REJECTD", "002")]),
        ("003", "ESME_ROK", [("EXPIRED", "003")]),
        ("004", "ESME_ROK", []),
        ("005", "ESME_RINVDSTADR", []),
        ("006", "ESME_ROK", [("UNKNOWN", "000"), ("DELIVRD", "000")]),
        ("008", "ESME_ROK", [("ENROUTE", "000"), ("DELIVRD", "000")]),
    ],
)
def test_special_numbers(
    sim: Simulator, receiver: Receiver, suffix: str, level1: str, level2: list[tuple[str, str]]
) -> None:
    path = f"/special/{suffix}"
    rest(sim, "/rest/send", single(to=f"85510000{suffix}", dlr_url=receiver.url(path), dlr_level=3))
    receiver.wait(path, 1 + len(level2))
    sim.wait_idle()
    fields = receiver.fields(path)
    assert [f["message_status"] for f in fields if f["level"] == "1"] == [level1]
    assert [(f["message_status"], f["err"]) for f in fields if f["level"] == "2"] == level2


def test_batch_callbacks_pair_numbers_with_ids(sim: Simulator, receiver: Receiver) -> None:
    body = {
        "globals": {"sender": "SMS Info", "dlr_url": receiver.url("/batch/dlr"), "dlr_level": 3, "dlr_method": "GET"},
        "messages": [
            {"to": ["85512345601", "85512345602"], "content": "Hello batch A"},
            {
                "to": ["85512345603", "bad"],
                "content": "B",
                "dlr_url": receiver.url("/own"),
                "dlr_method": "POST",
                "dlr_level": 2,
            },
        ],
        "batch_config": {"callback_url": receiver.url("/batch/cb"), "errback_url": receiver.url("/batch/eb")},
    }
    answer = rest(sim, "/rest/batch-send", body).json()
    assert answer["message_count"] == 4
    calls = receiver.wait("/batch/cb", 3)
    (err,) = receiver.wait("/batch/eb", 1)
    receiver.wait("/batch/dlr", 4)
    receiver.wait("/own", 1)
    sim.wait_idle()
    ids = {r["to"]: r["message_id"] for r in sim.records()}
    assert {c["query"]["to"]: c["query"]["statusText"] for c in calls} == {
        to: f'Success "{mid}"' for to, mid in ids.items()
    }
    assert {c["query"]["batchId"] for c in calls} == {answer["queue_id"]}
    assert all(c["query"]["status"] == "1" and c["method"] == "GET" for c in calls)
    assert "statusText=Success+%22" in calls[0]["raw_query"]
    assert err["query"] == {
        "batchId": answer["queue_id"],
        "to": "bad",
        "status": "0",
        "statusText": 'HTTPAPI error: Error "Argument [to] has an invalid value: [bad].',  # as recorded: no closing "
    }
    dlr_ids = {f["id"] for f in receiver.fields("/batch/dlr")}
    assert dlr_ids == {ids["85512345601"], ids["85512345602"]}
    (own,) = receiver.fields("/own")
    assert own["id"] == ids["85512345603"] and own["level"] == "2"


def test_schedule_relative_holds_until_the_clock_advances(receiver: Receiver) -> None:
    with Simulator(SimulatorConfig(seed=1), mode="thread") as sim:
        body = {
            "messages": [{"to": "85512345607", "content": "later", "sender": "SMS Info"}],
            "batch_config": {"callback_url": receiver.url("/sched"), "schedule_at": "3600s"},
        }
        assert rest(sim, "/rest/batch-send", body).status_code == 200
        time.sleep(0.2)
        assert receiver.on("/sched") == []
        assert sim.report()[0]["status"] == "SCHEDULED"
        record = sim.records()[0]
        assert record["due_at"] - record["accepted_at"] == pytest.approx(3600, abs=1)
        sim.advance(3600)
        receiver.wait("/sched", 1)


def test_schedule_absolute_is_phnom_penh_time(receiver: Receiver) -> None:
    start = datetime(2026, 11, 25, 9, 0, 0, tzinfo=GATEWAY_TZ).timestamp()
    with Simulator(SimulatorConfig(start_time=start), mode="thread") as sim:
        body = {
            "messages": [{"to": "85512345607", "content": "x", "sender": "SMS Info"}],
            "batch_config": {"callback_url": receiver.url("/abs"), "schedule_at": "2026-11-25 10:00:00"},
        }
        assert rest(sim, "/rest/batch-send", body).status_code == 200
        assert sim.records()[0]["due_at"] == start + 3600
        sim.advance(3590)
        time.sleep(0.1)
        assert receiver.on("/abs") == []
        sim.advance(11)
        receiver.wait("/abs", 1)
        for bad in ("2026-11-25 08:59:00", "tomorrow", "2030-09-30T09:00:00"):
            body["batch_config"]["schedule_at"] = bad
            resp = rest(sim, "/rest/batch-send", body)
            assert resp.status_code == 412 and resp.json()["message"]
        assert len(sim.records()) == 1


def test_clock_speed_can_change_at_runtime(receiver: Receiver) -> None:
    with Simulator(SimulatorConfig(seed=1), mode="thread") as sim:
        rest(sim, "/rest/send", single(dlr_url=receiver.url("/speed"), dlr_level=2))
        time.sleep(0.1)
        assert receiver.on("/speed") == []
        sim.set_clock_speed(10_000)
        receiver.wait("/speed", 1)


def test_seeded_delivery_model_is_reproducible() -> None:
    numbers = [f"8559{i % 10}{i:06d}" for i in range(300)] + [f"8551{d}{i:06d}" for d in (1, 5) for i in range(300)]
    outcomes = []
    for _ in range(2):
        with Simulator(SimulatorConfig(seed=11, clock_speed=1000), mode="thread") as sim:
            body = {"messages": [{"to": numbers, "content": "x", "sender": "SMS Info"}]}
            assert rest(sim, "/rest/batch-send", body).status_code == 200
            outcomes.append([r["outcome"] for r in sim.records()])
    assert outcomes[0] == outcomes[1]
    delivered = [o for o in outcomes[0] if o.endswith("DELIVRD")]  # DELIVRD, or an interim report then DELIVRD
    assert 0.85 < len(delivered) / len(numbers) < 0.995


def test_default_model_sends_interim_reports_and_smsc_refusals(receiver: Receiver) -> None:
    """By default (as the Jasmin recordings show) a share of messages gets an UNKNOWN or ENROUTE report
    before its final one, and a share is refused by the SMSC: a level-1 ESME_RINVDSTADR and no level 2."""
    numbers = [f"855{p}{i:07d}" for p in ("12", "97") for i in range(1500)]
    with Simulator(SimulatorConfig(seed=7, clock_speed=1000, callback_retry_delay=0.1), mode="thread") as sim:
        body = {
            "globals": {"sender": "SMS Info", "dlr_url": receiver.url("/bulk"), "dlr_level": 3, "dlr_method": "GET"},
            "messages": [{"to": numbers, "content": "Hello"}],
        }
        assert rest(sim, "/rest/batch-send", body).status_code == 200
        fates = {r["message_id"]: r["outcome"] for r in sim.records()}
        level2 = {"ESME_RINVDSTADR": 0, "NEVER": 0, "UNKNOWN_THEN_DELIVRD": 2, "ENROUTE_THEN_DELIVRD": 2}
        expected = sum(1 + level2.get(fate, 1) for fate in fates.values())
        sim.advance(700)  # EXPIRED comes after 600 simulated seconds
        receiver.wait("/bulk", expected, timeout=60)
        sim.wait_idle()
    reports: dict[str, list[tuple[str, str]]] = {}
    for f in receiver.fields("/bulk"):
        reports.setdefault(f["id"], []).append((f["level"], f["message_status"]))
    counts = {fate: list(fates.values()).count(fate) for fate in set(fates.values())}
    assert 0.05 < (counts["UNKNOWN_THEN_DELIVRD"] + counts["ENROUTE_THEN_DELIVRD"]) / len(numbers) < 0.15
    assert counts["UNKNOWN_THEN_DELIVRD"] > 0 and counts["ENROUTE_THEN_DELIVRD"] > 0
    assert 0 < counts["ESME_RINVDSTADR"] < 0.01 * len(numbers)
    for message_id, fate in fates.items():
        got = sorted(reports[message_id])  # level 1 first; the level-2 reports in the order they came
        if fate == "ESME_RINVDSTADR":
            assert got == [("1", "ESME_RINVDSTADR")]
        elif fate.endswith("_THEN_DELIVRD"):
            interim = fate.split("_")[0]
            # (advanced at once, both are due together and may cross on the wire; their order in time is
            # checked by test_special_numbers)
            assert sorted(r for r in reports[message_id] if r[0] == "2") == sorted([("2", interim), ("2", "DELIVRD")])

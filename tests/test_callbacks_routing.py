"""Callbacks route by ids the ledger assigns: any campaign name, any message key, no cross-campaign reach.

End to end over real sockets (simulator -> CallbackServer -> ledger) with a campaign named
``spring/2026 50%?#`` and keys holding ``/``, ``%``, ``?``, ``#``, spaces, Khmer and 1,000 characters;
then a valid token for one campaign trying to change another campaign's rows (SQLite and PostgreSQL).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from plasgate_nb._keys import GROUP_KEY, key_digest
from plasgate_nb.callbacks import ACK, CallbackServer, callback_urls
from plasgate_nb.campaign import Campaign
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect
from plasgate_nb.simulator import Simulator, SimulatorConfig
from plasgate_nb.simulator.config import RateLimits
from tests.conftest import gateway_for
from tests.test_ledger import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

NAME = "spring/2026 50%?#"
KHMER = "ស្វាគមន៍"
ODD_KEYS = [
    "a/b",
    "../../health",
    "50% off?#1",
    "x y&z=1",
    f"{KHMER} 1",
    "k" * 1000,
    (KHMER + "/") * 111,  # 999 characters, a third of them slashes
]
EXPECTED_LEVEL2 = {
    "DELIVRD": "DELIVRD",
    "UNDELIV": "UNDELIV",
    "EXPIRED": "EXPIRED",
    "REJECTD": "REJECTD",
    "DELETED": "DELETED",
    "UNKNOWN_THEN_DELIVRD": "DELIVRD",
    "ENROUTE_THEN_DELIVRD": "DELIVRD",  # an intermediate ENROUTE first, by default for a share
}


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=5, rate_limits=RateLimits.off(), callback_retry_delay=0.1, callback_retries=2)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


@pytest.fixture
def gateway(sim: Simulator) -> Gateway:
    sim.clear_faults()
    return gateway_for(sim, read_timeout=5.0)


def odd_audience(block: int) -> pd.DataFrame:
    """Personalized rows under the odd keys, then grouped rows (one shared text) under odd keys too."""
    grouped = [f"{k}/g" for k in ODD_KEYS[:4]]
    keys = ODD_KEYS + grouped
    content = [f"Hi {i}, code #ma#C{i}#ma#" for i in range(len(ODD_KEYS))] + ["Same offer"] * len(grouped)
    return pd.DataFrame(
        {"id": keys, "msisdn": [f"85512{block:03d}{i:03d}" for i in range(len(keys))], "content": content}
    )


@pytest.mark.parametrize(("transport", "block"), [("batch", 801), ("single", 802), ("http", 803)])
def test_every_callback_lands_whatever_the_campaign_name_and_keys(
    sim: Simulator, gateway: Gateway, tmp_path: Path, transport: str, block: int
) -> None:
    df = odd_audience(block)
    with Ledger(tmp_path / "odd.db") as ledger, CallbackServer(ledger, mode="thread") as receiver:
        campaign = Campaign(
            NAME,
            gateway=gateway,
            ledger=ledger,
            receiver=receiver,
            transport=transport,  # type: ignore[arg-type]
            key="id",
            dlr_level=3,
            progress=False,
        )
        assert campaign.send(df).accepted == len(df)
        sim.advance(700)  # every receipt falls due (EXPIRED after 600 simulated seconds)
        sim.wait_idle(timeout=30)
        state = sim.state()["callbacks"]
        assert state["given_up"] == 0, state  # no callback was refused until the gateway gave up
        result = collect(df, campaign)
        events = ledger.events(NAME)
    assert (result["send_state"] == "accepted").all()
    truth = {r["message_id"]: r["outcome"] for r in sim.records() if r["message_id"] in set(result["message_id"])}
    assert len(truth) == len(df)
    dlrs = events[events["source"] == "dlr"]
    # every row got its level-1 report, tied to it (by key digest or message id) ...
    assert sorted(dlrs.loc[dlrs["level"] == 1, "message_key"]) == sorted(df["id"])
    # ... and the level-2 status the gateway reported
    for key, mid, status in zip(result["id"], result["message_id"], result["delivery_status"], strict=True):
        expected = EXPECTED_LEVEL2.get(truth[mid])
        assert (None if pd.isna(status) else status) == expected, (key[:20], truth[mid], status)
    if transport == "batch":  # one batch callback per recipient, each paired with its row
        batch = events[events["source"] == "batch"]
        assert sorted(batch["message_key"]) == sorted(df["id"])


def test_callback_urls_carry_only_ledger_ids(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ids.db") as ledger:
        info = ledger.open_campaign(NAME)
        urls = callback_urls("https://cb.example/base/", info.id, info.token)
    assert urls["dlr_url"] == f"https://cb.example/base/dlr/{info.id}/{info.token}/{{key}}"
    assert urls["callback_url"] == f"https://cb.example/base/batch/{info.id}/{info.token}"
    assert urls["errback_url"] == f"https://cb.example/base/errback/{info.id}/{info.token}"
    for key in ODD_KEYS:
        digest = key_digest(key)
        assert re.fullmatch(r"[0-9a-f]{32}", digest)
        assert digest != GROUP_KEY
    assert len({key_digest(k) for k in ODD_KEYS}) == len(ODD_KEYS)
    assert key_digest("101") == key_digest("101")


# ---------------------------------------------------------------------------------- cross-campaign
def _level2(message_id: str, status: str) -> dict[str, str]:
    return {"id": message_id, "level": "2", "message_status": status, "err": "000", "donedate": "2611250933"}


def _plan_sent(ledger: Ledger, name: str, keys: list[str], numbers: list[str], *, queue_id: str) -> None:
    """Plan ``keys`` and settle them accepted with message ids ``<name>-<key>``."""
    ledger.open_campaign(name)
    rows = pd.DataFrame({"message_key": keys, "msisdn": numbers, "content": [f"t {k}" for k in keys]})
    ledger.plan(name, rows)
    ledger.mark_submitting(name, keys, batch_id=f"b-{name}")
    ids = {k: f"{name}-{k}" for k in keys}
    ledger.settle(name, keys, state="accepted", queue_id=queue_id, message_ids=ids)


def test_a_valid_token_for_one_campaign_cannot_change_another_campaigns_rows(url: str) -> None:  # noqa: F811
    with Ledger(url) as ledger, CallbackServer(ledger, mode="thread") as receiver:
        _plan_sent(ledger, "A", ["a1"], ["85512000001"], queue_id="qa")
        _plan_sent(ledger, "B", ["b1", "b2"], ["85512000002", "85512000003"], queue_id="qb")
        ledger.settle("B", ["b2"], state="accepted")  # b2 keeps its id: an unpaired report would wait for it
        a_info, b_info = ledger.open_campaign("A"), ledger.open_campaign("B")
        a_urls = callback_urls(receiver.public_url, a_info.id, a_info.token)
        b_urls = callback_urls(receiver.public_url, b_info.id, b_info.token)
        before = ledger.messages("B")
        attacks = [
            ("POST", a_urls["dlr_url"].format(key=GROUP_KEY), _level2("B-b1", "REJECTD")),
            ("POST", a_urls["dlr_url"].format(key=key_digest("b1")), _level2("B-b1", "UNDELIV")),
            ("POST", a_urls["dlr_url"].format(key=key_digest("b2")), _level2("forged-1", "EXPIRED")),
            ("GET", a_urls["callback_url"], {"batchId": "qb", "to": "85512000002", "status": "1",
                                            "statusText": 'Success "forged-2"'}),
            ("GET", a_urls["errback_url"], {"batchId": "qb", "to": "85512000003", "status": "0",
                                           "statusText": "Error: no route"}),
            ("POST", a_urls["dlr_url"].format(key=GROUP_KEY), _level2("B-b2", "DELIVRD")),
        ]  # fmt: skip
        for method, target, fields in attacks:
            answer = httpx.request(method, target, **({"params": fields} if method == "GET" else {"data": fields}))
            assert answer.status_code in (200, 400, 403, 404), answer.text
        pd.testing.assert_frame_equal(ledger.messages("B"), before)
        assert ledger.events("B").empty
        # the gateway's genuine reports for B (the same as forged copies stored earlier) still land
        assert httpx.post(b_urls["dlr_url"].format(key=key_digest("b2")), data=_level2("B-b2", "DELIVRD")).text == ACK
        assert httpx.post(b_urls["dlr_url"].format(key=GROUP_KEY), data=_level2("B-b1", "REJECTD")).text == ACK
        rows = ledger.messages("B").set_index("message_key")
        assert rows.loc["b1", "delivery_status"] == "REJECTD"
        assert rows.loc["b2", "delivery_status"] == "DELIVRD"
        assert (rows["state"] == "accepted").all()
        # and campaign A's own row was never touched by the forged reports either
        assert pd.isna(ledger.messages("A").set_index("message_key").loc["a1", "delivery_status"])


def test_reports_for_unpaired_ids_wait_in_their_own_campaign(url: str) -> None:  # noqa: F811
    """A report stored under campaign A for an id B learns later is not attached to B's row."""
    with Ledger(url) as ledger, CallbackServer(ledger, mode="thread") as receiver:
        ledger.open_campaign("A")
        ledger.open_campaign("B")
        rows = pd.DataFrame({"message_key": ["b1"], "msisdn": ["85512000009"], "content": ["t"]})
        ledger.plan("B", rows)
        ledger.mark_submitting("B", ["b1"], batch_id="bb")
        a_info = ledger.open_campaign("A")
        a_urls = callback_urls(receiver.public_url, a_info.id, a_info.token)
        forged = httpx.post(a_urls["dlr_url"].format(key=GROUP_KEY), data=_level2("late-id", "REJECTD"))
        assert forged.text == ACK  # stored, waiting for its pairing in campaign A
        ledger.settle("B", ["b1"], state="accepted", message_ids={"b1": "late-id"})
        b_info = ledger.open_campaign("B")
        b_urls = callback_urls(receiver.public_url, b_info.id, b_info.token)
        assert httpx.post(b_urls["dlr_url"].format(key=GROUP_KEY), data=_level2("late-id", "DELIVRD")).text == ACK
        assert ledger.messages("B").set_index("message_key").loc["b1", "delivery_status"] == "DELIVRD"

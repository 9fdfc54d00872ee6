"""Receipts and replies that arrive after an SMPP campaign unbound are kept: the receiver's SMPP bind.

A campaign over SMPP with ``receipt_timeout=0`` unbinds as soon as its submits are answered; the
simulator holds the receipts that fall due later until a receiver binds. ``CallbackServer(ledger,
smpp=...)`` binds one, stores them and the handsets' replies, and binds again when the simulator cuts
the connection. Also ``plasgate-nb callbacks --smpp HOST:PORT``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from plasgate_nb.callbacks import CallbackServer
from plasgate_nb.campaign import Campaign
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import Simulator, SimulatorConfig
from plasgate_nb.simulator.config import RateLimits
from plasgate_nb.smpp import SmppConfig
from tests.conftest import gateway_for, wait_for
from tests.test_ledger import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

ROOT = Path(__file__).resolve().parents[1]
FINAL = {"DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED"}
_block = iter(range(300, 400))


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=21, smpp=True, rate_limits=RateLimits.off())
    with Simulator(config, mode="thread") as simulator:
        yield simulator


def smpp_config(sim: Simulator, **options: Any) -> SmppConfig:
    creds = sim.credentials
    settings = {"system_id": creds.username, "password": creds.password, "response_timeout": 2.0}
    settings |= {"reconnect_backoff": 0.05, "reconnect_backoff_max": 0.5, **options}
    return SmppConfig(port=sim.smpp_port, **settings)


def audience(n: int = 8) -> pd.DataFrame:
    block = next(_block)
    return pd.DataFrame(
        {"msisdn": [f"85512{block:03d}{i:03d}" for i in range(n)], "content": [f"Hello {i}" for i in range(n)]},
        index=pd.Index([f"c{block}-{i}" for i in range(n)], name="customer"),
    )


def send_and_unbind(sim: Simulator, ledger: Ledger, name: str, df: pd.DataFrame) -> Campaign:
    """Send ``df`` over SMPP with no wait for receipts: the session unbinds at once."""
    campaign = Campaign(
        name,
        gateway=gateway_for(sim),
        ledger=ledger,
        transport="smpp",
        smpp=smpp_config(sim),
        receipt_timeout=0,
        progress=False,
    )
    assert campaign.send(df).accepted == len(df)
    return campaign


def finals(sim: Simulator, ledger: Ledger, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(what the gateway reported, what the ledger shows) for the rows with a final receipt."""
    rows = ledger.messages(name).set_index("message_id")
    truth = {r["message_id"]: r["outcome"] for r in sim.records() if r["message_id"] in rows.index}
    reported = {mid: outcome for mid, outcome in truth.items() if outcome in FINAL}
    shown = {mid: None if pd.isna(status := rows.loc[mid, "delivery_status"]) else status for mid in reported}
    return reported, shown


def test_late_receipts_and_replies_are_stored_and_the_bind_survives_a_cut(sim: Simulator, url: str) -> None:  # noqa: F811
    sim.set_clock_speed(0.001)  # receipts fall due only when the test moves the clock
    try:
        with Ledger(url) as ledger:
            first = send_and_unbind(sim, ledger, "late-1", audience())
            sim.advance(700)  # every receipt falls due while nobody is bound: the gateway holds them
            assert ledger.messages("late-1")["delivery_status"].isna().all()
            binds = sim.state()["smpp"].get("bind_receiver", 0)
            with CallbackServer(ledger, mode="thread", smpp=smpp_config(sim)):
                reported, _ = finals(sim, ledger, first.name)
                assert reported  # the seed gives final receipts to wait for
                wait_for(lambda: finals(sim, ledger, first.name)[1] == finals(sim, ledger, first.name)[0])
                events = ledger.events(first.name)
                assert set(events["source"]) == {"smpp"} and events["message_key"].notna().all()
                sim.reply("85512999001", "STOP please")
                wait_for(lambda: len(ledger.replies()) == 1)

                sim.drop_smpp_connections()  # the network cuts the receiver's link
                second = send_and_unbind(sim, ledger, "late-2", audience())
                sim.reply("85512999002", "ស្វាគមន៍")  # held by the gateway until a receiver binds again
                sim.advance(700)
                wait_for(lambda: len(ledger.replies()) == 2)
                wait_for(lambda: finals(sim, ledger, second.name)[1] == finals(sim, ledger, second.name)[0])
                assert sim.state()["smpp"]["bind_receiver"] >= binds + 2  # bound, cut, bound again
            replies = ledger.replies()
            assert replies["text"].tolist() == ["STOP please", "ស្វាគមន៍"]
            assert replies["msisdn"].tolist() == ["85512999001", "85512999002"]
            assert replies["destination"].tolist() == [sim.credentials.sender] * 2
            assert replies["data_coding"].tolist() == [0, 8]
    finally:
        sim.set_clock_speed(1.0)


def test_a_receiver_whose_gateway_is_down_keeps_trying(sim: Simulator, tmp_path: Path) -> None:
    with Ledger(tmp_path / "down.db") as ledger:
        wrong = smpp_config(sim, password="not-the-password")  # refused binds: retried with backoff, no crash
        with CallbackServer(ledger, mode="thread", smpp=wrong) as receiver:
            before = sim.state()["smpp"].get("bind_receiver", 0)
            wait_for(lambda: sim.state()["smpp"].get("bind_receiver", 0) >= before + 3)
            assert receiver.public_url  # the HTTP side still serves
            import httpx

            assert httpx.get(f"{receiver.url}/health").text == "ok"


def test_cli_callbacks_smpp_stores_late_receipts_and_replies(sim: Simulator, tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    sim.set_clock_speed(0.001)
    try:
        with Ledger(path) as ledger:
            campaign = send_and_unbind(sim, ledger, "cli-late", audience(4))
        sim.advance(700)
        creds = sim.credentials
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PLASGATE_SMPP_SYSTEM_ID": creds.username,
            "PLASGATE_SMPP_PASSWORD": creds.password,
        }
        command = [sys.executable, "-m", "plasgate_nb.cli", "callbacks", "--ledger", str(path), "--port", "0"]
        proc = subprocess.Popen(
            [*command, "--smpp", f"127.0.0.1:{sim.smpp_port}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        try:
            banner = [proc.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
            assert "listening on" in banner[0] and "/mo/" in banner[1], banner
            assert f"127.0.0.1:{sim.smpp_port}" in banner[2], banner
            sim.reply("85512999003", "YES")
            with Ledger(path) as ledger:
                wait_for(lambda: finals(sim, ledger, campaign.name)[1] == finals(sim, ledger, campaign.name)[0])
                wait_for(lambda: ledger.replies()["text"].tolist() == ["YES"])
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        sim.set_clock_speed(1.0)


def test_cli_callbacks_smpp_needs_host_port_and_a_login(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLASGATE_SMPP")}
    command = [sys.executable, "-m", "plasgate_nb.cli", "callbacks", "--ledger", str(tmp_path / "x.db")]
    for extra, message in ((["--smpp", "nohost"], "HOST:PORT"), (["--smpp", "h:2775"], "system_id")):
        done = subprocess.run([*command, *extra], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr

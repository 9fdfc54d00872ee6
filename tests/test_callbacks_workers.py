"""Several receiver processes on one ledger (``CallbackServer(workers=N)``, ``plasgate-nb callbacks --workers N``).

Two workers serve one port over real sockets, each storing into the same ledger (SQLite file and
PostgreSQL). The simulator throws reports at them; one worker is killed with SIGKILL while they flow.
The gateway retries what was not ACKed (connections reset, requests unanswered, a group committed but
never answered), the other worker takes those retries, and every report ends stored exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest

from plasgate_nb._keys import key_digest
from plasgate_nb.callbacks import ACK, CallbackServer, callback_urls
from plasgate_nb.campaign import Campaign
from plasgate_nb.errors import CallbackError, PlasgateError
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect
from plasgate_nb.server import BackgroundServer
from plasgate_nb.simulator import Simulator, SimulatorConfig
from plasgate_nb.simulator.config import RateLimits
from tests.conftest import gateway_for
from tests.test_callbacks_e2e import EXPECTED_LEVEL2, outcomes
from tests.test_ledger import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux (SIGKILL, /proc)")


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """A simulator that retries every callback until it is ACKed (within the test's time)."""
    config = SimulatorConfig(
        seed=13,
        rate_limits=RateLimits.off(),
        callback_retries=10_000,
        callback_retry_delay=0.05,
        callback_timeout=5.0,
    )
    with Simulator(config, mode="thread") as simulator:
        yield simulator


def audience(n: int) -> pd.DataFrame:
    """``n`` rows: the first half personalized (own text), the rest one shared text (batch-send)."""
    half = n // 2
    content = [f"Hi {i}, your code #ma#C{i:05d}#ma#" for i in range(half)] + ["Same offer for all"] * (n - half)
    return pd.DataFrame(
        {"msisdn": [f"85516{i:06d}" for i in range(n)], "content": content},
        index=pd.Index([f"w{i}" for i in range(n)], name="customer"),
    )


def stored(ledger: Ledger, campaign: str) -> int:
    """How many events the ledger holds for ``campaign`` (read on a connection of its own)."""
    return len(ledger.events(campaign))


def test_two_workers_one_killed_mid_flow_store_every_report_once(sim: Simulator, url: str) -> None:  # noqa: F811
    ledger = Ledger(url)
    df = audience(1_200)
    gateway = gateway_for(sim, read_timeout=10.0)
    before = sim.state()["callbacks"]
    sim.set_clock_speed(0.001)  # (almost) nothing falls due until advance(): the reports then flow at once
    try:
        with CallbackServer(ledger, workers=2) as receiver:
            assert len(receiver.pids) == 2 and receiver.url.startswith("http://127.0.0.1:")
            campaign = Campaign("workers", gateway=gateway, ledger=ledger, receiver=receiver, progress=False)
            assert campaign.send(df).accepted == len(df)
            sim.advance(700)  # every receipt and batch callback falls due (EXPIRED after 600 s)
            sim.set_clock_speed(1.0)  # retries come 0.05 s after a failed attempt
            deadline = time.monotonic() + 60
            while (at_kill := stored(ledger, campaign.name)) < 800 and time.monotonic() < deadline:
                time.sleep(0.01)
            victim = receiver.pids[0]
            os.kill(victim, signal.SIGKILL)
            state = sim.wait_idle(timeout=120)
            survivors = receiver.pids
            assert victim in survivors and len(survivors) == 2  # listed until revived
            replaced = receiver.revive()
            assert [(old, code) for old, code, _ in replaced] == [(victim, -signal.SIGKILL)]
            assert len(receiver.pids) == 2 and victim not in receiver.pids
            assert httpx.get(f"{receiver.url}/health", timeout=10).text == "ok"
    finally:
        sim.set_clock_speed(1.0)
    callbacks = state["callbacks"]
    acked = callbacks["acked"] - before["acked"]
    assert callbacks["given_up"] == before["given_up"]  # the gateway delivered every report in the end
    events = ledger.events(campaign.name)
    assert 0 < at_kill < len(events)  # the kill came while reports were flowing
    # every report the gateway counts as delivered (ACKed once each) is stored, and only once
    assert len(events) == acked
    assert not events.duplicated(["source", "message_id", "level", "status"]).any()
    assert (events["source"] == "batch").sum() == len(df)
    per_message = events[events["source"] == "dlr"].groupby(["message_id", "level", "status"]).size()
    assert (per_message == 1).all()
    # and the rows show what the gateway reported
    result = collect(df, campaign)
    assert (result["send_state"] == "accepted").all()
    truth = outcomes(sim, result["message_id"])
    assert len(truth) == len(df)
    for mid, status in zip(result["message_id"], result["delivery_status"], strict=True):
        expected = EXPECTED_LEVEL2[truth[mid]]
        assert (None if pd.isna(status) else status) == expected, (mid, truth[mid], status)
    ledger.close()


def test_workers_share_one_port_and_ledger(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "w.db")
    info = ledger.open_campaign("shared")
    keys = [f"k{i}" for i in range(40)]
    ledger.plan(
        "shared", pd.DataFrame({"message_key": keys, "msisdn": [f"8551200{i:04d}" for i in range(40)], "content": "x"})
    )
    ledger.mark_submitting("shared", keys, batch_id="b")
    ledger.settle("shared", keys, state="accepted", message_ids={k: f"m-{k}" for k in keys}, status=200)
    with CallbackServer(ledger, workers=3) as receiver:
        assert len(set(receiver.pids)) == 3
        dlr = callback_urls(receiver.public_url, info.id, info.token)["dlr_url"]
        # a fresh connection per report: the kernel spreads them over the workers
        for key in keys:
            form = {"id": f"m-{key}", "message_status": "DELIVRD", "level": "2"}
            assert httpx.post(dlr.format(key=key_digest(key)), data=form, timeout=30).text == ACK
        assert receiver.revive() == []  # nobody died
    assert not any(Path(f"/proc/{pid}").exists() for pid in receiver.pids)  # stopped: none left behind
    assert (ledger.messages("shared")["delivery_status"] == "DELIVRD").all()
    assert len(ledger.events("shared")) == len(keys)
    ledger.close()


def test_several_workers_need_process_mode(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "w.db")
    with pytest.raises(CallbackError, match="process"):
        CallbackServer(ledger, mode="thread", workers=2)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(CallbackError, match="workers"):
            CallbackServer(ledger, workers=bad)  # type: ignore[arg-type]
    with pytest.raises(PlasgateError, match="process"):
        BackgroundServer(lambda: None, workers=2)


def test_cli_workers_replace_a_killed_worker(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    Ledger(db).reply_token()
    command = [sys.executable, "-m", "plasgate_nb.cli", "callbacks", "--ledger", str(db), "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        assert "listening on http://127.0.0.1:" in lines[0], lines
        base = lines[0].split("listening on ")[1].split(";")[0]
        assert lines[2].startswith("2 receiver processes serving the port: "), lines
        pids = [int(p) for p in lines[2].split(":")[1].split()]
        assert httpx.get(f"{base}/health", timeout=10).text == "ok"
        os.kill(pids[0], signal.SIGKILL)
        line = ""
        while "in its place" not in line:
            line = proc.stdout.readline()
            assert line, "the command ended"
        assert line.startswith(f"receiver process {pids[0]} exited (code -9); started "), line
        assert httpx.get(f"{base}/health", timeout=10).text == "ok"
    finally:
        proc.terminate()  # SIGTERM: the command ends, its workers see their stdin close and stop
        proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids)

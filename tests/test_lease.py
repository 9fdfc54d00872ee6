"""One sender per campaign: the ledger's lease, across real processes, on SQLite and PostgreSQL.

Senders run as real processes against the simulator; its record (one entry per message it accepted)
proves that no message reached the gateway twice. The simulator holds its answers (``delay_after``) so a
first sender is provably mid-campaign while a second one tries; clearing the fault lets it finish.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa

from plasgate_nb import CampaignBusy, LedgerError, OptionError
from plasgate_nb.campaign import Campaign
from plasgate_nb.commands._common import EXIT_RETRY_LATER
from plasgate_nb.ledger import INTERRUPTED, SCHEMA_VERSION, Ledger
from plasgate_nb.ledger._lease import machine
from plasgate_nb.ledger._schema import _PG_LOCK_CLASS, resolve_url
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig
from plasgate_nb.smpp import SmppConfig
from plasgate_nb.transport import GatewayClient
from tests.conftest import gateway_for
from tests.test_ledger import url as _url  # noqa: F401 (a fixture: the SQLite and PostgreSQL locations)

ROOT = Path(__file__).resolve().parents[1]
CAMPAIGN = "lease-test"
HOST = socket.gethostname()

SENDER = textwrap.dedent("""
    import json, sys
    import pandas as pd
    from plasgate_nb import CampaignBusy, Campaign, Gateway, Ledger

    db, key, secret, ledger, rows, ttl, wait = sys.argv[1:8]
    rows = int(rows)
    df = pd.DataFrame({"msisdn": [f"8551{i:07d}" for i in range(rows)],
                       "content": [f"Hello customer {i}, code #ma#K{i}#ma#" for i in range(rows)]},
                      index=[f"c{i}" for i in range(rows)])
    gateway = Gateway(base_url=db, private_key=key, secret=secret, sender="SMS Info", max_in_flight=2,
                      rate_limits={"batch": None})
    campaign = Campaign("lease-test", gateway=gateway, ledger=Ledger(ledger, lease_ttl=float(ttl)),
                        max_recipients=10, progress=False)
    try:
        summary = campaign.send(df, wait=float(wait))
    except CampaignBusy as exc:
        print(exc, file=sys.stderr)
        sys.exit(4)
    print(json.dumps(summary.to_dict()))
""")


def frame(rows: int) -> pd.DataFrame:
    """The frame SENDER sends (same keys, numbers and texts)."""
    return pd.DataFrame(
        {
            "msisdn": [f"8551{i:07d}" for i in range(rows)],
            "content": [f"Hello customer {i}, code #ma#K{i}#ma#" for i in range(rows)],
        },
        index=[f"c{i}" for i in range(rows)],
    )


def held(delay: float, route: str = "batch") -> Fault:
    """The simulator accepts each request, then holds its answer ``delay`` seconds."""
    return Fault("delay_after", route=route, delay=delay)


@pytest.fixture
def db(_url: str) -> str:  # noqa: F811 (the fixture imported above)
    """Where the ledger lives: a fresh SQLite file, or a fresh PostgreSQL schema (test_ledger's ``url``)."""
    return _url


@pytest.fixture
def sim() -> Iterator[Simulator]:
    """A simulator without rate limits (faults are set per test)."""
    with Simulator(SimulatorConfig(seed=7, rate_limits=RateLimits.off()), mode="thread") as simulator:
        yield simulator


def start_sender(
    sim: Simulator, ledger: str, rows: int, *, ttl: float = 30.0, wait: float = 0.0
) -> subprocess.Popen[str]:
    """Run SENDER in its own process."""
    creds = sim.credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLASGATE_")}
    args = [sim.url, creds.private_key, creds.secret, ledger, str(rows), str(ttl), str(wait)]
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_records(sim: Simulator, count: int, proc: subprocess.Popen[str]) -> None:
    """Wait until the simulator accepted ``count`` messages (the sender is then mid-campaign)."""
    deadline = time.monotonic() + 120
    while sim.state()["records"] < count:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the sender never reached the gateway"
        time.sleep(0.01)


def sent_once(sim: Simulator) -> Counter[str]:
    """The numbers the gateway accepted, with how often; fails on any duplicate."""
    sent = Counter(r["to"] for r in sim.records())
    doubles = {number: n for number, n in sent.items() if n > 1}
    assert not doubles, f"{len(doubles)} messages reached the gateway twice: {list(doubles)[:5]}"
    return sent


def open_ledger(db: str, **options: Any) -> Ledger:
    """A ledger with the test campaign opened."""
    ledger = Ledger(db, **options)
    ledger.open_campaign(CAMPAIGN)
    return ledger


# -- the lease itself ---------------------------------------------------------------------------------


def test_a_second_sender_is_refused_and_told_who_holds_the_campaign(db: str) -> None:
    first, second = open_ledger(db), open_ledger(db)
    first.plan(CAMPAIGN, pd.DataFrame({"message_key": ["k1"], "msisdn": ["85512000001"], "content": ["hi"]}))
    with first.lease(CAMPAIGN):
        holder = second.lease_holder(CAMPAIGN)
        assert holder is not None and holder.live
        assert (holder.host, holder.pid) == (HOST, os.getpid())
        with pytest.raises(CampaignBusy) as busy, second.lease(CAMPAIGN):
            pass
        assert isinstance(busy.value, LedgerError)
        assert (busy.value.host, busy.value.pid, busy.value.since) == (HOST, os.getpid(), holder.since)
        message = str(busy.value)
        assert f"host {HOST}" in message and f"pid {os.getpid()}" in message and "since" in message
        # the other writes a second sender could make to the holder's rows are refused too
        for touch in (
            lambda: second.resume(CAMPAIGN),
            lambda: second.requeue_uncertain(CAMPAIGN),
            lambda: second.requeue_rejected(CAMPAIGN),
            lambda: second.mark_submitting(CAMPAIGN, ["k1"], batch_id="b"),
        ):
            with pytest.raises(CampaignBusy):
                touch()
        assert first.mark_submitting(CAMPAIGN, ["k1"], batch_id="b") == 1  # the holder goes ahead
        with pytest.raises(CampaignBusy):
            second.resume(CAMPAIGN)  # its row in flight is not "interrupted"
        assert first.summary(CAMPAIGN)["submitting"] == 1
    assert second.lease_holder(CAMPAIGN) is None
    assert second.resume(CAMPAIGN) == 1  # no live sender now: the row was interrupted
    first.close()
    second.close()


def test_wait_gets_the_lease_when_the_holder_lets_go_or_times_out_clearly(db: str) -> None:
    first, second = open_ledger(db), open_ledger(db)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with first.lease(CAMPAIGN):
            entered.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert entered.wait(30)
        with pytest.raises(CampaignBusy, match=r"after waiting \d+ s") as busy, second.lease(CAMPAIGN, wait=0.6):
            pass
        assert busy.value.waited >= 0.6 and busy.value.pid == os.getpid()
        threading.Timer(0.3, release.set).start()
        with second.lease(CAMPAIGN, wait=30):
            assert second.lease_holder(CAMPAIGN).live
    finally:
        release.set()
        holder.join()
    assert first.lease_holder(CAMPAIGN) is None
    with pytest.raises(OptionError, match="wait"), second.lease(CAMPAIGN, wait=-1):
        pass
    with pytest.raises(LedgerError, match="unknown campaign"), second.lease("nope"):
        pass
    first.close()
    second.close()


def test_lease_is_released_on_exceptions_and_keyboard_interrupt(db: str) -> None:
    ledger = open_ledger(db)
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), ledger.lease(CAMPAIGN):
            assert ledger.lease_holder(CAMPAIGN) is not None
            raise exc
        assert ledger.lease_holder(CAMPAIGN) is None
    ledger.close()


def test_an_expired_lease_is_taken_over_and_its_holder_stops(db: str) -> None:
    """A holder that stood still past its expiry (a frozen process) finds its lease gone and stops writing."""
    frozen, fresh = open_ledger(db, lease_ttl=0.5), open_ledger(db, lease_ttl=30)
    frozen.plan(
        CAMPAIGN, pd.DataFrame({"message_key": ["a", "b"], "msisdn": ["85512000001"] * 2, "content": ["x"] * 2})
    )
    with frozen.lease(CAMPAIGN) as lease:
        lease._stop.set()  # freeze its heartbeat, as SIGSTOP would
        lease._thread.join()
        deadline = time.monotonic() + 30
        while frozen.lease_holder(CAMPAIGN).live:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        with fresh.lease(CAMPAIGN):
            with pytest.raises(CampaignBusy, match="taken over"):
                frozen.mark_submitting(CAMPAIGN, ["a"], batch_id="late")
            assert not lease.renew() and lease.lost
            assert fresh.mark_submitting(CAMPAIGN, ["a"], batch_id="b") == 1
        assert fresh.lease_holder(CAMPAIGN) is None
    assert fresh.summary(CAMPAIGN)["submitting"] == 1
    frozen.close()
    fresh.close()


def test_version_5_ledger_gains_the_lease_table(db: str) -> None:
    with Ledger(db) as led:
        led.open_campaign(CAMPAIGN)
        engine = sa.create_engine(led.url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE plasgate_leases")
        conn.exec_driver_sql("UPDATE plasgate_meta SET value = '5' WHERE key = 'schema_version'")
    with Ledger(db) as led, led.lease(CAMPAIGN):
        assert led.lease_holder(CAMPAIGN).pid == os.getpid()
    assert "plasgate_leases" in sa.inspect(engine).get_table_names()
    with engine.connect() as conn:
        version = conn.exec_driver_sql("SELECT value FROM plasgate_meta WHERE key = 'schema_version'").scalar()
    assert version == str(SCHEMA_VERSION) == "6"
    engine.dispose()


# -- Campaign.send under the lease (in this process) ----------------------------------------------------


class FailingClient(GatewayClient):
    """A real client that sends the first request, then raises ``exc`` (a crash mid-campaign)."""

    def __init__(self, *args: Any, exc: BaseException, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exc = exc

    def send_many(self, requests: Sequence[Any], **hooks: Any) -> Any:
        super().send_many(list(requests)[:1], **hooks)
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_campaign_send_releases_the_lease_when_it_fails(
    sim: Simulator,
    db: str,
    exc: BaseException,
) -> None:
    gateway = gateway_for(sim)
    df = frame(30)
    with Ledger(db) as first, Ledger(db) as second:
        client = FailingClient(gateway, exc=exc)
        crashing = Campaign(CAMPAIGN, gateway=gateway, ledger=first, client=client, max_recipients=10, progress=False)
        with pytest.raises(type(exc)):
            crashing.send(df)
        assert first.lease_holder(CAMPAIGN) is None
        again = Campaign(CAMPAIGN, gateway=gateway, ledger=second, max_recipients=10, progress=False)
        summary = again.send(df)  # at once: nobody holds the campaign
    assert (summary.recipients, summary.accepted, summary.already_sent) == (20, 20, 10)
    assert len(sent_once(sim)) == 30


def test_smpp_send_holds_the_lease_and_is_refused_while_another_holds_it(db: str) -> None:
    config = SimulatorConfig(seed=3, smpp=True, rate_limits=RateLimits.off())
    with Simulator(config, mode="thread") as smpp_sim, Ledger(db) as ledger, Ledger(db) as other:
        creds = smpp_sim.credentials
        smpp = SmppConfig(port=smpp_sim.smpp_port, system_id=creds.username, password=creds.password)
        seen: list[Any] = []

        class Watching(GatewayClient):
            def count_sent(self, n: int) -> None:
                seen.append(campaign.ledger.lease_holder(CAMPAIGN))

        gateway = gateway_for(smpp_sim)
        campaign = Campaign(
            CAMPAIGN,
            gateway=gateway,
            ledger=ledger,
            transport="smpp",
            smpp=smpp,
            client=Watching(gateway),
            progress=False,
        )
        other.open_campaign(CAMPAIGN)
        with other.lease(CAMPAIGN), pytest.raises(CampaignBusy, match=f"pid {os.getpid()}"):
            campaign.send(frame(20))
        assert smpp_sim.records() == [] and campaign.status()["total"] == 0
        summary = campaign.send(frame(20))
        assert summary.accepted + summary.rejected == 20 and summary.accepted > 0  # the SMSC may refuse a few
        assert len(sent_once(smpp_sim)) == 20
        assert seen and all(h is not None and h.live and h.pid == os.getpid() for h in seen)
        assert ledger.lease_holder(CAMPAIGN) is None


# -- real processes ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_sending_one_campaign_send_each_message_once(sim: Simulator, db: str) -> None:
    """(a) A second sender started mid-campaign is refused (exit 4) or, with wait=, waits and sends nothing."""
    rows = 400
    sim.set_faults(held(2.0))  # the first sender cannot finish before the test lets it
    first = start_sender(sim, db, rows)
    wait_for_records(sim, 10, first)
    refused = start_sender(sim, db, rows)
    waiting = start_sender(sim, db, rows, wait=300)
    _, err = refused.communicate(timeout=120)
    assert refused.returncode == 4, err[-2000:]
    assert f"host {HOST}, pid {first.pid}, since" in err
    resume = subprocess.run(
        [sys.executable, "-m", "plasgate_nb.cli", "resume", "--campaign", CAMPAIGN, "--ledger", db],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resume.returncode == EXIT_RETRY_LATER, resume.stderr[-2000:]
    lines = resume.stderr.strip().splitlines()
    assert len(lines) == 1 and f"host {HOST}, pid {first.pid}, since" in lines[0], resume.stderr
    assert first.poll() is None  # still mid-campaign: they were refused, not late
    sim.clear_faults()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert json.loads(out)["accepted"] == rows
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err[-2000:]
    late = json.loads(out)
    assert (late["recipients"], late["already_sent"]) == (0, rows)
    assert len(sent_once(sim)) == rows
    with Ledger(db) as ledger:
        assert ledger.summary(CAMPAIGN)["accepted"] == rows
        assert ledger.lease_holder(CAMPAIGN) is None


@pytest.mark.slow
def test_overlapping_cli_resend_uncertain_touches_nothing(sim: Simulator, db: str, tmp_path: Path) -> None:
    """(b) `plasgate-nb send --resend-uncertain` while a first sender is mid-campaign: exit 4, one line naming
    the holder, 0 duplicates, and the first sender completes normally."""
    rows = 60
    customers = tmp_path / "customers.csv"
    pd.DataFrame(
        {"id": [f"C{i}" for i in range(rows)], "phone": [f"012{i:06d}" for i in range(rows)], "code": range(rows)}
    ).to_csv(customers, index=False)
    template = tmp_path / "offer.j2"
    template.write_text("Your code {{ code }}", encoding="utf-8")
    creds = sim.credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLASGATE_")}
    env.update(
        PLASGATE_BASE_URL=sim.url,
        PLASGATE_PRIVATE_KEY=creds.private_key,
        PLASGATE_SECRET=creds.secret,
        PLASGATE_SENDER=creds.sender,
    )
    common = [str(customers), "--template", str(template), "--mask", "code", "--key", "id"]
    command = [sys.executable, "-m", "plasgate_nb.cli", "send", *common, "--campaign", CAMPAIGN, "--ledger", db]
    sim.set_faults(held(3.0, route="rest"))
    first = subprocess.Popen(
        [*command, "--transport", "single", "--json"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_records(sim, 1, first)
    second = subprocess.run(
        [*command, "--resend-uncertain"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == EXIT_RETRY_LATER, second.stderr[-2000:]
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"host {HOST}, pid {first.pid}, since" in lines[0], second.stderr
    assert "rerun later" in lines[0] and f"exit {EXIT_RETRY_LATER}" in lines[0]
    assert first.poll() is None
    sim.clear_faults()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert json.loads(out)["accepted"] == rows
    assert len(sent_once(sim)) == rows
    with Ledger(db) as ledger:
        assert ledger.summary(CAMPAIGN)["accepted"] == rows


def _kill_mid_send(sim: Simulator, db: str, rows: int, *, ttl: float) -> tuple[subprocess.Popen[str], int]:
    """Start a sender, kill -9 it while requests are in flight; return it (not reaped) and its rows in flight."""
    sim.set_faults(held(3.0))
    proc = start_sender(sim, db, rows, ttl=ttl)
    wait_for_records(sim, 20, proc)
    proc.send_signal(signal.SIGKILL)
    with Ledger(db) as ledger:
        deadline = time.monotonic() + 30
        while (holder := ledger.lease_holder(CAMPAIGN)) is None:  # its lease row is committed before it sends
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert holder.pid == proc.pid
        submitting = ledger.summary(CAMPAIGN)["submitting"]
    assert submitting > 0  # answers are held 3 s: the kill lands with requests in flight
    sim.clear_faults()
    return proc, submitting


def _check_takeover(sim: Simulator, db: str, rows: int, submitting: int) -> None:
    """After the takeover: the rows in flight are uncertain, the rest accepted, nothing reached the gateway twice."""
    sent = sent_once(sim)
    with Ledger(db) as ledger:
        view = ledger.messages(CAMPAIGN).set_index("msisdn")
        assert ledger.lease_holder(CAMPAIGN) is None
    assert view["state"].value_counts().to_dict() == {"accepted": rows - submitting, "uncertain": submitting}
    assert (view.loc[view["state"] == "uncertain", "reason"] == INTERRUPTED).all()
    assert all(sent[n] == 1 for n in view.index[view["state"] == "accepted"])
    assert set(sent) <= set(view.index)


@pytest.mark.slow
def test_killed_sender_keeps_the_campaign_until_its_lease_expires(
    sim: Simulator,
    db: str,
) -> None:
    """(c) kill -9 mid-send: a new sender is refused while the lease is live, takes over once it expired,
    turns the rows left submitting uncertain, sends the rest; 0 duplicates."""
    rows = 300
    killed, submitting = _kill_mid_send(sim, db, rows, ttl=15)
    try:
        # not reaped yet, so its pid still exists: only the expiry frees the lease, as for a holder on another host
        with Ledger(db) as ledger:
            campaign = Campaign(CAMPAIGN, gateway=gateway_for(sim), ledger=ledger, max_recipients=10, progress=False)
            with pytest.raises(CampaignBusy, match=f"pid {killed.pid}") as busy:
                campaign.send(frame(rows))
            assert busy.value.host == HOST
            assert campaign.status()["submitting"] == submitting  # nothing touched
            summary = campaign.send(frame(rows), wait=120)
    finally:
        killed.communicate(timeout=60)
    assert summary.recipients > 0 and summary.accepted == summary.recipients and summary.uncertain == 0
    assert summary.already_sent == rows - summary.recipients
    _check_takeover(sim, db, rows, submitting)


@pytest.mark.slow
@pytest.mark.skipif(machine() is None, reason="no /proc: a holder's pid cannot be checked here")
def test_killed_sender_on_this_machine_is_taken_over_at_once(sim: Simulator, db: str) -> None:
    """(c) A holder on this machine whose process is gone (kill -9, reaped) is taken over without waiting."""
    rows = 300
    killed, submitting = _kill_mid_send(sim, db, rows, ttl=600)
    killed.communicate(timeout=60)
    with Ledger(db) as ledger:
        campaign = Campaign(CAMPAIGN, gateway=gateway_for(sim), ledger=ledger, max_recipients=10, progress=False)
        summary = campaign.send(frame(rows))  # wait=0: the lease (600 s) is not expired, its holder is gone
    assert summary.uncertain == 0 and summary.accepted == summary.recipients
    _check_takeover(sim, db, rows, submitting)


def _writers_free(db: str) -> bool:
    """True when no connection holds the ledger's writer lock (a frozen writer would hold it for good)."""
    url = resolve_url(db)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, timeout=0.2, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn, conn.begin():
            sql = "SELECT pg_try_advisory_xact_lock(:cls, hashtext(current_schema()))"
            return bool(conn.execute(sa.text(sql), {"cls": _PG_LOCK_CLASS}).scalar())
    finally:
        engine.dispose()


def freeze_outside_a_write(proc: subprocess.Popen[str], db: str) -> None:
    """SIGSTOP ``proc`` at a moment it holds no ledger write transaction (else every writer would wait on it)."""
    for _ in range(200):
        proc.send_signal(signal.SIGSTOP)
        if _writers_free(db):
            return
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)
    pytest.fail("the sender never left a write transaction")


@pytest.mark.slow
def test_frozen_sender_loses_the_campaign_and_sends_nothing_more(sim: Simulator, db: str) -> None:
    """A sender frozen (SIGSTOP) past its lease is taken over; when it thaws it stops without sending."""
    rows = 300
    sim.set_faults(held(1.0))
    frozen = start_sender(sim, db, rows, ttl=3.0)
    try:
        wait_for_records(sim, 20, frozen)
        freeze_outside_a_write(frozen, db)
        sim.clear_faults()
        with Ledger(db) as ledger:
            campaign = Campaign(CAMPAIGN, gateway=gateway_for(sim), ledger=ledger, max_recipients=10, progress=False)
            summary = campaign.send(frame(rows), wait=120)  # its pid exists: taken over once the lease expired
        assert summary.recipients > 0 and summary.accepted == summary.recipients
    finally:
        frozen.send_signal(signal.SIGCONT)
    _, err = frozen.communicate(timeout=120)
    assert frozen.returncode == 4, err[-2000:]
    assert "lease lapsed" in err
    sent = sent_once(sim)
    with Ledger(db) as ledger:
        states = ledger.summary(CAMPAIGN)
    # what it had in flight was answered after it thawed (accepted) or stays uncertain; it marked nothing more
    assert states["accepted"] + states["uncertain"] == rows and states["accepted"] <= len(sent) <= rows


@pytest.mark.slow
def test_interrupted_sender_process_releases_the_lease(sim: Simulator, db: str) -> None:
    """(d) Ctrl-C (SIGINT) in a sending process: KeyboardInterrupt unwinds the send and releases the lease."""
    sim.set_faults(held(1.0))
    proc = start_sender(sim, db, 300)
    wait_for_records(sim, 10, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, err[-2000:]
    sim.clear_faults()
    with Ledger(db) as ledger:
        assert ledger.lease_holder(CAMPAIGN) is None
        campaign = Campaign(CAMPAIGN, gateway=gateway_for(sim), ledger=ledger, max_recipients=10, progress=False)
        campaign.send(frame(300))  # at once: no lease to wait for
    assert len(sent_once(sim)) <= 300

"""Every outcome true against a Jasmin-like gateway (issue 10, items 1 and 5), on SQLite and PostgreSQL.

- Settling is order-free: the request's answer, the batch callbacks, the DLRs and the errbacks of one
  batch may arrive in any order; an errback (a number the gateway refused) makes its row ``rejected``
  even after the 200, and a 200 after the errback does not make it ``accepted`` again.
- An answer that may follow an accepted request (503, 408 or any 5xx, a timeout, a dropped connection)
  makes its rows ``uncertain`` and is never resent automatically: the simulator answers 503/408 after
  accepting, and no number reaches it twice; the rows are then settled by their batch callbacks and DLRs.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from plasgate_nb.callbacks import CallbackServer
from plasgate_nb.campaign import Campaign
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig
from plasgate_nb.simulator.parse import NO_ROUTE, errback_text
from tests.conftest import gateway_for
from tests.test_ledger import url  # noqa: F401  (the SQLite / PostgreSQL fixture)

REFUSED = errback_text(NO_ROUTE)  # 'HTTPAPI error: Error "No route found', as Jasmin words it


# ------------------------------------------------------------------------------ the ledger, every order
def _rows(prefix: str) -> pd.DataFrame:
    """Three rows of one batch: two the gateway takes, one it refuses (no route)."""
    return pd.DataFrame(
        {
            "message_key": ["k0", "k1", "k2"],
            "msisdn": [f"85512{prefix}0", f"85512{prefix}1", f"85513{prefix}2"],
            "content": ["Offer for all"] * 3,
        }
    )


def _steps(ledger: Ledger, name: str, numbers: list[str], answer: str) -> dict[str, Callable[[], Any]]:
    """What may reach the ledger about one batch, each as a callable: its answer and its gateway reports."""
    status = 200 if answer == "accepted" else 503

    def batch(i: int) -> dict[str, Any]:
        return {
            "source": "batch",
            "campaign": name,
            "queue_id": "Q-1",
            "msisdn": numbers[i],
            "message_id": f"{name}-m{i}",
            "ok": True,
            "raw": {"batchId": "Q-1", "to": numbers[i], "status": "1", "statusText": f'Success "{name}-m{i}"'},
        }

    errback = {
        "source": "errback",
        "campaign": name,
        "queue_id": "Q-1",
        "msisdn": numbers[2],
        "ok": False,
        "error": REFUSED,
        "raw": {"batchId": "Q-1", "to": numbers[2], "status": "0", "statusText": REFUSED},
    }
    dlr = {"source": "dlr", "message_id": f"{name}-m0", "level": 2, "status": "DELIVRD", "err": "000"}
    return {
        "answer": lambda: ledger.settle(
            name,
            ["k0", "k1", "k2"],
            state=answer,
            queue_id="Q-1" if answer == "accepted" else None,
            status=status,
            reason=None if answer == "accepted" else "HTTP 503: Service Unavailable",
        ),
        "callback": lambda: ledger.record_events([batch(0)]),
        "dlr": lambda: ledger.record_events([dlr]),
        "errback": lambda: ledger.record_events([errback]),
    }


@pytest.mark.parametrize("answer", ["accepted", "uncertain"])
def test_answer_callbacks_dlrs_and_errbacks_settle_alike_in_every_order(url: str, answer: str) -> None:  # noqa: F811
    """24 orders of (answer, batch callback, DLR, errback) for one batch; a repeated errback changes nothing."""
    orders = list(itertools.permutations(["answer", "callback", "dlr", "errback"]))
    with Ledger(url) as ledger:
        for n, order in enumerate(orders):
            name = f"order-{answer}-{n}"
            rows = _rows(f"{n:05d}")
            ledger.plan(name, rows)
            ledger.mark_submitting(name, ["k0", "k1", "k2"], batch_id=f"b-{name}")
            steps = _steps(ledger, name, list(rows["msisdn"]), answer)
            for step in order:
                steps[step]()
            steps["errback"]()  # the gateway retries a callback it thinks was lost
            m = ledger.messages(name).set_index("message_key")
            columns = ["state", "reason", "message_id", "delivery_status"]
            got = {k: tuple(None if pd.isna(v) else v for v in m.loc[k, columns]) for k in m.index}
            expected = {
                "k0": ("accepted", None, f"{name}-m0", "DELIVRD"),  # its own callback: taken, whatever the answer
                "k1": (answer, None if answer == "accepted" else "HTTP 503: Service Unavailable", None, None),
                "k2": ("rejected", REFUSED, None, None),  # refused: even after a 200, never back to accepted
            }
            assert got == expected, order
            assert m.loc["k2", "response_status"] == (200 if answer == "accepted" else 503), order


# ------------------------------------------------------------------------------ end to end, over sockets
@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    """One seeded simulator for the module (faults reset per test); receipts retried quickly."""
    config = SimulatorConfig(seed=10, rate_limits=RateLimits.off(), callback_retry_delay=0.1)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


_blocks = itertools.count(100)


def audience(n: int, *, unrouted: int = 0, personal_every: int = 3) -> pd.DataFrame:
    """``n`` numbers no other test uses (the last ``unrouted`` on the closed 855 13 network); every
    ``personal_every``-th row has its own text (DLRs carry its key), the others share one (batch callbacks)."""
    block = next(_blocks)
    numbers = [f"8551{block:03d}{i:04d}" if n - i > unrouted else f"85513{block:03d}{i:03d}" for i in range(n)]
    content = [f"Hi {i}, code #ma#{i:05d}#ma#" if i % personal_every == 0 else "Same offer for all" for i in range(n)]
    return pd.DataFrame(
        {"msisdn": numbers, "content": content}, index=pd.Index([f"c{block}-{i}" for i in range(n)], name="customer")
    )


def wait_for(ledger: Ledger, name: str, done: Callable[[pd.DataFrame], bool], timeout: float = 120.0) -> pd.DataFrame:
    """The campaign's rows once ``done(rows)`` holds (reports still landing), or fail after ``timeout`` s.

    Polls only the columns it needs, a few times a second: the receiver writing the reports shares the
    process (and the machine's two cores) with this loop.
    """
    deadline = time.monotonic() + timeout
    while True:
        rows = ledger.read_columns(name, ["msisdn", "state", "reason", "message_id"])
        if done(rows):
            return ledger.messages(name)
        if time.monotonic() > deadline:
            counts = rows["state"].value_counts().to_dict()
            raise AssertionError(f"campaign {name!r} did not settle: {counts}")
        time.sleep(0.25)


def sent_per_number(sim: Simulator, numbers: pd.Series) -> Counter[str]:
    """How many times the simulator accepted each of ``numbers``."""
    wanted = set(numbers)
    return Counter(r["to"] for r in sim.records() if r["to"] in wanted)


def test_errbacks_after_the_200_reject_refused_numbers(sim: Simulator, url: str) -> None:  # noqa: F811
    """A batch with numbers no route serves: the 200 accepts the batch, the errbacks that follow reject them."""
    sim.clear_faults()
    df = audience(30, unrouted=4)
    with Ledger(url) as ledger, CallbackServer(ledger, mode="thread") as receiver:
        campaign = Campaign("refused", gateway=gateway_for(sim), ledger=ledger, receiver=receiver, progress=False)
        summary = campaign.send(df)
        assert summary.accepted == len(df)  # what the answers said: the gateway took the batch
        refused = set(df["msisdn"].iloc[-4:])
        rows = wait_for(
            ledger,
            campaign.name,
            lambda r: (r["state"] == "rejected").sum() == len(refused) and r["message_id"].notna().sum() == 26,
        )
        assert campaign.send(df).requests == 0  # nothing is resent
    rows = rows.set_index("msisdn")
    assert set(rows.index[rows["state"] == "rejected"]) == refused
    assert (rows.loc[list(refused), "reason"] == REFUSED).all()
    assert (rows.drop(index=list(refused))["state"] == "accepted").all()
    assert set(sent_per_number(sim, df["msisdn"])) == set(df["msisdn"]) - refused


@contextlib.contextmanager
def reports_held(sim: Simulator, ledger: Ledger) -> Iterator[tuple[CallbackServer, Callable[[], CallbackServer]]]:
    """A receiver that is down while the campaign sends (the gateway's reports wait, simulated time stands
    almost still), and a function that brings it back on the same URL, the reports then landing."""
    receiver = CallbackServer(ledger, mode="thread").start()
    port = int(receiver.url.rsplit(":", 1)[1])
    receiver.stop()
    sim.set_clock_speed(0.001)
    again: list[CallbackServer] = []

    def back() -> CallbackServer:
        again.append(CallbackServer(ledger, port=port, mode="thread").start())
        sim.set_clock_speed(1.0)
        sim.advance(120)  # the failed callbacks are retried; every DLR falls due
        return again[0]

    try:
        yield receiver, back
    finally:
        for server in again:
            server.stop()
        sim.set_clock_speed(1.0)


def check_late_errors(sim: Simulator, ledger: Ledger, campaign: Campaign, df: pd.DataFrame, summary: Any) -> None:
    """No number reached the gateway twice; the answered-late rows are uncertain, the others accepted."""
    sent = sent_per_number(sim, df["msisdn"])
    assert max(sent.values()) == 1, f"{sum(v > 1 for v in sent.values())} numbers got two SMS"
    assert len(sent) == len(df)  # every request reached the gateway once, the answered-late ones too
    assert 0 < summary.uncertain < len(df) and summary.uncertain + summary.accepted == len(df)
    rows = ledger.messages(campaign.name)
    late = rows["response_status"] != 200
    assert rows.loc[late, "state"].eq("uncertain").all() and late.sum() == summary.uncertain
    assert rows.loc[~late, "state"].eq("accepted").all()


def check_settled(sim: Simulator, ledger: Ledger, campaign: Campaign, df: pd.DataFrame) -> None:
    """Reports settled every row accepted, with the gateway's message id; a new send sends nothing."""
    rows = wait_for(ledger, campaign.name, lambda r: (r["state"] == "accepted").all() and r["message_id"].notna().all())
    numbers = set(df["msisdn"])
    truth = {r["to"]: r["message_id"] for r in sim.records() if r["to"] in numbers}
    assert dict(zip(rows["msisdn"], rows["message_id"], strict=True)) == truth
    assert campaign.send(df).requests == 0


@pytest.mark.parametrize("status", [503, 408])
def test_batch_answers_after_accepting_are_uncertain_never_resent(
    sim: Simulator,
    url: str,  # noqa: F811
    status: int,
) -> None:
    """3,000 numbers through REST batch-send while some requests are answered 503/408 after being accepted."""
    df = audience(3000)
    sim.set_faults(Fault("error_after", route="batch", probability=0.3, status=status))
    gateway = gateway_for(sim, max_retry_wait=2.0, default_retry_after=0.1)  # waits a client would make
    with Ledger(url) as ledger, reports_held(sim, ledger) as (receiver, back):
        campaign = Campaign(
            f"late-{status}",
            gateway=gateway,
            ledger=ledger,
            receiver=receiver,
            max_recipients=100,
            dlr_level=2,
            progress=False,
        )
        summary = campaign.send(df)
        sim.clear_faults()
        check_late_errors(sim, ledger, campaign, df, summary)
        back()
        check_settled(sim, ledger, campaign, df)


@pytest.mark.parametrize(("transport", "route"), [("single", "rest"), ("http", "api")])
@pytest.mark.parametrize("status", [503, 408])
def test_single_answers_after_accepting_are_uncertain_then_settled_by_dlrs(
    sim: Simulator,
    url: str,  # noqa: F811
    transport: str,
    route: str,
    status: int,
) -> None:
    """REST single and HTTP API: 503/408 after accepting leave rows uncertain; their DLRs settle them."""
    df = audience(20, personal_every=1)
    sim.set_faults(Fault("error_after", route=route, probability=0.4, status=status))
    gateway = gateway_for(sim, max_retry_wait=2.0, default_retry_after=0.1)  # waits a client would make
    with Ledger(url) as ledger, reports_held(sim, ledger) as (receiver, back):
        campaign = Campaign(
            f"late-{transport}-{status}",
            gateway=gateway,
            ledger=ledger,
            receiver=receiver,
            transport=transport,  # type: ignore[arg-type]
            dlr_level=1,
            progress=False,
        )
        summary = campaign.send(df)
        sim.clear_faults()
        check_late_errors(sim, ledger, campaign, df, summary)
        back()
        check_settled(sim, ledger, campaign, df)

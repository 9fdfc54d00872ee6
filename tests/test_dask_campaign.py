"""Campaign.plan, Campaign.send and collect on Dask DataFrames (a LocalCluster of 2 worker processes).

Each Dask result is compared with the pandas path on the same rows: a reference campaign in a ledger of
its own (an SQLite file), the Dask campaign in the ``url`` ledger (an SQLite file the workers share, or a
PostgreSQL schema).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from plasgate_nb._dask._partitions import Spec
from plasgate_nb.campaign import Campaign, SendSummary
from plasgate_nb.errors import AudienceError, LedgerError
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig
from plasgate_nb.smpp import SmppConfig
from tests.conftest import gateway_for
from tests.test_ledger import url  # noqa: F401 (fixture: a fresh SQLite file or PostgreSQL schema)

dd = pytest.importorskip("dask.dataframe", reason="Dask tests need the [dask] extra")

PARTS = 4
LEDGER_COLUMNS = ["state", "reason", "msisdn", "content_hash", "content_report", "segments"]


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=11, rate_limits=RateLimits.off(), callback_retry_delay=0.05, smpp=True)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


@pytest.fixture
def gateway(sim: Simulator) -> Gateway:
    sim.clear_faults()
    return gateway_for(sim, read_timeout=2.0, max_retry_wait=1.0, default_retry_after=0.2)


def rendered(n: int = 120, *, start: int = 0) -> pd.DataFrame:
    """A rendered frame: distinct numbers and texts, but for repeats within and across partitions.

    Rows 100-104 repeat the number and text of rows 3-7 (three partitions earlier) under their own keys,
    row 50 repeats row 49 (the same partition), row 60 has row 10's number with another text (no
    repeat), rows 20-21 were skipped by the audience stage, rows 70-74 are the A/B holdout.
    """
    ids = list(range(start, start + n))
    numbers = [f"85512{i:06d}" for i in ids]
    texts = [f"Hi #{i}, code #ma#C{i}#ma#" for i in ids]
    for late, early in [*((100 + i, 3 + i) for i in range(5)), (50, 49)]:
        numbers[late], texts[late] = numbers[early], texts[early]
    numbers[60] = numbers[10]
    status = ["ok"] * n
    status[20] = status[21] = "invalid"
    variant = ["A"] * n
    variant[70:75] = ["holdout"] * 5
    return pd.DataFrame(
        {
            "msisdn": numbers,
            "content": texts,
            "content_report": [t.split("#ma#")[0] + "******" for t in texts],
            "audience_status": status,
            "variant": variant,
        },
        index=pd.Index([f"cust{i}" for i in ids], name="customer"),
    )


def to_dask(df: pd.DataFrame) -> Any:
    """``df`` in PARTS partitions, rows in frame order (partition order is the frame's order)."""
    return dd.from_pandas(df, npartitions=PARTS, sort=False)


def campaign(ledger: Ledger | str | Path, gateway: Gateway, name: str = "d", **kwargs: Any) -> Campaign:
    """A campaign without a progress bar."""
    return Campaign(name, gateway=gateway, ledger=ledger, progress=False, **kwargs)


def rows_of(ledger: Ledger, name: str) -> pd.DataFrame:
    """The ledger rows of campaign ``name`` by key (the columns planning and sending decide)."""
    frame = ledger.messages(name, columns=LEDGER_COLUMNS)
    return frame.set_index("message_key").sort_index()


def figures(summary: SendSummary) -> dict[str, Any]:
    """A summary's figures that do not depend on how rows were cut into requests."""
    out = summary.to_dict()
    for name in ("requests", "projected_seconds", "dry_run"):
        out.pop(name)
    return out


def sent_numbers(sim: Simulator, since: int) -> Counter[str]:
    return Counter(r["to"] for r in sim.records(offset=since))


def test_plan_of_a_dask_frame_is_the_pandas_plan(
    dask_client: Any,
    url: str,  # noqa: F811
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered()
    before = df.copy()
    ddf = to_dask(df)
    reference = Ledger(tmp_path / "reference.db")
    with Ledger(url) as ledger:
        for led in (reference, ledger):  # a row sent by an earlier run: row 30 repeats it under a new key
            led.plan(
                "d",
                pd.DataFrame(
                    {"message_key": ["old"], "msisdn": [df["msisdn"].iloc[30]], "content": [df["content"].iloc[30]]}
                ),
            )
            led.mark_submitting("d", ["old"], batch_id="b0")
            led.settle("d", ["old"], state="accepted", queue_id="q0", status=200, body="{}")
        expected = campaign(reference, gateway).plan(df)
        got = campaign(ledger, gateway).plan(ddf)
        assert got.same_as == expected.same_as
        assert got.same_as == {
            **{f"cust{100 + i}": f"cust{3 + i}" for i in range(5)},
            "cust50": "cust49",
            "cust30": "old",
        }
        assert figures(got) == figures(expected)
        pd.testing.assert_frame_equal(rows_of(ledger, "d"), rows_of(reference, "d"))
        again = campaign(ledger, gateway).plan(ddf)  # idempotent
        assert figures(again) == figures(expected)
        assert len(ledger.messages("d")) == len(reference.messages("d"))
    reference.close()
    pd.testing.assert_frame_equal(df, before)


def test_send_of_a_dask_frame_sends_what_pandas_sends_once(
    dask_client: Any,
    url: str,  # noqa: F811
    sim: Simulator,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered(start=1000)
    ddf = to_dask(df)
    rules = {"frequency_cap": (1, "7D")}
    reference = Ledger(tmp_path / "reference.db")
    with Ledger(url) as ledger:
        for led in (reference, ledger):  # the rules: one number opted out, one already had a message
            led.suppress([df["msisdn"].iloc[80]])
            campaign(led, gateway, "earlier").send(df.iloc[[90]])
        start = len(sim.records())
        expected = campaign(reference, gateway, **rules).send(df)
        middle = len(sim.records())
        got = campaign(ledger, gateway, **rules).send(ddf)
        assert figures(got) == figures(expected)
        assert (got.accepted, got.skipped_reasons) == (105, {"invalid": 2, "holdout": 5, "suppressed": 1, "capped": 1})
        assert sent_numbers(sim, middle) == sent_numbers(sim, start) - sent_numbers(sim, middle)
        pd.testing.assert_frame_equal(rows_of(ledger, "d"), rows_of(reference, "d"))
        again = campaign(ledger, gateway, **rules).send(ddf)
        assert figures(again) == figures(campaign(reference, gateway, **rules).send(df))
        assert (again.recipients, again.accepted) == (0, 0)
        assert len(sim.records()) == 2 * middle - start
    reference.close()


def test_dry_run_of_a_dask_frame_writes_nothing_and_previews_as_pandas(
    dask_client: Any,
    url: str,  # noqa: F811
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered(start=2000)
    reference = Ledger(tmp_path / "reference.db")
    with Ledger(url) as ledger:
        expected = campaign(reference, gateway, price_per_segment=0.01).send(df, dry_run=True)
        got = campaign(ledger, gateway, price_per_segment=0.01).send(to_dask(df), dry_run=True)
        assert figures(got) == figures(expected)
        assert got.same_as and got.recipients == expected.recipients
        assert ledger.summary("d")["total"] == 0
    reference.close()


def test_collect_of_a_dask_frame_is_the_pandas_collect(
    dask_client: Any,
    url: str,  # noqa: F811
    sim: Simulator,
    gateway: Gateway,
) -> None:
    df = rendered(start=3000)
    ddf = to_dask(df)
    with Ledger(url) as ledger:
        sender = campaign(ledger, gateway, price_per_segment=0.02)
        sender.send(ddf)
        collected = sender.collect(ddf)
        assert isinstance(collected, dd.DataFrame)
        got = collected.compute()
        pd.testing.assert_frame_equal(got, collect(ddf.compute(), sender))
        assert got["send_state"].value_counts().to_dict() == {
            "accepted": 107,
            "holdout": 5,
            "planned": 6,
            "not_sent": 2,
        }


def test_keys_repeated_across_partitions_are_refused_before_anything_is_written(
    dask_client: Any,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered(start=4000)
    df.index = pd.Index([f"k{i % 70}" for i in range(120)])  # two files, each numbered from 0
    ddf = dd.from_pandas(df.iloc[:70], npartitions=2, sort=False)
    ddf = dd.concat([ddf, dd.from_pandas(df.iloc[70:], npartitions=2, sort=False)])
    with Ledger(tmp_path / "l.db") as ledger:
        with pytest.raises(AudienceError, match=r"duplicate values \['k0', .*across partitions"):
            campaign(ledger, gateway).plan(ddf)
        with pytest.raises(AudienceError, match="across partitions"):
            campaign(ledger, gateway).send(ddf)
        assert ledger.summary("d")["total"] == 0


def test_an_uncertain_batch_is_not_resent_until_asked(
    dask_client: Any,
    sim: Simulator,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered(start=5000).drop(columns=["variant"])
    ddf = to_dask(df)
    with Ledger(tmp_path / "l.db") as ledger:
        sim.set_faults(Fault("error_after", route="batch", count=1))
        first = campaign(ledger, gateway).send(ddf)
        sim.clear_faults()
        assert first.uncertain > 0 and first.accepted + first.uncertain == 112
        start = len(sim.records())
        assert campaign(ledger, gateway).send(ddf).recipients == 0
        resent = campaign(ledger, gateway).send(ddf, resend_uncertain=True)
        assert (resent.accepted, resent.already_sent) == (first.uncertain, 112 - first.uncertain)
        assert len(sim.records()) - start == first.uncertain


def test_single_sends_of_a_dask_frame_are_the_pandas_ones(
    dask_client: Any,
    sim: Simulator,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered(start=6000)
    with Ledger(tmp_path / "reference.db") as reference, Ledger(tmp_path / "dask.db") as ledger:
        expected = campaign(reference, gateway, transport="single").send(df)
        got = campaign(ledger, gateway, transport="single").send(to_dask(df))
        assert figures(got) == figures(expected)
        assert got.requests == got.accepted == 107
        pd.testing.assert_frame_equal(rows_of(ledger, "d"), rows_of(reference, "d"))


def test_a_local_scheduler_plans_in_this_process_with_the_same_result(gateway: Gateway, tmp_path: Path) -> None:
    import dask

    df = rendered(start=7000)
    with Ledger(tmp_path / "reference.db") as reference, Ledger(tmp_path / "dask.db") as ledger:
        expected = campaign(reference, gateway).plan(df)
        with dask.config.set(scheduler="sync"):
            got = campaign(ledger, gateway).plan(to_dask(df))
        assert figures(got) == figures(expected)
        pd.testing.assert_frame_equal(rows_of(ledger, "d"), rows_of(reference, "d"))


def test_a_ledger_the_workers_cannot_open_fails_naming_it(
    dask_client: Any,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    place = tmp_path / "gone"
    place.mkdir()
    planner = campaign(Ledger(place / "l.db"), gateway)
    planner.ledger.close()
    for path in place.iterdir():
        path.unlink()
    place.rmdir()  # the workers find no ledger where the client had one
    with pytest.raises(LedgerError, match=r"cannot open the ledger .*gone/l\.db"):
        planner.plan(to_dask(rendered(start=8000)))


def test_smpp_sends_of_a_dask_frame_are_the_pandas_ones(
    dask_client: Any,
    sim: Simulator,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    creds = sim.credentials
    smpp = SmppConfig(port=sim.smpp_port, system_id=creds.username, password=creds.password, window=10)
    df = rendered(start=9000)
    with Ledger(tmp_path / "reference.db") as reference, Ledger(tmp_path / "dask.db") as ledger:
        start = len(sim.records())
        expected = campaign(reference, gateway, transport="smpp", smpp=smpp).send(df)
        middle = len(sim.records())
        got = campaign(ledger, gateway, transport="smpp", smpp=smpp).send(to_dask(df))
        assert figures(got) | {"accepted": 0, "rejected": 0} == figures(expected) | {"accepted": 0, "rejected": 0}
        assert got.accepted + got.rejected == 107 and sent_numbers(sim, middle) == sent_numbers(
            sim, start
        ) - sent_numbers(sim, middle)
        mine, theirs = rows_of(ledger, "d"), rows_of(reference, "d")  # the simulator's SMSC refuses one at random
        pd.testing.assert_frame_equal(mine.drop(columns=["state", "reason"]), theirs.drop(columns=["state", "reason"]))
        went = {"accepted": "sent", "rejected": "sent"}
        pd.testing.assert_series_equal(mine["state"].replace(went), theirs["state"].replace(went))


def test_what_the_workers_are_sent_shows_no_ledger_password() -> None:
    spec = Spec("c", "postgresql://app:s3cret-pw@db.example/plasgate", key="customer_id")
    assert "s3cret-pw" not in repr(spec) and "customer_id" in repr(spec)


def test_an_empty_dask_frame_plans_sends_and_collects_nothing(gateway: Gateway, tmp_path: Path) -> None:
    import dask

    empty = to_dask(rendered().iloc[:0])
    with Ledger(tmp_path / "l.db") as ledger, dask.config.set(scheduler="sync"):
        sender = campaign(ledger, gateway, price_per_segment=0.01)
        assert sender.plan(empty).same_as == {}
        summary = sender.send(empty)
        assert (summary.recipients, summary.cost, summary.projected_seconds) == (0, 0.0, 0.0)
        assert len(sender.collect(empty).compute()) == 0


KILLED_ROWS = 5000
KILLED_SENDER = textwrap.dedent("""
    import sys
    import dask
    import dask.dataframe as dd
    import pandas as pd
    from plasgate_nb.campaign import Campaign
    from plasgate_nb.gateway import Gateway
    from plasgate_nb.ledger import Ledger

    url, key, secret, ledger, rows = sys.argv[1:6]
    rows = int(rows)
    df = pd.DataFrame({"msisdn": [f"8551{i:07d}" for i in range(rows)],
                       "content": [f"Hello customer {i}, code #ma#K{i}#ma#" for i in range(rows)]},
                      index=[f"c{i}" for i in range(rows)])
    gateway = Gateway(base_url=url, private_key=key, secret=secret, sender="SMS Info", max_in_flight=4,
                      rate_limits={"batch": None})
    campaign = Campaign("crash-test", gateway=gateway, ledger=Ledger(ledger, lease_ttl=5), max_recipients=100,
                        progress=False)
    with dask.config.set(scheduler="sync"):
        print(campaign.send(dd.from_pandas(df, npartitions=5, sort=False), wait=60))
""")


@pytest.mark.slow
def test_a_dask_send_killed_mid_send_resumes_sending_each_message_at_most_once(tmp_path: Path) -> None:
    ledger_path = tmp_path / "crash.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLASGATE_")}
    with Simulator(SimulatorConfig(seed=2, rate_limits=RateLimits.off()), mode="thread") as sim:
        creds = sim.credentials
        args = [sys.executable, "-c", KILLED_SENDER, sim.url, creds.private_key, creds.secret, str(ledger_path)]
        kills = 0
        for threshold in (700, 2100, 3600):  # in the first, second and third partitions
            proc = subprocess.Popen([*args, str(KILLED_ROWS)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while sim.state()["records"] < threshold and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.communicate(timeout=60)
        final = subprocess.run([*args, str(KILLED_ROWS)], env=env, capture_output=True, timeout=300, check=False)
        assert final.returncode == 0, final.stderr.decode()[-2000:]
        sent = Counter(r["to"] for r in sim.records())
    assert kills >= 1
    assert max(sent.values()) == 1, "a message reached the gateway twice"
    with Ledger(ledger_path) as ledger:
        view = ledger.messages("crash-test").set_index("msisdn")
        assert ledger.lease_holder("crash-test") is None
    assert len(view) == KILLED_ROWS
    assert set(view["state"]) <= {"accepted", "uncertain"}
    assert all(sent[number] == 1 for number in view.index[view["state"] == "accepted"])
    assert (view["state"] == "uncertain").sum() <= kills * 4 * 100  # only the requests then in flight


def test_prepare_render_send_collect_on_dask_is_the_pandas_pipeline(
    dask_client: Any,
    sim: Simulator,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    from plasgate_nb import prepare_audience, render_messages

    n = 150
    phones = [f"012 {100 + i:03d} {i % 7:03d}" for i in range(n)]
    phones[40] = phones[3]  # a duplicate two partitions later
    phones[90] = "12"  # invalid
    customers = pd.DataFrame(
        {"phone": phones, "name": [f"Dara {i}" for i in range(n)], "coupon": [f"K{i:04d}" for i in range(n)]},
        index=pd.Index([f"p{i}" for i in range(n)], name="customer"),
    )
    template = "Hi {{ name }}, your code is {{ coupon }}"

    def pipeline(frame: Any) -> Any:
        return render_messages(prepare_audience(frame), template, mask=["coupon"])

    with Ledger(tmp_path / "reference.db") as reference, Ledger(tmp_path / "dask.db") as ledger:
        expected_frame = pipeline(customers)
        expected = campaign(reference, gateway, price_per_segment=0.01).send(expected_frame)
        rendered_ddf = pipeline(to_dask(customers))
        sender = campaign(ledger, gateway, price_per_segment=0.01)
        got = sender.send(rendered_ddf)
        assert figures(got) == figures(expected)
        assert (got.accepted, got.skipped_reasons) == (148, {"duplicate": 1, "invalid": 1})
        collected = sender.collect(rendered_ddf).compute()
        want = campaign(reference, gateway, price_per_segment=0.01).collect(expected_frame)
        columns = ["send_state", "segments", "cost", "reason"]
        pd.testing.assert_frame_equal(collected[columns], want[columns], check_dtype=False, check_index_type=False)


def test_the_accessor_sends_and_collects_a_dask_frame_as_campaign_does(
    dask_client: Any,
    sim: Simulator,
    gateway: Gateway,
    tmp_path: Path,
) -> None:
    df = rendered(start=5000)
    ddf = to_dask(df)
    with Ledger(tmp_path / "reference.db") as reference, Ledger(tmp_path / "accessor.db") as ledger:
        expected = campaign(reference, gateway).send(df)
        sender = campaign(ledger, gateway)
        first, again = ddf.sms.send(sender), ddf.sms.send(sender)
        assert figures(first) == figures(expected)
        assert (again.recipients, again.already_sent) == (0, first.accepted)
        results = ddf.sms.collect(sender)
        assert isinstance(results, dd.DataFrame)  # lazy, as collect is on a Dask frame
        got = results.compute()
        want = campaign(reference, gateway).collect(df)
        assert got["send_state"].value_counts().to_dict() == want["send_state"].value_counts().to_dict()
        pd.testing.assert_series_equal(
            got["send_state"].sort_index(), want["send_state"].sort_index(), check_dtype=False, check_index_type=False
        )


@pytest.mark.parametrize("seed", range(5))
def test_repeated_values_are_those_found_more_than_once_across_the_pieces(seed: int) -> None:
    import numpy as np

    from plasgate_nb._dask._partitions import repeated_values

    rng = np.random.default_rng(seed)
    pieces = [rng.integers(0, 400, rng.integers(0, 60)).astype(np.uint64) for _ in range(7)]
    values, counts = np.unique(np.concatenate(pieces), return_counts=True)
    given = list(pieces)
    np.testing.assert_array_equal(repeated_values(given), values[counts > 1])
    assert given == []  # the pieces are let go as they are joined
    assert len(repeated_values([np.arange(5, dtype=np.uint64)])) == 0

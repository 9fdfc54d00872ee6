"""End-to-end tests of Campaign over real sockets against the simulator: exactly once, faults, bad input."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from plasgate_nb.campaign import Campaign
from plasgate_nb.errors import AudienceError, ConfigError, TemplateError
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig
from tests.conftest import gateway_for
from tests.test_ledger import url  # noqa: F401 (fixture: a fresh SQLite file or PostgreSQL schema)


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(seed=7, rate_limits=RateLimits.off(), callback_retry_delay=0.05)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


@pytest.fixture
def gateway(sim: Simulator) -> Gateway:
    sim.clear_faults()
    return gateway_for(sim, read_timeout=2.0, max_retry_wait=1.0, default_retry_after=0.2)


def frame(n: int, *, start: int = 0, grouped: bool = False) -> pd.DataFrame:
    """A rendered frame of n rows with distinct numbers (personalized unless ``grouped``)."""
    numbers = [f"85512{start + i:06d}" for i in range(n)]
    content = ["Same offer for all" if grouped else f"Hi #{start + i}, code #ma#C{start + i}#ma#" for i in range(n)]
    return pd.DataFrame(
        {"msisdn": numbers, "content": content}, index=pd.Index([f"cust{start + i}" for i in range(n)], name="customer")
    )


def sent_numbers(sim: Simulator, since: int) -> Counter[str]:
    return Counter(r["to"] for r in sim.records(offset=since))


def make(tmp_path: Path, gateway: Gateway, name: str = "c1", **kwargs: Any) -> Campaign:
    return Campaign(name, gateway=gateway, ledger=Ledger(tmp_path / "ledger.db"), progress=False, **kwargs)


@pytest.mark.parametrize("transport", ["batch", "single", "http"])
def test_send_delivers_each_row_once_and_rerun_sends_nothing(
    sim: Simulator, gateway: Gateway, tmp_path: Path, transport: str
) -> None:
    df = frame(30)
    before = len(sim.records())
    campaign = make(tmp_path, gateway, transport=transport)
    summary = campaign.send(df)
    assert (summary.accepted, summary.rejected, summary.uncertain) == (30, 0, 0)
    assert sent_numbers(sim, before) == Counter(df["msisdn"])
    again = campaign.send(df)
    assert (again.recipients, again.already_sent) == (0, 30)
    assert len(sim.records()) == before + 30
    view = campaign.to_frame().set_index("message_key")
    assert set(view["state"]) == {"accepted"}
    if transport != "batch":  # a single send's answer carries the message id
        assert view["message_id"].notna().all()


def test_grouped_content_goes_in_one_entry_and_masking_reaches_the_report(
    sim: Simulator, gateway: Gateway, tmp_path: Path
) -> None:
    before = len(sim.records())
    campaign = make(tmp_path, gateway)
    summary = campaign.send(frame(2500, start=100, grouped=True))
    assert summary.requests == 3  # 1,000 recipients per request
    records = sim.records(offset=before)
    assert len(records) == 2500
    masked = make(tmp_path, gateway, name="masked").send(frame(1, start=9000))
    assert masked.accepted == 1
    record = sim.records()[-1]
    assert record["content_report"] == "Hi #9000, code ******"
    assert record["delivered_text"] == "Hi #9000, code C9000"


def test_dry_run_sends_nothing_and_projects_duration(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    before = len(sim.records())
    limited = Gateway(
        base_url=gateway.base_url, private_key=gateway.private_key, secret=gateway.secret, sender=gateway.sender
    )
    campaign = make(tmp_path, limited, price_per_segment=0.01)
    summary = campaign.send(frame(2500), dry_run=True)
    assert summary.dry_run and summary.requests == 3 and summary.recipients == 2500
    assert summary.cost == pytest.approx(2500 * 0.01)
    assert summary.projected_seconds == 0.0  # 3 requests fit in one minute of batch-send's 100/min
    singles = make(tmp_path, limited, name="c-single", transport="single").send(frame(450), dry_run=True)
    assert (singles.requests, singles.projected_seconds) == (450, 120.0)  # 200/min: 200 now, 200 at 60 s, 50 at 120 s
    assert "projected duration under the gateway's rate limits 120 s" in str(singles)
    assert len(sim.records()) == before
    assert campaign.status()["total"] == 0
    assert "would send 2500" in str(summary)


def test_rows_skipped_by_the_audience_are_not_sent(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    df = frame(4, start=200)
    df["audience_status"] = ["ok", "invalid", "ok", "duplicate"]
    df.loc[df.index[1], "msisdn"] = None
    before = len(sim.records())
    summary = make(tmp_path, gateway).send(df)
    assert summary.accepted == 2
    assert summary.skipped_reasons == {"invalid": 1, "duplicate": 1}
    assert len(sim.records()) == before + 2


def test_plan_then_send_and_resume_after_a_crash(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    campaign = make(tmp_path, gateway)
    df = frame(4, start=1100)
    before = len(sim.records())
    planned = campaign.plan(df)
    assert planned.dry_run and campaign.status()["planned"] == 4
    assert len(sim.records()) == before  # planning sends nothing
    # a crash right after two rows were marked submitting (their request may or may not have left)
    campaign.ledger.mark_submitting(campaign.name, ["cust1100", "cust1101"], batch_id="crashed")
    assert campaign.resume() == 2
    assert campaign.status()["uncertain"] == 2
    summary = campaign.send(df)
    assert (summary.accepted, summary.already_sent) == (2, 2)
    assert sorted(r["to"] for r in sim.records(offset=before)) == ["85512001102", "85512001103"]


def test_changed_row_not_yet_sent_goes_out_as_it_is_now(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    campaign = make(tmp_path, gateway)
    df = frame(3, start=1200)
    campaign.plan(df)
    fixed = df.copy()
    fixed.loc["cust1201", "content"] = "Hi #1201, the typo is fixed, code #ma#C1201#ma#"
    before = len(sim.records())
    summary = campaign.send(fixed)
    assert (summary.accepted, summary.replanned, summary.changed) == (3, 1, ())
    sent = {r["to"]: r["content"] for r in sim.records(offset=before)}
    assert sent["85512001201"] == fixed.loc["cust1201", "content"]
    assert "not sent before and changed since planned (sent as they are now) 1" in str(summary)


def test_rejected_rows_are_resent_only_when_asked(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    wrong = Gateway(
        base_url=gateway.base_url, private_key=gateway.private_key, secret="not-the-secret", sender=gateway.sender
    )
    df = frame(3, start=1300)
    first = make(tmp_path, wrong).send(df)
    assert first.rejected == 3
    fixed = make(tmp_path, gateway)  # the credentials are fixed; the ledger remembers the rejection
    before = len(sim.records())
    assert fixed.send(df).recipients == 0
    assert len(sim.records()) == before
    again = fixed.send(df, resend_rejected=["cust1300"])
    assert again.accepted == 1 and [r["to"] for r in sim.records(offset=before)] == ["85512001300"]
    rest = fixed.send(df, resend_rejected=True)
    assert rest.accepted == 2 and sent_numbers(sim, before) == Counter(df["msisdn"])


def test_progress_bar_counts_every_recipient(
    sim: Simulator, gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign = Campaign("bar", gateway=gateway, ledger=Ledger(tmp_path / "ledger.db"), max_recipients=10)
    campaign.send(frame(35, start=1400))
    err = capsys.readouterr().err
    assert "sending bar" in err and "35/35" in err


def test_changed_row_is_reported_not_resent(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    campaign = make(tmp_path, gateway)
    df = frame(3, start=300)
    campaign.send(df)
    changed = df.copy()
    changed.loc["cust301", "content"] = "A different text"
    before = len(sim.records())
    summary = campaign.send(changed)
    assert summary.changed == ("cust301",)
    assert len(sim.records()) == before


@pytest.mark.parametrize("kind", ["error_after", "drop_after", "delay_after"])
def test_ambiguous_failures_become_uncertain_and_are_not_resent(
    sim: Simulator, gateway: Gateway, tmp_path: Path, kind: str
) -> None:
    sim.set_faults(Fault(kind, route="batch", count=1, delay=5.0))
    campaign = make(tmp_path, gateway)
    df = frame(5, start=400)
    before = len(sim.records())
    summary = campaign.send(df)
    assert summary.uncertain == 5
    # the gateway did accept them: they are in its record exactly once
    assert sent_numbers(sim, before) == Counter(df["msisdn"])
    view = campaign.to_frame()
    assert set(view["state"]) == {"uncertain"} and view["reason"].notna().all()
    again = campaign.send(df)
    assert again.recipients == 0
    assert sent_numbers(sim, before) == Counter(df["msisdn"])


def test_uncertain_rows_are_resent_only_when_asked(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    sim.set_faults(Fault("error_after", route="batch", count=1))
    campaign = make(tmp_path, gateway)
    df = frame(2, start=500)
    campaign.send(df)
    before = len(sim.records())
    summary = campaign.send(df, resend_uncertain=["cust500"])
    assert summary.accepted == 1
    assert [r["to"] for r in sim.records(offset=before)] == ["85512000500"]


def test_a_503_is_uncertain_even_before_processing_and_resent_only_when_asked(
    sim: Simulator, gateway: Gateway, tmp_path: Path
) -> None:
    """The client cannot tell a 503 before processing from one after accepting: it never resends it itself."""
    sim.set_faults(Fault("error_before", route="batch", count=1, status=503))
    df = frame(4, start=600)
    before = len(sim.records())
    campaign = make(tmp_path, gateway)
    assert campaign.send(df).uncertain == 4
    assert sent_numbers(sim, before) == Counter()
    assert campaign.send(df, resend_uncertain=True).accepted == 4
    assert sent_numbers(sim, before) == Counter(df["msisdn"])


def test_429_storm_leaves_rows_planned_for_the_next_send(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    sim.set_faults(Fault("throttle", route="batch", count=20))
    campaign = make(tmp_path, gateway)
    df = frame(3, start=700)
    summary = campaign.send(df)
    assert summary.retry_later == 3 and summary.accepted == 0
    assert set(campaign.to_frame()["state"]) == {"planned"}
    sim.clear_faults()
    before = len(sim.records())
    assert campaign.send(df).accepted == 3
    assert sent_numbers(sim, before) == Counter(df["msisdn"])


def test_gateway_refusal_is_rejected_with_its_reason(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    unapproved = Gateway(
        base_url=gateway.base_url,
        private_key=gateway.private_key,
        secret=gateway.secret,
        sender="NOTAPPROVED",
        rate_limits={"batch": None},
    )
    summary = make(tmp_path, unapproved).send(frame(2, start=800))
    assert summary.rejected == 2
    view = make(tmp_path, unapproved).to_frame()
    assert set(view["state"]) == {"rejected"}
    assert view["response_status"].eq(400).all()


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        (lambda df: df.assign(msisdn=["85512", *df["msisdn"][1:]]), AudienceError, "cust0"),
        (lambda df: df.assign(content=["", *df["content"][1:]]), TemplateError, "cust0"),
        (lambda df: df.set_axis(["a", "a", "b"]), AudienceError, "duplicate"),
        (lambda df: df.drop(columns="msisdn"), AudienceError, "msisdn"),
    ],
)
def test_bad_input_names_the_rows_and_sends_nothing(
    sim: Simulator, gateway: Gateway, tmp_path: Path, change: Any, error: type[Exception], words: str
) -> None:
    before = len(sim.records())
    campaign = make(tmp_path, gateway)
    with pytest.raises(error, match=words):
        campaign.send(change(frame(3)))
    assert len(sim.records()) == before
    assert campaign.status()["total"] == 0


def test_bad_settings_are_refused_before_sending(
    sim: Simulator, gateway: Gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long_sender = Gateway(base_url=gateway.base_url, private_key="k", secret="s", sender="A sender too long")
    with pytest.raises(ConfigError, match="11"):
        make(tmp_path, long_sender).send(frame(1))
    for name in ("PLASGATE_PRIVATE_KEY", "PLASGATE_SECRET"):
        monkeypatch.delenv(name, raising=False)
    missing = Gateway(base_url=gateway.base_url, sender="SMS Info")
    with pytest.raises(ConfigError, match="PLASGATE_PRIVATE_KEY"):
        make(tmp_path, missing).send(frame(1))


def test_no_secret_in_logs_reprs_errors_or_ledger(
    sim: Simulator, gateway: Gateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_secret, wrong_password = "wrong$secret-7f3a", "wrong$password-9c1e"
    secrets = [gateway.private_key, gateway.secret, gateway.password, wrong_secret, wrong_password]
    caplog.set_level(logging.DEBUG)
    sim.set_faults(Fault("error_after", route="rest", count=1))
    campaign = make(tmp_path, gateway, transport="single")
    campaign.send(frame(3, start=900))
    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(campaign), repr(gateway), repr(campaign.ledger), str(campaign.send(frame(3, start=900)))]
    http = make(tmp_path, gateway, name="http", transport="http")  # username and password travel in the form
    texts.append(str(http.send(frame(3, start=960))))
    bad = Gateway(
        base_url=gateway.base_url, private_key=gateway.private_key, secret=wrong_secret, sender=gateway.sender
    )
    texts.append(str(make(tmp_path, bad, name="bad").send(frame(1, start=950))))
    texts.append(make(tmp_path, bad, name="bad").to_frame().to_csv())
    bad_http = Gateway(
        base_url=gateway.base_url, username=gateway.username, password=wrong_password, sender=gateway.sender
    )
    texts.append(make(tmp_path, bad_http, name="bad-http", transport="http").send(frame(1, start=970)).__str__())
    unreachable = Gateway(
        base_url="http://127.0.0.1:9",
        private_key=gateway.private_key,
        secret=gateway.secret,
        sender=gateway.sender,
        max_retries=0,
    )
    texts.append(str(make(tmp_path, unreachable, name="down").send(frame(1, start=980))))
    for broken in ("http://[bad", "ftp://example.com", "http://host:99999"):
        with pytest.raises(ConfigError) as info:
            Gateway(base_url=broken, private_key=gateway.private_key, secret=gateway.secret, sender=gateway.sender)
        texts += [str(info.value), repr(info.value)]
    texts += [record.getMessage() for record in caplog.records]
    for name in ("c1", "http", "bad", "bad-http", "down"):
        texts.append(campaign.ledger.messages(name).to_csv())
        texts.append(campaign.ledger.events(name).to_csv())
    # every file of the ledger: recent rows sit in the WAL until a checkpoint
    raw = b"".join(path.read_bytes() for path in tmp_path.glob("ledger.db*"))
    assert len(list(tmp_path.glob("ledger.db*"))) >= 2
    for secret in secrets:
        assert secret
        assert not any(secret in text for text in texts), secret
        assert secret.encode() not in raw


def _as_float(keys: pd.Series) -> pd.Series:
    return keys.astype("float64")


def _as_text(keys: pd.Series) -> pd.Series:
    return keys.astype(str)


def _as_padded_text(keys: pd.Series) -> pd.Series:
    return " " + keys.astype(str) + "\t"


def _as_excel_text(keys: pd.Series) -> pd.Series:
    return keys.astype(str) + ".0"


def _as_nullable(keys: pd.Series) -> pd.Series:
    return keys.astype("Int64")


def _as_numpy_objects(keys: pd.Series) -> pd.Series:
    return pd.Series([np.int64(k) for k in keys], index=keys.index, dtype=object)


@pytest.mark.filterwarnings("ignore::plasgate_nb.io.NumericTextWarning")  # numeric keys on purpose (it warns)
@pytest.mark.parametrize(
    "convert", [_as_float, _as_text, _as_padded_text, _as_excel_text, _as_nullable, _as_numpy_objects]
)
def test_changing_the_key_column_dtype_sends_nothing_new(
    sim: Simulator, gateway: Gateway, tmp_path: Path, convert: Any
) -> None:
    df = frame(6, start=3000).assign(customer_id=range(101, 107))
    before = len(sim.records())
    assert make(tmp_path, gateway, key="customer_id").send(df).accepted == 6
    again = df.assign(customer_id=convert(df["customer_id"]))
    summary = make(tmp_path, gateway, key="customer_id").send(again)
    assert (summary.recipients, summary.already_sent) == (0, 6)
    assert summary.same_as == {}
    assert sent_numbers(sim, before) == Counter(df["msisdn"])  # the simulator got each number once
    assert sorted(make(tmp_path, gateway).to_frame()["message_key"]) == [str(k) for k in range(101, 107)]


def test_an_index_key_that_turned_float_sends_nothing_new(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    df = frame(4, start=3100).set_axis(pd.Index([7, 8, 9, 10]))
    before = len(sim.records())
    assert make(tmp_path, gateway).send(df).accepted == 4
    summary = make(tmp_path, gateway).send(df.set_axis(df.index.astype("float64")))
    assert (summary.recipients, summary.already_sent) == (0, 4)
    assert sent_numbers(sim, before) == Counter(df["msisdn"])


def test_same_number_and_text_under_another_key_is_reported_not_resent(
    sim: Simulator, gateway: Gateway, tmp_path: Path
) -> None:
    df = frame(5, start=3200)
    before = len(sim.records())
    assert make(tmp_path, gateway).send(df).accepted == 5
    rekeyed = df.set_axis(pd.Index([f"new{i}" for i in range(5)]))  # the same people and texts, other keys
    rekeyed.loc["new4", "content"] = "A new text for the last one"
    summary = make(tmp_path, gateway).send(rekeyed)
    assert summary.same_as == {f"new{i}": f"cust{3200 + i}" for i in range(4)}
    assert (summary.recipients, summary.accepted, summary.already_sent) == (1, 1, 0)
    assert sent_numbers(sim, before) == Counter(df["msisdn"]) + Counter([df["msisdn"].iloc[4]])
    assert summary.to_dict()["same_as"]["new0"] == "cust3200"
    assert "same number and text as another message (not sent; allow_repeat=True sends them) 4: new0 (as cust3200)" in (
        str(summary)
    )
    view = make(tmp_path, gateway).to_frame().set_index("message_key")
    assert (
        view.loc["new0", "state"] == "planned"
        and "same number and text as message 'cust3200'" in (view.loc["new0", "reason"])
    )
    again = make(tmp_path, gateway).send(rekeyed)  # a re-run reports them again, sends nothing
    assert (again.recipients, len(again.same_as)) == (0, 4)
    allowed = make(tmp_path, gateway).send(rekeyed, allow_repeat=True)
    assert (allowed.accepted, allowed.same_as) == (4, {})
    assert sent_numbers(sim, before) == Counter(df["msisdn"]) + Counter(df["msisdn"])
    assert make(tmp_path, gateway).to_frame().set_index("message_key").loc["new0", "reason"] is None


def test_repeats_within_one_frame_and_of_uncertain_rows_are_not_sent(
    sim: Simulator, gateway: Gateway, tmp_path: Path
) -> None:
    df = frame(3, start=3300)
    twin = df.iloc[[0]].set_axis(["twin"])  # the first row again under another key
    masked = df.iloc[[1]].set_axis(["other-code"]).assign(content="Hi #3301, code #ma#ANOTHER#ma#")
    before = len(sim.records())
    campaign = make(tmp_path, gateway)
    summary = campaign.send(pd.concat([df, twin, masked]))
    # masked values never reach the ledger: a text differing only inside #ma# is the same text to it
    assert summary.same_as == {"twin": "cust3300", "other-code": "cust3301"}
    assert summary.accepted == 3 and sent_numbers(sim, before) == Counter(df["msisdn"])
    sim.set_faults(Fault("error_after", route="batch", count=1))
    late = frame(1, start=3350)
    assert make(tmp_path, gateway).send(late).uncertain == 1
    sim.clear_faults()
    repeat = make(tmp_path, gateway).send(late.set_axis(["late-again"]))
    assert (repeat.recipients, repeat.same_as) == (0, {"late-again": "cust3350"})
    dry = make(tmp_path, gateway).send(late.set_axis(["late-dry"]), dry_run=True)
    assert (dry.recipients, dry.same_as) == (0, {"late-dry": "cust3350"})
    assert "late-dry" not in set(make(tmp_path, gateway).to_frame()["message_key"])  # a dry run writes nothing


@pytest.mark.parametrize("price", [float("nan"), float("inf"), -0.012])
def test_a_price_must_be_a_finite_number_at_least_zero(gateway: Gateway, tmp_path: Path, price: float) -> None:
    with pytest.raises(ConfigError, match="price_per_segment must be a finite number >= 0"):
        make(tmp_path, gateway, price_per_segment=price)
    assert Ledger(tmp_path / "ledger.db").campaign_token("c1") is None  # refused before the campaign was opened
    summary = make(tmp_path, gateway, price_per_segment=0.0).send(frame(2, start=3400), dry_run=True)
    assert summary.cost == 0.0


@pytest.mark.parametrize(
    ("where", "error", "words"),
    [
        ("content", TemplateError, r"control characters .*'cust3501' \(control character U\+0000\)"),
        ("content", TemplateError, r"'cust3501' \(control character U\+001B\)"),
        ("key", AudienceError, r"control characters in rows \['cust3501'\]"),
    ],
)
def test_control_characters_are_refused_before_anything_is_planned(
    sim: Simulator,
    gateway: Gateway,
    url: str,  # noqa: F811
    where: str,
    error: type[Exception],
    words: str,
) -> None:
    """On SQLite NUL used to be stored and sent, on PostgreSQL it broke planning with a raw psycopg DataError."""
    df = frame(3, start=3500)
    char = "\x1b" if "001B" in words else "\x00"
    if where == "content":
        df.loc["cust3501", "content"] = f"Hi{char}there"
    else:
        df["id"] = ["id0", f"id{char}1", "id2"]
    campaign = Campaign(
        "ctl", gateway=gateway, ledger=Ledger(url), progress=False, key="id" if where == "key" else None
    )
    before = len(sim.records())
    for action in (campaign.send, campaign.plan):
        with pytest.raises(error, match=words):
            action(df)
    assert campaign.status()["total"] == 0
    assert len(sim.records()) == before
    campaign.ledger.close()

"""The README's first command: the demo runs end to end on the simulator, and a second run sends nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb.cli import main
from plasgate_nb.demo import (
    CAMPAIGN,
    CHARTS,
    FOLLOW_UP,
    OPT_OUT_SHARE,
    SEED,
    compose_sample,
    find_sample_data,
    run_demo,
)
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator.delivery import opt_out_reply

PNG = b"\x89PNG\r\n\x1a\n"


def test_sample_is_composed_with_masked_coupons_in_both_languages(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="plasgate_nb"):
        rendered = compose_sample(find_sample_data())  # warnings are errors here: the sample raises none
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nor logs one
    ok = rendered[rendered["audience_status"] == "ok"]
    assert set(ok["encoding"]) == {"GSM-7", "UCS-2"}
    assert (ok["template"] == ok["language"]).all()  # one template per language
    assert ok.loc[ok["language"] == "km", "content"].str.startswith("សួស្តី").all()
    customers = pd.read_csv(find_sample_data() / "customers.csv", dtype=str)
    refused = customers.loc[customers["opt_in"] == "false", "customer_id"]
    assert not ok["customer_id"].isin(refused).any()  # nobody without consent
    assert (rendered.loc[rendered["customer_id"].isin(refused), "audience_status"] != "ok").all()
    assert len(ok) == 2024
    assert ok["content"].str.contains("#ma#").all()
    assert not ok["content_report"].str.contains("SPRING-").any()
    assert (ok["content_report"].str.contains(r"\*\*\*\*\*\*")).all()


@pytest.mark.slow
def test_demo_runs_end_to_end_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines: list[str] = []
    first = run_demo(tmp_path, wait=40, say=lines.append)
    assert first.summary.accepted == first.summary.recipients > 2000
    assert first.summary.skipped > 0 and first.summary.rejected == 0
    results = pd.read_csv(tmp_path / "demo_results.csv")
    assert len(results) == 2400
    delivered = (results["delivery_status"] == "DELIVRD").sum()
    assert delivered > 0.8 * first.summary.accepted
    ledger_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("demo_ledger.db*"))
    assert b"SPRING-" not in ledger_bytes  # masked coupons never reach the ledger
    charts = [tmp_path / "demo_results.png", *(tmp_path / name for name in CHARTS)]
    assert [p.name for p in charts] == [
        "demo_results.png",
        "demo_status_by_carrier.png",
        "demo_time_to_deliver.png",
        "demo_funnel.png",
    ]
    for chart in charts:
        assert chart.read_bytes().startswith(PNG) and chart.stat().st_size > 10_000, chart
        assert any(line.startswith(f"wrote {chart} (") for line in lines), chart  # each path is printed
    assert first.files == [tmp_path / "demo_results.csv", *charts]
    assert any("delivery by carrier" in line for line in lines)
    with Ledger(tmp_path / "demo_ledger.db") as ledger:
        states = ledger.summary(CAMPAIGN)
        listed = ledger.suppressions()
        sent = ledger.messages(CAMPAIGN, columns=["msisdn", "delivery_status"])
        assert ledger.messages(FOLLOW_UP).empty  # the follow-up was a dry run: nothing planned
    assert states["accepted"] == first.summary.accepted

    # opt-outs: the handsets the seed picks replied STOP or ឈប់ to a delivered message, over HTTP MO
    delivered = set(sent.loc[sent["delivery_status"] == "DELIVRD", "msisdn"])
    expected = {n: opt_out_reply(n, share=OPT_OUT_SHARE, seed=SEED) for n in delivered}
    expected = {n: text for n, text in expected.items() if text}
    stopped = dict(zip(listed["msisdn"], listed["text"], strict=True))
    assert (listed["source"] == "reply").all() and len(stopped) >= 0.9 * len(expected) >= 5
    assert all(expected[n] == text for n, text in stopped.items())  # only numbers the rule picks, their keyword
    assert set(stopped.values()) == {"STOP", "ឈប់"}
    english = sum(text == "STOP" for text in stopped.values())
    stops = (
        f"opt-out replies: {len(stopped)} number(s) replied STOP ({english} in English, "
        f"{len(stopped) - english} in Khmer ឈប់); on the suppression list: {len(stopped)}"
    )
    assert stops in lines
    on_file = int((compose_sample(find_sample_data())["audience_status"] == "suppressed").sum())
    follow_up = (
        f"follow-up campaign {FOLLOW_UP!r} (dry run): would send {first.summary.accepted - len(stopped)}; "
        f"suppressed {on_file + len(stopped)} ({on_file} on opt_out.csv, {len(stopped)} replied STOP or ឈប់)"
    )
    assert follow_up in lines

    # the second run goes through the command line: it resumes from the ledger and sends nothing new
    assert main(["demo", "--output", str(tmp_path), "--wait", "5", "--json"]) == 0
    out = capsys.readouterr().out
    second = json.loads(out.strip().splitlines()[-1])
    assert second["recipients"] == second["requests"] == 0
    # Campaign.send (main) counts the sent rows of numbers suppressed since as skipped 'suppressed', not as
    # already sent; the ledger's states below prove nothing moved either way
    assert second["already_sent"] in (first.summary.accepted, first.summary.accepted - len(stopped))
    assert "nothing new to send" in out and f"results in {tmp_path}/" in out
    assert f"wrote {tmp_path / 'demo_funnel.png'} (send funnel)" in out
    assert stops in out and follow_up in out  # the stored opt-outs still leave those numbers out
    with Ledger(tmp_path / "demo_ledger.db") as ledger:
        assert ledger.summary(CAMPAIGN) == states  # no row moved: nothing was sent again

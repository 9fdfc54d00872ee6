"""The simulator's handsets reply STOP or ឈប់ for a share of numbers, and the next campaign leaves them out.

Which numbers opt out is a hash of the seed and the number (``opt_out_reply``), so the test knows them in
advance; the replies travel over real sockets (HTTP MO posts to the receiver's reply URL, or deliver_sm to
its bound SMPP receiver) and reach the ledger's suppression list.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from plasgate_nb import CallbackServer, Campaign, Ledger, SmppConfig
from plasgate_nb.errors import ConfigError
from plasgate_nb.simulator import Account, RateLimits, Simulator, SimulatorConfig
from plasgate_nb.simulator.cli import describe
from plasgate_nb.simulator.delivery import OPT_OUT_TEXTS, opt_out_reply
from tests.conftest import gateway_for, wait_for

DELIVERED = {"DELIVRD", "UNKNOWN_THEN_DELIVRD", "ENROUTE_THEN_DELIVRD"}
SHARE = 0.2
SEED = 7


def customers(n: int, start: int = 0) -> pd.DataFrame:
    """``n`` customers with distinct Cellcard numbers."""
    ids = range(start, start + n)
    return pd.DataFrame({"customer_id": [f"C{i:04d}" for i in ids], "msisdn": [f"8551200{i:04d}" for i in ids]}).assign(
        content=lambda d: "Hello " + d["customer_id"]
    )


def campaign(sim: Simulator, ledger: Ledger, name: str, **options: Any) -> Campaign:
    return Campaign(name, gateway=gateway_for(sim), ledger=ledger, key="customer_id", progress=False, **options)


def expected_opt_outs(sim: Simulator, since: int = 0) -> dict[str, str]:
    """Number -> keyword of every delivered recipient whose number opts out by the rule."""
    config = sim.config
    out = {}
    for record in sim.records(offset=since):
        text = opt_out_reply(record["to"], share=config.opt_out_replies, seed=config.seed)
        if text is not None and record["outcome"] in DELIVERED:
            out[record["to"]] = text
    return out


def test_the_rule_is_deterministic_per_number_and_seed() -> None:
    numbers = [f"8551{i:07d}" for i in range(20_000)]
    chosen = {n: opt_out_reply(n, share=SHARE, seed=SEED) for n in numbers}
    opted = {n: t for n, t in chosen.items() if t is not None}
    assert 0.18 < len(opted) / len(numbers) < 0.22
    assert set(opted.values()) == set(OPT_OUT_TEXTS) == {"STOP", "ឈប់"}
    assert 0.4 < sum(t == "STOP" for t in opted.values()) / len(opted) < 0.6
    assert {n: opt_out_reply(n, share=SHARE, seed=SEED) for n in reversed(numbers)} == chosen  # order-free
    other = {n for n in numbers if opt_out_reply(n, share=SHARE, seed=SEED + 1)}
    assert other != set(opted)  # another seed, other numbers
    smaller = {n for n in numbers if opt_out_reply(n, share=0.05, seed=SEED)}
    assert smaller < set(opted)  # a smaller share picks a subset
    assert not any(opt_out_reply(n, share=0.0, seed=SEED) for n in numbers[:1000])


def test_the_share_is_checked_and_off_by_default() -> None:
    assert SimulatorConfig().opt_out_replies == 0.0
    with pytest.raises(ConfigError, match="opt_out_replies"):
        SimulatorConfig(opt_out_replies=1.5)
    assert "mo_url" not in repr(Account(mo_url="http://127.0.0.1:1/r/secret-token"))
    config = SimulatorConfig(opt_out_replies=0.01, accounts=(Account(mo_url="http://x/mo"),))
    assert "0.01 of numbers reply STOP or ឈប់ (to the MO URL)" in describe(config)


def test_opt_outs_over_http_reach_the_suppression_list_and_the_next_campaign_skips_them(tmp_path: Path) -> None:
    df = customers(60)
    with Ledger(tmp_path / "l.db") as ledger, CallbackServer(ledger, mode="thread") as receiver:
        config = SimulatorConfig(
            seed=SEED,
            rate_limits=RateLimits.off(),
            clock_speed=50.0,
            callback_retry_delay=0.05,
            opt_out_replies=SHARE,
            accounts=(Account(mo_url=receiver.reply_url),),
        )
        with Simulator(config, mode="thread") as sim:
            first = campaign(sim, ledger, "first", receiver=receiver).send(df)
            assert first.accepted == 60
            expected = expected_opt_outs(sim)
            assert 5 <= len(expected) <= 20 and set(expected.values()) == {"STOP", "ឈប់"}
            wait_for(lambda: ledger.suppressed_numbers() == set(expected))
            sim.wait_idle(timeout=30)
            assert sim.state()["mo_http"]["acked"] == len(expected)
            replies = ledger.replies().set_index("msisdn")
            assert replies["text"].to_dict() == expected
            assert (replies["destination"] == sim.credentials.sender).all()

            before = len(sim.records())
            second = campaign(sim, ledger, "second")
            summary = second.send(df)
            assert summary.accepted == 60 - len(expected)
            assert summary.skipped_reasons == {"suppressed": len(expected)}
            sent = {r["to"] for r in sim.records(offset=before)}
            assert not sent & set(expected) and len(sent) == 60 - len(expected)


def test_opt_outs_without_an_mo_url_go_to_the_bound_smpp_receiver(tmp_path: Path) -> None:
    config = SimulatorConfig(
        seed=SEED,
        smpp=True,
        rate_limits=RateLimits.off(),
        clock_speed=50.0,
        callback_retry_delay=0.05,
        opt_out_replies=SHARE,
    )
    with Simulator(config, mode="thread") as sim, Ledger(tmp_path / "l.db") as ledger:
        creds = sim.credentials
        smpp = SmppConfig(port=sim.smpp_port, system_id=creds.username, password=creds.password, response_timeout=2.0)
        with CallbackServer(ledger, mode="thread", smpp=smpp) as receiver:
            assert campaign(sim, ledger, "first", receiver=receiver).send(customers(40, start=500)).accepted == 40
            expected = expected_opt_outs(sim)
            assert expected
            wait_for(lambda: ledger.suppressed_numbers() == set(expected))
        assert ledger.replies().set_index("msisdn")["text"].to_dict() == expected
        assert sim.state()["mo_http"]["attempts"] == 0  # nothing went over HTTP


def test_no_reply_when_the_share_is_zero(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger, CallbackServer(ledger, mode="thread") as receiver:
        account = Account(mo_url=receiver.reply_url)
        config = replace(
            SimulatorConfig(seed=SEED, clock_speed=50.0, rate_limits=RateLimits.off()), accounts=(account,)
        )
        with Simulator(config, mode="thread") as sim:
            assert campaign(sim, ledger, "first", receiver=receiver).send(customers(60)).accepted == 60
            sim.wait_idle(timeout=30)
            assert sim.state()["mo_http"]["attempts"] == 0
        assert ledger.replies().empty and not ledger.suppressed_numbers()

"""CLI faces of consent, pacing and experiments: --variant/--holdout, --cap, --quiet-hours, the suppression list."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb.cli import main
from plasgate_nb.commands._common import EXIT_BAD_INPUT, EXIT_OK
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import Simulator
from tests.test_cli import env, last_json, sim  # noqa: F401  (fixtures: a simulator and PLASGATE_* for it)


@pytest.fixture
def ab_files(tmp_path: Path) -> dict[str, Path]:
    customers = tmp_path / "customers.csv"
    ids = [f"C{i:03d}" for i in range(60)]
    pd.DataFrame({"customer_id": ids, "phone": [f"012 {i:03d} 500" for i in range(60)]}).to_csv(customers, index=False)
    (tmp_path / "a.j2").write_text("Offer A for {{ customer_id }}", encoding="utf-8")
    (tmp_path / "b.j2").write_text("Offer B for {{ customer_id }}", encoding="utf-8")
    return {"customers": customers, "a": tmp_path / "a.j2", "b": tmp_path / "b.j2", "ledger": tmp_path / "l.db"}


def ab_args(files: dict[str, Path], campaign: str, *extra: str) -> list[str]:
    return [
        "send",
        str(files["customers"]),
        "--variant",
        f"A={files['a']}",
        "--variant",
        f"B={files['b']}",
        "--key",
        "customer_id",
        "--campaign",
        campaign,
        "--ledger",
        str(files["ledger"]),
        "--json",
        *extra,
    ]


def test_variants_with_a_holdout_send_each_variant_and_never_the_holdout(
    sim: Simulator,  # noqa: F811
    env: dict[str, str],  # noqa: F811
    ab_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = len(sim.records())
    assert main(ab_args(ab_files, "ab", "--holdout", "0.2")) == EXIT_OK
    out = last_json(capsys.readouterr().out)
    held = out["skipped_reasons"]["holdout"]
    assert held > 0 and out["accepted"] == 60 - held
    texts = Counter(r["content"].split(" for ")[0] for r in sim.records(offset=before))
    assert set(texts) == {"Offer A", "Offer B"} and sum(texts.values()) == 60 - held
    with Ledger(ab_files["ledger"]) as ledger:
        assert ledger.summary("ab")["holdout"] == held
    assert main(ab_args(ab_files, "ab", "--holdout", "0.2")) == EXIT_OK  # rerun: same assignment, nothing new
    assert last_json(capsys.readouterr().out)["recipients"] == 0


def test_cap_and_suppression_list_leave_numbers_out_and_exit_0(
    sim: Simulator,  # noqa: F811
    env: dict[str, str],  # noqa: F811
    ab_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(ab_args(ab_files, "first")) == EXIT_OK
    capsys.readouterr()
    with Ledger(ab_files["ledger"]) as ledger:
        ledger.suppress(["012 000 500", "012 001 500"], reason="asked by phone")
    before = len(sim.records())
    assert main(ab_args(ab_files, "second", "--cap", "1/7D")) == EXIT_OK  # every number had one: all left out
    out = last_json(capsys.readouterr().out)
    assert out["skipped_reasons"] == {"suppressed": 2, "capped": 58} and len(sim.records()) == before
    assert main(ab_args(ab_files, "third", "--cap", "2/7D")) == EXIT_OK
    assert last_json(capsys.readouterr().out)["accepted"] == 58


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--cap", "2/soon", "frequency cap window"),
        ("--quiet-hours", "9pm-8am", "quiet hours"),
        ("--holdout", "1.5", "--holdout must be a share"),
    ],
)
def test_bad_rule_options_exit_2_with_one_line(
    env: dict[str, str],  # noqa: F811
    ab_files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    message: str,
) -> None:
    assert main(ab_args(ab_files, "bad", option, value)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not ab_files["ledger"].exists() or Ledger(ab_files["ledger"]).summary("bad")["total"] == 0

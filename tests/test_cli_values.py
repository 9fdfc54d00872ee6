"""Numbers the command line takes and prints: --price must be finite and >= 0, --json output is valid JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from plasgate_nb.cli import main
from plasgate_nb.commands._common import EXIT_BAD_INPUT, emit
from plasgate_nb.simulator import Simulator
from tests.test_cli import env, files, preview_args, send_args, sim  # noqa: F401 (fixtures)


def strict_json(text: str) -> Any:
    """Parse one line as JSON the way every other language does: NaN and Infinity are errors."""

    def refuse(name: str) -> Any:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("price", ["nan", "inf", "-inf", "-0.5"])
@pytest.mark.parametrize("command", ["send", "preview"])
def test_a_price_that_is_not_a_finite_number_at_least_zero_exits_2_in_one_line(
    command: str,
    price: str,
    sim: Simulator,  # noqa: F811
    env: dict[str, str],  # noqa: F811
    files: dict[str, Path],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = len(sim.records())
    args = send_args(files, f"--price={price}") if command == "send" else preview_args(files, f"--price={price}")
    assert main(args) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"plasgate-nb {command}: error: --price must be a finite number >= 0 (e.g. 0.012), not {float(price)!r}"
    ]
    assert len(sim.records()) == before


def test_report_json_is_valid_json_with_missing_rates_as_null(
    sim: Simulator,  # noqa: F811
    env: dict[str, str],  # noqa: F811
    files: dict[str, Path],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(send_args(files)) == 0
    capsys.readouterr()
    common = ["--campaign", "cli", "--ledger", str(files["ledger"]), "--json"]
    args = ["report", str(files["customers"]), "--key", "customer_id", "--by", "carrier"]
    assert main([*args, "--output", str(files["out"]), *common]) == 0
    out = strict_json(capsys.readouterr().out.strip().splitlines()[-1])
    unsent = [row for row in out["summary"] if row["sent"] == 0]  # the invalid number's group: no rate at all
    assert unsent and all(row["delivered_rate"] is None for row in unsent)


def test_emit_turns_every_non_finite_or_missing_number_into_null(capsys: pytest.CaptureFixture[str]) -> None:
    data = {
        "nan": float("nan"),
        "inf": math.inf,
        "numpy": [np.float64("-inf"), np.float32(1.5), np.int64(3), np.bool_(True)],
        "pandas": (pd.NA, pd.NaT),
        1: {"nested": float("nan")},
        "when": pd.Timestamp("2026-01-02", tz="UTC"),
    }
    emit(SimpleNamespace(json=True), data, "text")
    line = capsys.readouterr().out
    assert strict_json(line) == {
        "nan": None,
        "inf": None,
        "numpy": [None, 1.5, 3, True],
        "pandas": [None, None],
        "1": {"nested": None},
        "when": "2026-01-02 00:00:00+00:00",
    }


def test_rows_repeating_another_message_under_new_keys_exit_3_until_allowed(
    sim: Simulator,  # noqa: F811
    env: dict[str, str],  # noqa: F811
    files: dict[str, Path],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = len(sim.records())
    assert main(send_args(files)) == 0
    capsys.readouterr()
    rekeyed = pd.read_csv(files["customers"], dtype=str)
    rekeyed["customer_id"] = "N" + rekeyed["customer_id"]  # the CRM re-keyed everybody
    rekeyed.to_csv(files["customers"], index=False)
    assert main(send_args(files)) == 3
    captured = capsys.readouterr()
    assert strict_json(captured.out.strip().splitlines()[-1])["same_as"] == {"NC1": "C1", "NC2": "C2"}
    assert "2 repeat the number and text of another message under a new key" in captured.err
    assert len(sim.records()) == before + 2
    assert main(send_args(files, "--allow-repeat")) == 0
    assert strict_json(capsys.readouterr().out.strip().splitlines()[-1])["accepted"] == 2
    assert len(sim.records()) == before + 4

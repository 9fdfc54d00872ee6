"""``plasgate-nb suppressions``: list, add, remove and export the opt-out list; never create a ledger to list."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb.cli import main
from plasgate_nb.commands._common import EXIT_BAD_INPUT, EXIT_OK
from plasgate_nb.ledger import Ledger


def test_add_remove_export_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = tmp_path / "spring.db"
    add = tmp_path / "add.csv"
    add.write_text("phone,name\n012 345 678,Sokha\n+855 97 123 4567,Dara\n012345678,Sokha again\n", encoding="utf-8")
    remove = tmp_path / "remove.csv"
    remove.write_text("phone\n0971234567\n", encoding="utf-8")
    assert main(["suppressions", "--ledger", str(ledger), "--add", str(add), "--reason", "complaint"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "added 2, removed 0" in captured.out and "creating a new ledger" in captured.err
    out = tmp_path / "list.csv"
    code = main(["suppressions", "--ledger", str(ledger), "--remove", str(remove), "--export", str(out), "--json"])
    assert code == EXIT_OK
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data == {"added": 0, "removed": 1, "count": 1, "numbers": ["85512345678"]}
    exported = pd.read_csv(out, dtype=str)
    assert exported[["msisdn", "source", "text"]].values.tolist() == [["85512345678", "manual", "complaint"]]
    with Ledger(ledger) as led:
        assert led.suppressed_numbers() == {"85512345678"}


def test_listing_never_creates_a_ledger_and_bad_files_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.db"
    assert main(["suppressions", "--ledger", str(missing)]) == EXIT_BAD_INPUT
    assert f"--ledger file {missing} not found" in capsys.readouterr().err
    assert not missing.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("phone\n012 345 678\nnot a number\n", encoding="utf-8")
    assert main(["suppressions", "--ledger", str(missing), "--add", str(bad)]) == EXIT_BAD_INPUT
    assert "1 of 2 entries are not phone numbers: ['not a number']" in capsys.readouterr().err
    nophone = tmp_path / "nophone.csv"
    nophone.write_text("mobile\n012 345 678\n", encoding="utf-8")
    assert main(["suppressions", "--ledger", str(missing), "--add", str(nophone)]) == EXIT_BAD_INPUT
    assert "has no 'phone' column" in capsys.readouterr().err

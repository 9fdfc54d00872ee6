"""Tests of the plasgate-nb command line against the simulator: send, rerun, status, resume, collect, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb.cli import main
from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = "Hi {{ name }}, your code {{ code }}"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=3, rate_limits=RateLimits.off()), mode="thread") as simulator:
        yield simulator


@pytest.fixture
def env(sim: Simulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    creds = sim.credentials
    values = {
        "PLASGATE_BASE_URL": sim.url,
        "PLASGATE_PRIVATE_KEY": creds.private_key,
        "PLASGATE_SECRET": creds.secret,
        "PLASGATE_SENDER": creds.sender,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    customers = tmp_path / "customers.csv"
    pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3", "C4"],
            "name": ["Sokha", "Dara", "Vannak", "Chan"],
            "phone": ["012 345 678", "+855 97 123 4567", "not a number", "012345678"],
            "code": ["K1", "K2", "K3", "K4"],
        }
    ).to_csv(customers, index=False)
    template = tmp_path / "offer.j2"
    template.write_text(TEMPLATE, encoding="utf-8")
    return {"customers": customers, "template": template, "ledger": tmp_path / "cli.db", "out": tmp_path / "out.csv"}


def send_args(files: dict[str, Path], *extra: str) -> list[str]:
    return [
        "send",
        str(files["customers"]),
        "--template",
        str(files["template"]),
        "--mask",
        "code",
        "--key",
        "customer_id",
        "--campaign",
        "cli",
        "--ledger",
        str(files["ledger"]),
        "--json",
        *extra,
    ]


def last_json(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_send_then_rerun_sends_nothing(
    sim: Simulator, env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(sim.records())
    assert main(send_args(files, "--dry-run")) == 0
    dry = last_json(capsys.readouterr().out)
    assert dry["dry_run"] and dry["recipients"] == 2 and len(sim.records()) == before
    assert main(send_args(files)) == 0
    first = last_json(capsys.readouterr().out)
    assert first["accepted"] == 2 and first["skipped_reasons"] == {"invalid": 1, "duplicate": 1}
    records = sim.records(offset=before)
    assert sorted(r["to"] for r in records) == ["85512345678", "855971234567"]
    assert all(r["content_report"].endswith("your code ******") for r in records)
    assert main(send_args(files)) == 0
    again = last_json(capsys.readouterr().out)
    assert (again["recipients"], again["already_sent"]) == (0, 2)
    assert len(sim.records()) == before + 2


def test_status_resume_collect_report(
    sim: Simulator, env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    main(send_args(files))
    capsys.readouterr()
    common = ["--campaign", "cli", "--ledger", str(files["ledger"]), "--json"]
    assert main(["status", *common]) == 0
    assert last_json(capsys.readouterr().out)["states"]["accepted"] == 2
    assert main(["resume", *common]) == 0
    assert last_json(capsys.readouterr().out)["resumed"] == 0
    assert (
        main(["collect", str(files["customers"]), "--key", "customer_id", "--output", str(files["out"]), *common]) == 0
    )
    capsys.readouterr()
    collected = pd.read_csv(files["out"])
    assert collected["send_state"].tolist() == ["accepted", "accepted", "not_sent", "not_sent"]
    report = files["out"].with_name("report.csv")
    assert (
        main(
            [
                "report",
                str(files["customers"]),
                "--key",
                "customer_id",
                "--by",
                "carrier",
                "--output",
                str(report),
                *common,
            ]
        )
        == 0
    )
    out = last_json(capsys.readouterr().out)
    assert report.is_file() and report.with_suffix(".png").is_file()
    assert {row["carrier"] for row in out["summary"]} >= {"Cellcard", "Metfone"}


def test_bad_input_and_missing_credentials_exit_2_with_a_clear_message(
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = len(sim.records())
    files["template"].write_text("Hi {{ nmae }}", encoding="utf-8")
    assert main(send_args(files)) == 2
    assert "nmae" in capsys.readouterr().err
    files["template"].write_text(TEMPLATE, encoding="utf-8")
    monkeypatch.delenv("PLASGATE_SECRET")
    assert main(send_args(files)) == 2
    err = capsys.readouterr().err
    assert "PLASGATE_SECRET" in err and env["PLASGATE_PRIVATE_KEY"] not in err
    assert main(["status", "--campaign", "nope", "--ledger", str(files["ledger"])]) == 2
    assert "no campaign 'nope'" in capsys.readouterr().err
    assert len(sim.records()) == before


def test_help_lists_every_command_and_a_shell_pipeline_works(
    sim: Simulator, env: dict[str, str], files: dict[str, Path]
) -> None:
    environ = {**os.environ, **env}
    helped = subprocess.run(
        [sys.executable, "-m", "plasgate_nb.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
        check=True,
    )
    for command in ("demo", "preview", "send", "resume", "status", "collect", "report", "simulator", "callbacks"):
        assert command in helped.stdout
    sent = subprocess.run(
        [sys.executable, "-m", "plasgate_nb.cli", *send_args(files)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
    )
    assert sent.returncode == 0, sent.stderr
    piped = subprocess.run(
        f"{sys.executable} -m plasgate_nb.cli status --campaign cli --ledger {files['ledger']} "
        f'--json | {sys.executable} -c \'import json,sys; print(json.load(sys.stdin)["states"]'
        f'["accepted"])\'',
        shell=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environ,
    )
    assert piped.stdout.strip() == "2"
    assert env["PLASGATE_SECRET"] not in sent.stdout + sent.stderr


def test_send_over_smpp(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SimulatorConfig(seed=5, smpp=True, clock_speed=500, rate_limits=RateLimits.off())
    with Simulator(config, mode="thread") as smpp_sim:
        creds = smpp_sim.credentials
        monkeypatch.setenv("PLASGATE_BASE_URL", smpp_sim.url)
        monkeypatch.setenv("PLASGATE_SMPP_SYSTEM_ID", creds.username)
        monkeypatch.setenv("PLASGATE_SMPP_PASSWORD", creds.password)
        args = [*send_args(files), "--transport", "smpp", "--receipt-wait", "5"]
        assert main(args) == 2
        assert "--smpp HOST:PORT" in capsys.readouterr().err
        assert main([*args, "--smpp", f"127.0.0.1:{smpp_sim.smpp_port}"]) == 0
        assert last_json(capsys.readouterr().out)["accepted"] == 2
        assert sorted(r["to"] for r in smpp_sim.records() if r["route"] == "smpp") == ["85512345678", "855971234567"]

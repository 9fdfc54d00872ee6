"""Tests of the plasgate-nb command line against the simulator: preview, send, rerun, status, resume,
collect, callbacks, bad input and the exit codes of partial sends."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pandas as pd
import pytest

from plasgate_nb.cli import build_parser, main
from plasgate_nb.commands import send as send_command
from plasgate_nb.commands._common import EXIT_BAD_INPUT, EXIT_NOT_SENT, EXIT_OK, EXIT_RETRY_LATER
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig

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
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        "plasgate-nb send: error: missing credential(s) for path 'batch': set PLASGATE_SECRET (or pass them to Gateway)"
    ]  # before any progress bar, and before anything is planned: not even the ledger exists
    assert env["PLASGATE_PRIVATE_KEY"] not in captured.err and not files["ledger"].exists()
    assert main(["status", "--campaign", "cli", "--ledger", str(files["ledger"])]) == 2
    assert f"--ledger file {files['ledger']} not found" in capsys.readouterr().err
    assert not files["ledger"].exists()
    assert main(send_args(files, "--dry-run")) == 0  # a dry run needs no credentials
    assert "creating a new ledger" in capsys.readouterr().err
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


# ------------------------------------------------------------------------------------------ preview


def preview_args(files: dict[str, Path], *extra: str) -> list[str]:
    return ["preview", str(files["customers"]), "--template", str(files["template"]), "--mask", "code", *extra]


def test_preview_shows_masked_messages_audience_and_cost(
    sim: Simulator, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(sim.records())
    opt_out = files["customers"].with_name("opt_out.csv")
    pd.DataFrame({"phone": ["+855 97 123 4567"]}).to_csv(opt_out, index=False)
    assert main([*preview_args(files, "--suppress", str(opt_out), "--price", "0.02"), "--json"]) == EXIT_OK
    out = last_json(capsys.readouterr().out)
    assert out["audience"] == {"ok": 1, "suppressed": 1, "invalid": 1, "duplicate": 1}
    assert [(r["msisdn"], r["content_report"]) for r in out["preview"]] == [
        ("85512345678", "Hi Sokha, your code ******")
    ]
    assert out["cost"]["messages"] == 1 and out["cost"]["total"] == pytest.approx(0.02)
    assert main(preview_args(files)) == EXIT_OK
    text = capsys.readouterr().out
    assert "Hi Dara, your code ******" in text and "2 messages, 2 parts" in text
    assert len(sim.records()) == before  # a preview never sends


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed")
def test_preview_reads_parquet_when_pyarrow_is_installed(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    parquet = files["customers"].with_suffix(".parquet")
    pd.read_csv(files["customers"]).to_parquet(parquet)
    files["customers"] = parquet
    assert main([*preview_args(files), "--json"]) == EXIT_OK
    assert last_json(capsys.readouterr().out)["audience"] == {"ok": 2, "invalid": 1, "duplicate": 1}


# ---------------------------------------------------------------------------------------- bad input


def _no_suppress_column(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    path = files["customers"].with_name("opt_out.csv")
    pd.DataFrame({"mobile": ["012345678"]}).to_csv(path, index=False)
    return ["--suppress", str(path)]


def _parquet_input(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    parquet = files["customers"].with_name("customers.parquet")
    parquet.write_bytes(b"PAR1 not really")
    files["customers"] = parquet
    for engine in ("pyarrow", "fastparquet"):  # as if neither were installed
        monkeypatch.setitem(sys.modules, engine, None)


BAD_INPUT: dict[str, tuple[Any, tuple[str, ...]]] = {
    "missing template": (lambda f, m: f.update(template=f["template"].with_name("nope.j2")), ("--template", "nope.j2")),
    "template is a folder": (lambda f, m: f.update(template=f["template"].parent), ("--template", "not a file")),
    "missing input": (lambda f, m: f.update(customers=f["customers"].with_name("gone.csv")), ("input", "gone.csv")),
    "suppress without phone": (_no_suppress_column, ("--suppress", "opt_out.csv", "'phone'", "mobile")),
    "missing suppress": (lambda f, m: ["--suppress", str(f["customers"].with_name("none.csv"))], ("none.csv",)),
    "parquet without pyarrow": (_parquet_input, ("customers.parquet", "pyarrow")),
    "unknown phone column": (lambda f, m: ["--phone", "mobile"], ("'mobile'",)),
    "template variable": (lambda f, m: f["template"].write_text("Hi {{ nmae }}", encoding="utf-8"), ("nmae",)),
}


@pytest.mark.parametrize("command", ["preview", "send"])
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_exits_2_with_one_line_naming_the_fault(
    case: str,
    command: str,
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    change, words = BAD_INPUT[case]
    extra = change(files, monkeypatch)
    extra = extra if isinstance(extra, list) else []
    before = len(sim.records())
    args = send_args(files, *extra) if command == "send" else preview_args(files, *extra)
    assert main(args) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"plasgate-nb {command}: error: "), captured.err
    assert all(word in lines[0] for word in words), lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert len(sim.records()) == before


def test_a_bad_input_file_fails_cleanly_in_a_real_process(files: dict[str, Path]) -> None:
    """Exit code and stderr as a shell sees them: no traceback, the documented code."""
    proc = subprocess.run(
        [sys.executable, "-m", "plasgate_nb.cli", *preview_args(files), "--template", "missing.j2"],
        capture_output=True,
        text=True,
        cwd=files["customers"].parent,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == EXIT_BAD_INPUT
    assert proc.stderr.strip() == "plasgate-nb preview: error: --template file missing.j2 not found"


def test_help_documents_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["send", "--help"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        out = capsys.readouterr().out
        table = out[out.index("exit codes:") :]
        for code in (EXIT_OK, 1, EXIT_BAD_INPUT, EXIT_NOT_SENT, EXIT_RETRY_LATER, 130):
            assert re.search(rf"^  {code} +\S", table, re.MULTILINE), (code, table)
        assert "left to retry" in table and "rejected" in table and "changed since planned" in table


# ------------------------------------------------------------------------------- partial sends, --gateway


def test_gateway_option_wins_over_the_environment(
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLASGATE_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    before = len(sim.records())
    assert main(send_args(files, "--gateway", sim.url)) == EXIT_OK
    assert last_json(capsys.readouterr().out)["accepted"] == 2
    assert sorted(r["to"] for r in sim.records(offset=before)) == ["85512345678", "855971234567"]
    assert main(send_args(files, "--gateway", "ftp://example.com")) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "base_url" in err and "ftp://example.com" in err
    assert len(sim.records()) == before + 2


@pytest.fixture
def impatient(monkeypatch: pytest.MonkeyPatch) -> None:
    """The send command's gateway gives up on a Retry-After at once (the real one waits up to 120 s)."""
    original = Gateway.from_env
    monkeypatch.setattr(
        send_command,
        "Gateway",
        SimpleNamespace(from_env=lambda **kw: original(**kw, max_retry_wait=0.2, default_retry_after=0.1)),
    )


def test_a_429_storm_exits_4_and_the_rerun_sends_the_rest(
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    impatient: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = len(sim.records())
    sim.set_faults(Fault("throttle", route="batch", count=10))
    try:
        assert main(send_args(files)) == EXIT_RETRY_LATER
    finally:
        sim.clear_faults()
    captured = capsys.readouterr()
    out = last_json(captured.out)
    assert (out["retry_later"], out["accepted"]) == (2, 0)
    assert "2 left to retry" in captured.err and "(exit 4)" in captured.err
    assert len(sim.records()) == before
    assert main(send_args(files)) == EXIT_OK
    again = last_json(capsys.readouterr().out)
    assert (again["accepted"], again["retry_later"]) == (2, 0)
    assert len(sim.records()) == before + 2


def test_uncertain_rows_exit_3_on_every_rerun_until_resent(
    sim: Simulator, env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(sim.records())
    sim.set_faults(Fault("error_after", route="batch", count=1))
    try:
        assert main(send_args(files)) == EXIT_NOT_SENT
    finally:
        sim.clear_faults()
    captured = capsys.readouterr()
    assert last_json(captured.out)["uncertain"] == 2
    assert "2 uncertain" in captured.err and "--resend-uncertain" in captured.err
    assert main(send_args(files)) == EXIT_NOT_SENT  # nothing new was sent, but the campaign is not complete
    captured = capsys.readouterr()
    again = last_json(captured.out)
    assert (again["recipients"], again["already_sent"], again["campaign_states"]["uncertain"]) == (0, 2, 2)
    assert "campaign 'cli' has 2 uncertain" in captured.err
    assert len(sim.records()) == before + 2  # uncertain rows are never resent unasked
    assert main(send_args(files, "--resend-uncertain", "C2")) == EXIT_NOT_SENT  # only the key given
    captured = capsys.readouterr()
    assert last_json(captured.out)["accepted"] == 1 and "has 1 uncertain" in captured.err
    assert [r["to"] for r in sim.records(offset=before + 2)] == ["855971234567"]
    assert main(send_args(files, "--resend-uncertain")) == EXIT_OK  # a bare option: every uncertain row
    done = last_json(capsys.readouterr().out)
    assert done["accepted"] == 1 and done["campaign_states"]["accepted"] == 2
    assert [r["to"] for r in sim.records(offset=before + 3)] == ["85512345678"]


def test_rejected_rows_exit_3(
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLASGATE_SENDER", "NOTAPPROVED")
    assert main(send_args(files)) == EXIT_NOT_SENT
    captured = capsys.readouterr()
    assert last_json(captured.out)["rejected"] == 2
    assert "2 rejected" in captured.err


def test_rows_changed_since_planned_exit_3_until_resolved(
    sim: Simulator, env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(send_args(files)) == EXIT_OK
    capsys.readouterr()
    before = len(sim.records())
    files["template"].write_text("Hello {{ name }}, your code {{ code }}", encoding="utf-8")
    assert main(send_args(files)) == EXIT_NOT_SENT
    captured = capsys.readouterr()
    out = last_json(captured.out)
    assert sorted(out["changed"]) == ["C1", "C2"] and out["recipients"] == 0
    assert "2 changed since planned" in captured.err
    assert len(sim.records()) == before
    assert main(send_args(files, "--dry-run")) == EXIT_OK  # a dry run plans nothing: always 0
    capsys.readouterr()
    files["template"].write_text(TEMPLATE, encoding="utf-8")
    assert main(send_args(files)) == EXIT_OK


# ---------------------------------------------------------------------------------------- callbacks


def start_callbacks(ledger: Path, port: int = 0) -> subprocess.Popen[str]:
    """Start ``plasgate-nb callbacks`` as a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "plasgate_nb.cli", "callbacks", "--ledger", str(ledger), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop_callbacks(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGINT the receiver and return the rest of its output (kill it if it does not stop)."""
    try:
        proc.send_signal(signal.SIGINT)
        return proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_callbacks_records_delivery_reports_then_stops_on_sigint(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = start_callbacks(files["ledger"])
    try:
        banner = proc.stdout.readline()  # type: ignore[union-attr]
        found = re.search(r"listening on (http://127\.0\.0\.1:(\d+)); tell the gateway (\S+)", banner)
        assert found is not None, banner + proc.stderr.read()  # type: ignore[union-attr]
        url, port = found.group(1), int(found.group(2))
        assert port > 0 and found.group(3) == url
        # the banner comes once the port is bound; under load the server may start serving seconds later
        assert httpx.get(f"{url}/health", trust_env=False, timeout=30).status_code == 200

        busy = start_callbacks(files["ledger"], port)  # the same port again: one clear line, exit 2
        _, busy_err = busy.communicate(timeout=30)
        assert busy.returncode == EXIT_BAD_INPUT
        assert busy_err.strip().splitlines() == [busy_err.strip()] and "Traceback" not in busy_err
        assert f"--port {port}" in busy_err and "in use" in busy_err

        config = SimulatorConfig(seed=4, clock_speed=500, rate_limits=RateLimits.off(), callback_retry_delay=0.2)
        with Simulator(config, mode="thread") as fast:
            creds = fast.credentials
            for name, value in {
                "PLASGATE_BASE_URL": fast.url,
                "PLASGATE_PRIVATE_KEY": creds.private_key,
                "PLASGATE_SECRET": creds.secret,
                "PLASGATE_SENDER": creds.sender,
            }.items():
                monkeypatch.setenv(name, value)
            assert main(send_args(files, "--callback-url", url)) == EXIT_OK
            assert last_json(capsys.readouterr().out)["accepted"] == 2
            deadline = time.monotonic() + 30
            with Ledger(files["ledger"]) as ledger:
                while True:
                    reports = ledger.messages("cli", columns=["delivery_status"])["delivery_status"]
                    if reports.notna().all() or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
        assert reports.notna().all(), reports.tolist()  # recorded by the receiver process

        out, err = stop_callbacks(proc)
        assert proc.returncode == EXIT_OK, err
        assert "callback receiver stopped" in out and "Traceback" not in err
        with socket.socket() as probe:  # the port is closed with the receiver
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if proc.poll() is None:
            stop_callbacks(proc)


def test_callbacks_with_an_unusable_ledger_exits_2(tmp_path: Path) -> None:
    proc = start_callbacks(tmp_path / "no" / "such" / "dir" / "x.db")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == EXIT_BAD_INPUT and out == ""
    assert err.strip().startswith("plasgate-nb callbacks: error: cannot open the ledger") and "Traceback" not in err


# ------------------------------------------------------------------ options a cron job relies on


def test_resend_options_take_all_or_keys_comma_separated_and_repeatable() -> None:
    parser = build_parser()
    base = ["send", "in.csv", "--template", "t.j2", "--campaign", "c"]
    assert parser.parse_args(base).resend_rejected is False
    assert parser.parse_args([*base, "--resend-rejected"]).resend_rejected is True
    keys = parser.parse_args([*base, "--resend-rejected", "C1, C2", "--resend-rejected", "C3", "--dry-run"])
    assert keys.resend_rejected == ["C1", "C2", "C3"] and keys.dry_run and keys.resend_uncertain is False
    both = parser.parse_args([*base, "--resend-uncertain", "C1", "--resend-uncertain"])
    assert both.resend_uncertain is True  # a bare option means every row: it wins over any keys
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--resend-rejected", ","])


def test_resend_rejected_by_key_resends_only_those_and_names_keys_it_cannot(
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLASGATE_SENDER", "NOTAPPROVED")
    assert main(send_args(files)) == EXIT_NOT_SENT
    capsys.readouterr()
    before = len(sim.records())
    assert main(send_args(files, "--sender", "SMS Info", "--resend-rejected", "C2,C9")) == EXIT_NOT_SENT
    captured = capsys.readouterr()
    assert "--resend-rejected: not rejected, left as they are: C9 (not in the campaign)" in captured.err
    assert "campaign 'cli' has 1 rejected" in captured.err
    assert [r["to"] for r in sim.records(offset=before)] == ["855971234567"]
    assert last_json(captured.out)["campaign_states"] == {
        "planned": 0,
        "submitting": 0,
        "accepted": 1,
        "rejected": 1,
        "uncertain": 0,
        "holdout": 0,
        "suppressed": 0,
        "capped": 0,
    }


def test_sender_option_wins_over_the_environment_and_is_checked_before_anything_is_written(
    sim: Simulator,
    env: dict[str, str],
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PLASGATE_SENDER", "NOTAPPROVED")
    assert main(send_args(files, "--sender", "WAYTOOLONGSENDER")) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith("plasgate-nb send: error: --sender: sender 'WAYTOOLONGSENDER' has 16")
    assert not files["ledger"].exists()
    before = len(sim.records())
    assert main(send_args(files, "--sender", "SMS Info")) == EXIT_OK
    capsys.readouterr()
    assert {r["sender"] for r in sim.records(offset=before)} == {"SMS Info"}


def test_schedule_at_reaches_the_gateway_and_a_bad_one_writes_nothing(
    sim: Simulator, env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for bad, words in (
        ("2020-01-01 09:00", "is in the past"),
        ("tomorrow", "is not a time"),
    ):
        assert main(send_args(files, "--schedule-at", bad)) == EXIT_BAD_INPUT
        err = capsys.readouterr().err
        assert err.startswith("plasgate-nb send: error: --schedule-at") and words in err, err
    assert main(send_args(files, "--schedule-at", "2099-01-01 09:00", "--transport", "single")) == EXIT_BAD_INPUT
    assert "--schedule-at works only with --transport batch" in capsys.readouterr().err
    assert not files["ledger"].exists()
    before = len(sim.records())
    assert main(send_args(files, "--schedule-at", "2099-01-01 09:00")) == EXIT_OK
    capsys.readouterr()
    records = sim.records(offset=before)
    due = pd.Timestamp("2099-01-01 09:00", tz="Asia/Phnom_Penh").timestamp()
    assert len(records) == 2 and all(r["due_at"] >= due for r in records), records


def test_preview_and_send_price_the_same_way(
    env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*preview_args(files), "--json"]) == EXIT_OK
    cost = last_json(capsys.readouterr().out)["cost"]
    assert (cost["total"], cost["price_per_segment"], cost["segments"]) == (None, None, 2)
    assert main(preview_args(files)) == EXIT_OK
    assert "2 messages, 2 parts (no cost estimate: give --price)" in capsys.readouterr().out
    assert main(send_args(files, "--dry-run")) == EXIT_OK
    assert last_json(capsys.readouterr().out)["cost"] is None  # no price, no cost: in both commands
    assert main([*preview_args(files, "--price", "0.05"), "--json"]) == EXIT_OK
    previewed = last_json(capsys.readouterr().out)["cost"]["total"]
    assert main(send_args(files, "--dry-run", "--price", "0.05")) == EXIT_OK
    assert last_json(capsys.readouterr().out)["cost"] == pytest.approx(previewed) == pytest.approx(0.1)


@pytest.mark.parametrize("command", ["status", "resume", "collect", "report"])
def test_reading_commands_never_create_a_ledger(
    command: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = [command, "--campaign", "cli", "--ledger", str(files["ledger"])]
    if command in ("collect", "report"):
        args += [str(files["customers"]), "--key", "customer_id", "--output", str(files["out"])]
    assert main(args) == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.err == (
        f"plasgate-nb {command}: error: --ledger file {files['ledger']} not found: give the --ledger the "
        "campaign was sent with (only `send` creates a ledger)\n"
    )
    assert not files["ledger"].exists() and not files["out"].exists()


def test_send_says_when_it_creates_a_ledger(
    env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(send_args(files)) == EXIT_OK
    assert capsys.readouterr().err == f"plasgate-nb send: creating a new ledger {files['ledger']}\n"
    assert main(send_args(files)) == EXIT_OK
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--key", "id"], ["--key 'id' is not a column of", "customer_id, name, phone, code)", "--key COLUMN"]),
        (["--phone", "mobile"], ["no phone column 'mobile'", "customer_id, name, phone, code)", "--phone COLUMN"]),
        (["--mask", "coupon"], ["--mask 'coupon': not a column of", "customer_id, name, phone, code)"]),
    ],
)
def test_column_errors_name_the_option_and_the_inputs_own_columns(
    extra: list[str],
    words: list[str],
    env: dict[str, str],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = send_args(files)
    args[args.index("--key") : args.index("--key") + 2] = []
    assert main([*args, *extra]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert all(word in err for word in words), err
    assert "msisdn" not in err and "audience_status" not in err
    assert not files["ledger"].exists()


def test_a_missing_phone_column_hints_at_the_phone_option(
    env: dict[str, str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pd.read_csv(files["customers"]).rename(columns={"phone": "mobile"}).to_csv(files["customers"], index=False)
    assert main(preview_args(files)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "has no phone column 'phone'" in err and "mobile" in err and "--phone COLUMN" in err

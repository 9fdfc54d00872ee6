"""The ``plasgate-nb`` command as a cron job lives it: the installed console script in a fresh process per
command, a minimal environment, exit codes read like a shell script reads them, against a real simulator.

Each story is a sequence of runs of the same command with the exit code each run must give: a campaign
is only "done" (exit 0) when every row of the input is accepted or deliberately skipped, whatever the
run that got it there; rows rejected or uncertain keep the exit at 3 on every rerun until they are
resent; rows only left to retry give 4. No output of any run may contain the private key or the secret.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from plasgate_nb.commands._common import EXIT_BAD_INPUT, EXIT_NOT_SENT, EXIT_OK, EXIT_RETRY_LATER
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig

CLI = Path(sys.executable).with_name("plasgate-nb")  # the console script `pip install` put beside python
NUMBERS = {"C1": "012 345 678", "C2": "+855 97 123 4567", "C3": "017 571 887", "C4": "031 934 6493"}


@dataclass(frozen=True)
class Run:
    """What a shell sees of one command: its exit code and its two streams."""

    code: int
    out: str
    err: str


class Cron:
    """Run ``plasgate-nb`` as a crontab line does: the installed script, a bare environment, a work folder."""

    def __init__(self, folder: Path, sim: Simulator) -> None:
        creds = sim.credentials
        self.folder = folder
        self.secrets = (creds.private_key, creds.secret, creds.password)
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(folder),
            "LANG": "C.UTF-8",
            "MPLBACKEND": "Agg",
            "PLASGATE_BASE_URL": sim.url,
            "PLASGATE_PRIVATE_KEY": creds.private_key,
            "PLASGATE_SECRET": creds.secret,
        }
        self.codes: list[int] = []

    def __call__(self, *args: str, drop: tuple[str, ...] = (), **env: str) -> Run:
        """Run one command; ``drop`` unsets environment variables, keyword arguments set more."""
        environ = {k: v for k, v in {**self.env, **env}.items() if k not in drop}
        proc = subprocess.run(
            [str(CLI), *args], cwd=self.folder, env=environ, capture_output=True, text=True, timeout=180
        )
        for secret in self.secrets:
            assert secret not in proc.stdout and secret not in proc.stderr, f"a secret leaked from {args}"
        assert "Traceback" not in proc.stderr, proc.stderr
        self.codes.append(proc.returncode)
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def send(self, *extra: str, **env: str) -> Run:
        """The crontab's send line (plus ``extra`` options)."""
        return self(
            "send",
            "customers.csv",
            "--template",
            "offer.j2",
            "--mask",
            "code",
            "--key",
            "customer_id",
            "--campaign",
            "spring",
            "--ledger",
            "spring.db",
            *extra,
            **env,
        )


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if not CLI.is_file():
        pytest.fail(f"the plasgate-nb console script is not installed beside {sys.executable}: pip install -e .")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    pd.DataFrame(
        {
            "customer_id": [*NUMBERS, "C5"],
            "name": ["Sokha", "Dara", "Vannak", "Chan", "Bopha"],
            "phone": [*NUMBERS.values(), "not a number"],
            "code": ["0041", "0042", "0043", "0044", "0045"],
        }
    ).to_csv(tmp_path / "customers.csv", index=False)
    (tmp_path / "offer.j2").write_text("Hi {{ name }}, your code {{ code }}", encoding="utf-8")
    return tmp_path


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SimulatorConfig(seed=7, rate_limits=RateLimits.off()), mode="thread") as simulator:
        yield simulator


def sent_to(sim: Simulator, offset: int = 0) -> list[str]:
    """The numbers the gateway accepted since ``offset``, sorted."""
    return sorted(r["to"] for r in sim.records(offset=offset))


def test_rejected_and_uncertain_rows_keep_exit_3_until_resent(folder: Path, sim: Simulator) -> None:
    cron = Cron(folder, sim)
    sim.set_balance(0.03)  # pays for two one-part messages (0.012 each): the others are refused (402)
    sim.set_faults(Fault("error_after", route="rest", count=1))  # one is accepted, then answered 500
    first = cron.send("--transport", "single")
    assert first.code == EXIT_NOT_SENT, first.err
    assert "creating a new ledger spring.db" in first.err
    assert "campaign 'spring' has 2 rejected" in first.err and "1 uncertain" in first.err
    assert first.err.rstrip().endswith("(exit 3)")
    assert len(sim.records()) == 2  # the uncertain one and the one accepted

    rerun = cron.send("--transport", "single")  # the next cron tick: nothing new, still not done
    assert rerun.code == EXIT_NOT_SENT, rerun.err
    assert "has 2 rejected" in rerun.err and "1 uncertain" in rerun.err and "--resend-rejected" in rerun.err
    assert "creating a new ledger" not in rerun.err
    assert len(sim.records()) == 2

    status = cron("status", "--campaign", "spring", "--ledger", "spring.db")
    assert status.code == EXIT_OK and "rejected 2" in status.out and "uncertain 1" in status.out

    collected = cron(
        "collect", "customers.csv", "--key", "customer_id", "--campaign", "spring", "--ledger", "spring.db",
        "--output", "results.csv",
    )  # fmt: skip
    assert collected.code == EXIT_OK, collected.err
    results = pd.read_csv(folder / "results.csv", dtype="string")
    rejected = sorted(results.loc[results["send_state"] == "rejected", "customer_id"])
    assert len(rejected) == 2

    sim.set_balance(100.0)  # topped up: resend exactly the rows the gateway refused, by key
    fixed = cron.send("--transport", "single", "--resend-rejected", ",".join(rejected))
    assert fixed.code == EXIT_NOT_SENT, fixed.err  # the uncertain row still needs a decision
    assert "1 uncertain" in fixed.err and "rejected" not in fixed.err
    assert sent_to(sim, 2) == sorted(results.set_index("customer_id").loc[rejected, "msisdn"])

    resent = cron.send("--transport", "single", "--resend-uncertain")
    assert resent.code == EXIT_OK, resent.err
    assert resent.err == ""
    assert len(sim.records()) == 5  # the uncertain row went twice: that is what --resend-uncertain means

    done = cron.send("--transport", "single")
    assert done.code == EXIT_OK and done.err == "" and len(sim.records()) == 5
    assert "accepted 4" in done.out
    assert cron.codes == [3, 3, 0, 0, 3, 0, 0]


def test_an_unapproved_sender_is_fixed_with_sender_and_resend_rejected(folder: Path, sim: Simulator) -> None:
    cron = Cron(folder, sim)
    bad = cron.send(PLASGATE_SENDER="NOTAPPROVED")
    assert bad.code == EXIT_NOT_SENT and "has 4 rejected" in bad.err
    again = cron.send(PLASGATE_SENDER="NOTAPPROVED")
    assert again.code == EXIT_NOT_SENT and "has 4 rejected" in again.err
    fixed = cron.send("--sender", "SMS Info", "--resend-rejected", PLASGATE_SENDER="NOTAPPROVED")
    assert fixed.code == EXIT_OK, fixed.err
    assert {r["sender"] for r in sim.records()} == {"SMS Info"} and len(sim.records()) == 4
    assert cron.codes == [3, 3, 0]


def test_a_throttled_run_exits_4_until_the_gateway_lets_the_rest_through(folder: Path) -> None:
    limits = RateLimits(rest=2, batch=None, api=None, window=3600)  # Retry-After ~1 h: handed back, not awaited
    with Simulator(SimulatorConfig(seed=8, rate_limits=limits), mode="thread") as sim:
        cron = Cron(folder, sim)
        throttled = cron.send("--transport", "single")
        assert throttled.code == EXIT_RETRY_LATER, throttled.err
        assert "has 2 left to retry" in throttled.err and "rejected" not in throttled.err
        assert len(sim.records()) == 2
        still = cron.send("--transport", "single")
        assert still.code == EXIT_RETRY_LATER and "has 2 left to retry" in still.err
        sim.advance(3600)  # the gateway's window has passed
        done = cron.send("--transport", "single")
        assert done.code == EXIT_OK, done.err
        assert sent_to(sim) == sorted(["85512345678", "855971234567", "85517571887", "855319346493"])
        assert cron.codes == [4, 4, 0]


def test_an_unreachable_gateway_exits_4_and_says_where_it_could_not_connect(folder: Path, sim: Simulator) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    cron = Cron(folder, sim)
    down = cron.send(PLASGATE_BASE_URL=url)
    assert down.code == EXIT_RETRY_LATER, down.err
    last = down.err.strip().splitlines()[-1]
    assert last.startswith(f"plasgate-nb send: could not connect to the gateway at {url}"), last
    back = cron.send()  # the gateway is back (PLASGATE_BASE_URL points at it again): the rest goes out
    assert back.code == EXIT_OK, back.err
    assert len(sim.records()) == 4


def test_what_a_cron_job_gets_wrong_exits_2_before_anything_is_written(folder: Path, sim: Simulator) -> None:
    cron = Cron(folder, sim)
    status = cron("status", "--campaign", "spring", "--ledger", "spring.db")  # before the first send
    assert status.code == EXIT_BAD_INPUT and "--ledger file spring.db not found" in status.err
    report = cron("report", "customers.csv", "--campaign", "spring", "--ledger", "spring.db", "--output", "r.csv")
    assert report.code == EXIT_BAD_INPUT and "--ledger file spring.db not found" in report.err
    no_secret = cron.send(drop=("PLASGATE_SECRET",))
    assert no_secret.code == EXIT_BAD_INPUT
    assert no_secret.err.strip().splitlines() == [
        "plasgate-nb send: error: missing credential(s) for path 'batch': set PLASGATE_SECRET (or pass them to Gateway)"
    ]  # no progress bar, no "creating a new ledger": nothing was planned
    assert not (folder / "spring.db").exists() and not (folder / "r.csv").exists()
    assert sim.records() == []
    assert cron.codes == [2, 2, 2]

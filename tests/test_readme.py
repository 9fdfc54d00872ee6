"""The README's examples run as written: its python blocks, section by section, against the simulator.

The sections listed in RUNNABLE are run in README order, in one namespace (as a reader pastes them into
one notebook), in a temporary folder holding the sample data, with ``PLASGATE_*`` pointing at a simulator
(so ``Gateway.from_env()`` works). The other sections show real-gateway settings, placeholders or
fragments; the README's Development section says which sections are run.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from plasgate_nb.demo import compose_sample, find_sample_data
from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TOUR = "A five-minute tour"
RUNNABLE = (
    TOUR,
    "Preparing the audience",
    "Compose messages",
    "Sending a campaign exactly once",
    'What "exactly once" means here, in plain words',
)


def sections(text: str) -> dict[str, list[str]]:
    """The python blocks of each section (the text between a heading and the next heading)."""
    found: dict[str, list[str]] = {}
    title = ""
    in_block, language, lines = False, "", []
    for line in text.splitlines():
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence and not in_block:
            in_block, language, lines = True, fence.group(1), []
        elif fence and in_block:
            in_block = False
            if language == "python":
                found.setdefault(title, []).append("\n".join(lines) + "\n")
        elif in_block:
            lines.append(line)
        elif line.startswith("#"):
            title = line.lstrip("#").strip()
    return found


def test_every_runnable_section_has_python_and_says_so() -> None:
    text = README.read_text(encoding="utf-8")
    blocks = sections(text)
    for title in RUNNABLE:
        assert blocks.get(title), f"README section {title!r} has no python block"
    assert "tests/test_readme.py" in text  # the README tells which sections run


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder with the sample data, as the current directory, and the environment pointing at a simulator."""
    (tmp_path / "sample_data").symlink_to(find_sample_data(ROOT))
    monkeypatch.chdir(tmp_path)
    matplotlib.use("Agg")
    with Simulator(SimulatorConfig(seed=11, rate_limits=RateLimits.off()), mode="thread") as sim:
        creds = sim.credentials
        for name, value in {
            "PLASGATE_BASE_URL": sim.url,
            "PLASGATE_PRIVATE_KEY": creds.private_key,
            "PLASGATE_SECRET": creds.secret,
            "PLASGATE_SENDER": creds.sender,
        }.items():
            monkeypatch.setenv(name, value)
        yield tmp_path


@pytest.mark.slow
def test_readme_examples_run_in_order(workdir: Path) -> None:
    import matplotlib.pyplot as plt

    text = README.read_text(encoding="utf-8")
    blocks = sections(text)
    namespace: dict[str, object] = {"__name__": "__readme__"}
    ran = []
    try:
        for title in RUNNABLE:
            for number, block in enumerate(blocks[title], 1):
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # an example that warns is a broken example
                    try:
                        exec(compile(block, f"README {title} #{number}", "exec"), namespace)
                    except Exception as exc:
                        pytest.fail(f"README section {title!r}, block {number} fails: {exc!r}\n{block}")
                ran.append((title, number))
                if title == TOUR and number == 1:
                    check_tour_sends_what_the_demo_sends(namespace, text)
    finally:
        for name in ("receiver", "sim"):
            server = namespace.get(name)
            if server is not None and hasattr(server, "stop"):
                server.stop()
        plt.close("all")
    assert [title for title, _ in ran] == [t for t in RUNNABLE for _ in blocks[t]]
    out = namespace["out"]
    assert isinstance(out, pd.DataFrame) and "template" in out.columns  # the compose section's last block ran


def check_tour_sends_what_the_demo_sends(namespace: dict[str, object], text: str) -> None:
    """The tour's campaign holds exactly the demo's recipients, with the demo's messages."""
    sent = namespace["campaign"].to_frame()  # type: ignore[attr-defined]
    sent = sent[sent["state"] == "accepted"].set_index("message_key")
    demo = compose_sample(find_sample_data(ROOT))
    demo = demo[demo["audience_status"] == "ok"].set_index("customer_id")
    assert sorted(sent.index) == sorted(demo.index)
    assert (sent["msisdn"] == demo.loc[sent.index, "msisdn"]).all()
    assert (sent["content_report"] == demo.loc[sent.index, "content_report"]).all()
    khmer = demo[demo["language"] == "km"]
    assert (khmer["encoding"] == "UCS-2").all() and (sent.loc[khmer.index, "encoding"] == "UCS-2").all()
    assert f"{len(demo):,} of 2,400" in text  # the README's count is the measured one


def shell_commands(text: str, section: str) -> list[list[str]]:
    """The commands of the bash blocks in ``section``: continuation lines joined, comments dropped."""
    commands: list[list[str]] = []
    title, in_block, language = "", False, ""
    pending = ""
    for line in text.splitlines():
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence:
            in_block, language = (not in_block), fence.group(1) if not in_block else ""
            continue
        if not in_block and line.startswith("#"):
            title = line.lstrip("#").strip()
        if in_block and language == "bash" and title == section:
            pending += line.split("  #")[0].rstrip().removesuffix("\\") + " "
            if not line.rstrip().endswith("\\"):
                commands.append(shlex.split(pending))
                pending = ""
    return commands


@pytest.mark.slow
def test_readme_command_line_sequence_runs_and_sends_what_the_demo_sends(workdir: Path) -> None:
    commands = shell_commands(README.read_text(encoding="utf-8"), TOUR)
    assert [c[:2] for c in commands] == [
        ["plasgate-nb", "preview"],
        ["plasgate-nb", "send"],
        ["plasgate-nb", "send"],
        ["plasgate-nb", "status"],
        ["plasgate-nb", "report"],
    ]
    outputs = []
    for command in commands:
        assert "--consent" in command or command[1] == "status"
        done = subprocess.run(
            [sys.executable, "-m", "plasgate_nb.cli", *command[1:]], capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, (command, done.stderr)
        outputs.append(done.stdout)
    sent = json.loads(outputs[2].strip().splitlines()[-1])
    demo = compose_sample(find_sample_data(ROOT))
    assert sent["accepted"] == (demo["audience_status"] == "ok").sum()
    assert sent["skipped_reasons"]["no_consent"] == (demo["audience_status"] == "no_consent").sum()
    report = pd.read_csv(workdir / "spring_results.csv", dtype=str)
    accepted = set(report.loc[report["send_state"] == "accepted", "customer_id"])
    assert accepted == set(demo.loc[demo["audience_status"] == "ok", "customer_id"])

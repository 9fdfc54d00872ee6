"""The notebooks run top to bottom against the simulator, and are committed without outputs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# jupyter_client announces its platformdirs migration with a DeprecationWarning; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_there_are_the_four_notebooks() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_send_form.ipynb",
        "03_pipeline.ipynb",
        "04_experiment.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


def execute(path: Path, tmp_path: Path) -> nbformat.NotebookNode:
    """Run a notebook in a fresh kernel of this interpreter, from the repository root."""
    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    return book


def outputs_text(book: nbformat.NotebookNode) -> str:
    chunks = []
    for cell in book.cells:
        for out in cell.get("outputs", []):
            chunks.append(out.get("text", "") + str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(chunks)


@pytest.mark.slow
def test_quickstart_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    book = execute(ROOT / "notebooks" / "01_quickstart.ipynb", tmp_path)
    errors = [out for cell in book.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    text = outputs_text(book)
    assert "accepted" in text
    images = [out for cell in book.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert images, "the charts cell drew nothing"
    assert "sent 0 message(s)" in text  # the re-run cell sent nothing twice
    assert "no_consent" in text and "សួស្តី" in text  # consent honoured; Khmer customers get Khmer text
    assert "sent 2024 message(s)" in text  # exactly the demo's (and the README tour's) customers
    assert not noise(book), noise(book)


def noise(book: nbformat.NotebookNode) -> list[str]:
    """What the notebook printed on stderr: warnings, logged warnings, tracebacks (progress bars are widgets)."""
    return [out["text"] for cell in book.cells for out in cell.get("outputs", []) if out.get("name") == "stderr"]


SEND_FORM = ROOT / "notebooks" / "02_send_form.ipynb"


@pytest.mark.slow
def test_send_form_notebook_sends_only_when_the_suite_drives_it(tmp_path: Path) -> None:
    """With papermill's ``drive_form=True`` the notebook clicks Dry run, Send and Confirm itself and sends."""
    import papermill

    out = tmp_path / "run.ipynb"
    papermill.execute_notebook(
        str(SEND_FORM),
        str(out),
        parameters={"drive_form": True},
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    book = nbformat.read(out, as_version=4)
    errors = [out for cell in book.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    text = outputs_text(book)
    assert "campaign 'form-demo': sent " in text and "accepted" in text
    assert "សួស្តី" in text and "Hi " in text  # one template per language: Khmer customers got Khmer text


@pytest.mark.slow
def test_send_form_notebook_sends_nothing_on_run_all(tmp_path: Path) -> None:
    """Run All as committed shows the form and sends nothing (an appended cell counts what reached the simulator)."""
    book = nbformat.read(SEND_FORM, as_version=4)
    book.cells.append(
        nbformat.v4.new_code_cell(
            'print("simulator received", len(sim.records()), "message(s);",'
            ' "ledger rows", len(ledger.messages("form-demo")))\n'
            "shut_down()"
        )
    )
    client = NotebookClient(book, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    text = outputs_text(book)
    assert "simulator received 0 message(s); ledger rows 0" in text
    widgets = [
        out
        for cell in book.cells
        for out in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in out.get("data", {})
    ]
    assert widgets, "the form was not shown"


@pytest.mark.slow
def test_pipeline_notebook_runs_with_papermill_parameters(tmp_path: Path) -> None:
    import papermill

    out = tmp_path / "run.ipynb"
    params = {"campaign_name": "nightly", "output_dir": str(tmp_path / "out"), "mask": "coupon"}
    for run in range(2):
        papermill.execute_notebook(
            str(ROOT / "notebooks" / "03_pipeline.ipynb"),
            str(out),
            parameters=params,
            cwd=str(ROOT),
            kernel_name="python3",
            progress_bar=False,
        )
        text = outputs_text(nbformat.read(out, as_version=4))
        assert "campaign 'nightly'" in text
        assert ("sent 0 message(s)" in text) == (run == 1)
        assert ("sent 2024 message(s)" in text) == (run == 0)  # consent and opt-outs honoured, as in the demo
        assert not noise(nbformat.read(out, as_version=4))
    results = (tmp_path / "out" / "nightly_results.csv").read_text()
    assert "accepted" in results


@pytest.mark.slow
def test_experiment_notebook_holds_out_compares_and_leaves_opt_outs_out(tmp_path: Path) -> None:
    book = execute(ROOT / "notebooks" / "04_experiment.ipynb", tmp_path)
    errors = [out for cell in book.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors
    assert not noise(book), noise(book)
    text = outputs_text(book)
    variants = dict(re.findall(r"(A|B|holdout) (\d+)", re.search(r"variants: (.*)", text).group(1)))
    sizes = {name: int(n) for name, n in variants.items()}
    assert set(sizes) == {"A", "B", "holdout"} and 0.07 < sizes["holdout"] / sum(sizes.values()) < 0.13
    held = re.search(r"holdout numbers the simulator received: (\d+) of (\d+)", text)
    assert held and held.group(1) == "0" and int(held.group(2)) == sizes["holdout"]  # the simulator's record
    assert f"sent {sizes['A'] + sizes['B']} message(s)" in text
    assert f"skipped {sizes['holdout']} {{'holdout': {sizes['holdout']}}}" in text
    listed = int(re.search(r"on the suppression list: (\d+) \{", text).group(1))
    assert listed > 0 and "'STOP'" in text and "'ឈប់'" in text
    # the follow-up skipped exactly those numbers, and the simulator received none of them
    assert f"'suppressed': {listed}" in text
    assert f"sent {sizes['A'] + sizes['B'] - listed} message(s)" in text
    assert "follow-up messages to opted-out numbers: 0" in text
    assert "converted_simulated" in text
    images = [out for cell in book.cells for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert images, "plot_variants drew nothing"


def _stream_text(message: dict) -> list[str]:
    """The printed text of an iopub message (nothing for the others)."""
    return [message["content"]["text"]] if message["msg_type"] == "stream" else []


KERNEL_SETUP = """
import plasgate_nb as pg
sim = pg.Simulator().start()
ledger = pg.Ledger({db!r})
receiver = pg.CallbackServer(ledger).start()
print("serving", sim.url, receiver.public_url)
"""


@pytest.mark.slow
def test_interrupting_and_stopping_a_kernel_prints_no_tracebacks(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """An interrupt reaches the kernel's whole process group: the simulator and receiver ignore it and keep
    serving; a shutdown stops them without a word."""
    import httpx
    from jupyter_client.manager import start_new_kernel

    os.environ["JUPYTER_PLATFORM_DIRS"] = "1"
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(ROOT))
    outputs: list[str] = []

    def run(code: str) -> None:
        reply = client.execute_interactive(code, timeout=120, output_hook=lambda msg: outputs.extend(_stream_text(msg)))
        assert reply["content"]["status"] == "ok", reply["content"]

    try:
        run(KERNEL_SETUP.format(db=str(tmp_path / "kernel.db")))
        _, sim_url, receiver_url = "".join(outputs).split()
        manager.interrupt_kernel()  # SIGINT to the kernel's process group, as the stop button does
        time.sleep(2)
        assert httpx.get(f"{receiver_url}/health", timeout=10).status_code == 200  # both still serving
        run("print(len(sim.records()), sim.url)")
        assert outputs[-1].split() == ["0", sim_url]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    time.sleep(1)
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err

"""The send form in a real browser: JupyterLab on 127.0.0.1, Debian's chromium driven by playwright, as a person.

A JupyterLab server runs on an ephemeral port with a token, in a temporary root holding a copy of
``notebooks/02_send_form.ipynb`` (the simulator, a receiver and the form on the sample data). Chromium opens
it, runs all cells, and the test clicks and types: columns, a template per language with the live preview
of each, a masked column, the consent picker, a dry run, Send, Confirm, Stop waiting, the results by
template, a broken template. A cell typed at the end asks the simulator what it received (Khmer text to
Khmer customers). Screenshots of each step go to ``$PLASGATE_SCREENSHOTS`` or the test's tmp dir (never
the repository). The server, its kernels and everything they started are stopped at the end.

Needs the ``browser`` extra (``pip install -e '.[browser]'``: jupyterlab, playwright) and a chromium binary
(``apt-get install -y chromium``); ``.ci/run`` installs both. Without them the test skips and says why.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "02_send_form.ipynb"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SLOW = 60_000  # ms: a kernel start or a Run All on a busy 2-core machine
pytestmark = [
    pytest.mark.slow,
    # jupyter_client announces its platformdirs migration with a DeprecationWarning; not ours to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


@pytest.fixture
def chromium() -> str:
    """The system chromium (``PLASGATE_CHROMIUM``, else Debian's ``/usr/bin/chromium``), or skip saying why.

    Checked with the Python packages before anything starts, so a skip costs nothing.
    """
    for module in ("jupyterlab", "playwright.sync_api"):
        pytest.importorskip(module, reason=f"{module} missing: install the browser extra: pip install -e '.[browser]'")
    for candidate in (os.environ.get("PLASGATE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    pytest.skip("no chromium binary: apt-get install -y chromium (.ci/run does it when it can)")


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (read from /proc: kernels, and the servers a kernel started)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def lab(chromium: str, tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on 127.0.0.1:<ephemeral> with a token; its config, data, runtime and settings in tmp_path."""
    home = tmp_path / "jupyter"
    root = tmp_path / "root"
    root.mkdir(parents=True)
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    settings = home / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    # no "would you like news?" toast over the form: the user settings a person would have saved
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "IPYTHONDIR": str(home / "ipython"),
        "MPLCONFIGDIR": str(home / "matplotlib"),
        "TMPDIR": str(tmp_path),  # the notebook's ledger folder lands here too
    }
    for name in ("PLASGATE_BASE_URL", "PLASGATE_PRIVATE_KEY", "PLASGATE_SECRET", "PLASGATE_USERNAME"):
        env.pop(name, None)
    log = tmp_path / "jupyterlab.log"
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",  # CI runs as root
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port=0",  # an ephemeral port, read back from the runtime file
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    port: int | None = None
    try:
        port = _server_info(home / "runtime", process, log)["port"]
        yield Lab(f"http://127.0.0.1:{port}/", token, root, process, log)
    finally:
        _stop(process, token, port)


def _server_info(runtime: Path, process: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    """The server's runtime file (port, token) once it is listening."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"jupyterlab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        for path in runtime.glob(f"jpserver-{process.pid}.json"):
            with contextlib.suppress(ValueError):
                return json.loads(path.read_text())
        time.sleep(0.2)
    pytest.fail(f"jupyterlab did not start in 90 s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes], token: str, port: int | None) -> None:
    """Shut the server down through its API (it stops its kernels), then make sure nothing it started is left."""
    below = _descendants(process.pid)
    if process.poll() is None:
        if port is not None:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("POST", "/api/shutdown", headers={"Authorization": f"token {token}"})
                conn.getresponse().read()
                conn.close()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    deadline = time.monotonic() + 15
    left = {pid for pid in below if _alive(pid)}
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {pid for pid in left if _alive(pid)}
    for pid in left:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if left:
        pytest.fail(f"processes left running after jupyterlab stopped (killed now): {sorted(left)}")


@pytest.fixture
def page(chromium: str, tmp_path: Path) -> Iterator[Any]:
    """A chromium page (system chromium, new empty profile) with a viewport tall enough for the form."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1400},
            env={**os.environ, "FONTCONFIG_FILE": str(_fonts_conf(tmp_path))},
        )
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def _fonts_conf(tmp_path: Path) -> Path:
    """A fontconfig file adding the Noto Sans Khmer of ``fontpkg-noto-sans-khmer`` to the system fonts.

    A Cambodian analyst's machine has a Khmer font; this one may not, and the screenshots should read.
    """
    import fontpkg_noto_sans_khmer as package

    conf = tmp_path / "fonts.conf"
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        '  <include ignore_missing="yes">/etc/fonts/fonts.conf</include>\n'
        f"  <dir>{Path(package.ROOT) / 'files'}</dir>\n"
        f"  <cachedir>{tmp_path / 'fontcache'}</cachedir>\n"
        "</fontconfig>\n"
    )
    return conf


class Shots:
    """Numbered screenshots of the page, kept as test artefacts."""

    def __init__(self, page: Any, folder: Path) -> None:
        self.page, self.folder, self.n = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str) -> None:
        """Screenshot the visible page as ``NN-name.png``."""
        self.n += 1
        self.page.screenshot(path=str(self.folder / f"{self.n:02d}-{name}.png"))


def first_customers() -> dict[str, pd.Series]:
    """Per language, the first sample customer who consented (the one each template's preview shows)."""
    frame = pd.read_csv(ROOT / "sample_data" / "customers.csv", dtype="string").head(200)
    frame = frame[frame["opt_in"] == "true"]
    return {language: group.iloc[0] for language, group in frame.groupby("language")}


def run_cell(page: Any, code: str) -> str:
    """Add a cell at the end of the notebook, type ``code``, run it with Shift+Enter and return its output text."""
    from playwright.sync_api import expect

    cells = page.locator(".jp-Notebook .jp-Cell")
    before = cells.count()
    cells.last.click()  # select the last cell (command mode after Escape), then "b": a new cell below
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    expect(cells).to_have_count(before + 1)
    editor = cells.last.locator(".cm-content")
    editor.click()
    page.keyboard.insert_text(code)  # as pasted: no auto-closed brackets
    page.keyboard.press("Shift+Enter")
    output = cells.nth(before).locator(".jp-OutputArea-output")
    expect(output.first).to_be_visible(timeout=SLOW)
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1, timeout=SLOW)
    return output.first.inner_text()


def widget(page: Any, name: str) -> Any:
    """The element of a form control (its CSS class is ``plasgate-<attribute>``)."""
    return page.locator(f".plasgate-form .plasgate-{name}")


def retype(box: Any, text: str) -> None:
    """Select everything in a text box and type ``text`` over it, key by key, as a person does."""
    box.click()
    box.press("Control+a")
    box.press("Delete")
    box.press_sequentially(text, delay=15)


def test_send_form_in_jupyterlab(lab: Lab, page: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from playwright.sync_api import expect

    folder = Path(os.environ.get("PLASGATE_SCREENSHOTS") or tmp_path / "screenshots")
    shot = Shots(page, folder)
    first = first_customers()
    en, km = first["en"], first["km"]
    started = time.monotonic()

    # open the notebook and Run All, as a person does; Run All shows the form and sends nothing
    page.goto(f"{lab.url}lab/tree/{NOTEBOOK.name}?token={lab.token}")
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=SLOW)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    form = page.locator(".plasgate-form")
    expect(form).to_be_visible(timeout=SLOW)
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=SLOW)
    form.scroll_into_view_if_needed()
    # the notebook gave one template per language and the opt_in consent column
    expect(widget(page, "template-mode").get_by_role("button", name="one per value of a column")).to_have_class(
        re.compile(r"\bmod-active\b")
    )
    expect(widget(page, "template-by").locator("select")).to_have_value("language")
    expect(widget(page, "consent").locator("select")).to_have_value("opt_in")
    expect(widget(page, "template")).to_be_hidden()  # the one-template box is not in use
    expect(widget(page, "quiet-hours-on").locator("input")).to_be_checked()  # on in the form, 21:00-08:00
    expect(widget(page, "quiet-hours").locator("input")).to_have_value("21:00-08:00")
    en_editor, km_editor = widget(page, "template-for-en"), widget(page, "template-for-km")
    expect(en_editor.locator(".plasgate-template-preview")).to_contain_text(f"Hi {en['first_name']}")
    expect(km_editor.locator(".plasgate-template-preview")).to_contain_text(f"សួស្តី {km['first_name']}")
    expect(widget(page, "preview")).to_contain_text(f"Hi {en['first_name']}")
    shot("form-after-run-all")
    assert widget(page, "results").inner_text().strip() == ""
    assert widget(page, "progress-box").is_hidden()

    # pick columns
    widget(page, "phone").locator("select").select_option("phone")
    widget(page, "key").locator("select").select_option("customer_id")
    expect(widget(page, "key").locator("select")).to_have_value("customer_id")

    # type each language's template: each preview follows its own text as it is typed
    en_text, km_text = en_editor.locator("textarea"), km_editor.locator("textarea")
    en_preview, km_preview = (
        en_editor.locator(".plasgate-template-preview"),
        km_editor.locator(".plasgate-template-preview"),
    )
    retype(en_text, "Hi {{ first_name }}, your code {{ coupon }} works in {{ city }}.")
    en_message = f"Hi {en['first_name']}, your code {en['coupon']} works in {en['city']}."
    expect(en_preview).to_contain_text(en_message)
    retype(km_text, "សួស្តី {{ first_name }}! កូដ {{ coupon }}")
    km_message = f"សួស្តី {km['first_name']}! កូដ {km['coupon']}"
    expect(km_preview).to_contain_text(km_message)
    expect(km_preview).to_contain_text("UCS-2")
    expect(en_preview).to_contain_text(en_message)  # typing Khmer left the English template alone
    expect(widget(page, "error")).to_have_text("")
    km_editor.scroll_into_view_if_needed()
    shot("live-preview-per-language")

    # mask a column: each report view shows stars, the handset still gets the code
    widget(page, "mask").locator("select").select_option(["coupon"])
    expect(km_preview).to_contain_text(f"សួស្តី {km['first_name']}! កូដ ******")
    expect(en_preview).to_contain_text(f"#ma#{en['coupon']}#ma#")
    preview = widget(page, "preview")
    expect(preview).to_contain_text(f"Hi {en['first_name']}, your code ****** works in {en['city']}.")
    shot("masked-coupon")

    # consent: without the opt_in column more customers would get the message; with it, fewer
    notice = widget(page, "notice")
    consent = widget(page, "consent").locator("select")
    consent.select_option(label="(none: everyone consents)")
    widget(page, "dry-run-button").click()
    expect(notice).to_contain_text("Dry run: nothing was sent.")
    everyone = int(notice.locator("tr", has_text="recipients").locator("td").inner_text())
    consent.select_option("opt_in")
    retype(widget(page, "frequency-cap").locator("input"), "2/7D")  # the first campaign of this ledger: no one capped
    widget(page, "dry-run-button").click()
    expect(notice.locator("tr", has_text="frequency cap").locator("td")).to_contain_text("2 per 7 days")
    expect(notice.locator("tr", has_text="left out (why)")).to_contain_text("no_consent")
    recipients = int(notice.locator("tr", has_text="recipients").locator("td").inner_text())
    assert 100 < recipients < everyone
    # the row labelled "quiet hours" (inside them, a "scheduled" row also ends "...the end of the quiet hours")
    quiet_row = notice.locator("tr", has_text=re.compile(r"^\s*quiet hours"))
    expect(quiet_row.locator("td")).to_have_text("21:00-08:00 Asia/Phnom_Penh")
    per_template = notice.locator("tr", has_text="templates").locator("td").inner_text()
    counts = dict(item.split() for item in per_template.split(", "))
    assert set(counts) == {"en", "km"} and sum(map(int, counts.values())) == recipients
    shot("dry-run")

    # send: confirm with the same totals, then watch the reports arrive and stop waiting
    widget(page, "send-button").click()
    expect(widget(page, "confirm-text")).to_contain_text(f"Send {recipients} message(s)? Please confirm.")
    shot("confirm")
    widget(page, "confirm-button").click()
    stop = widget(page, "stop-button")
    expect(stop).to_be_visible(timeout=SLOW)
    expect(widget(page, "send-button")).to_be_enabled()  # the buttons are back while reports arrive
    expect(widget(page, "dry-run-button")).to_be_enabled()
    status = widget(page, "status")
    expect(status).to_contain_text("Waiting for delivery reports")
    expect(notice).to_contain_text(f"accepted {recipients}, rejected 0")
    _assert_not_cut(status)
    shot("waiting-for-reports")
    stop.click()
    expect(status).to_contain_text("Done", timeout=SLOW)
    expect(status).to_contain_text(re.compile(r"you stopped waiting with delivery reports: \d+ of \d+ final"))
    expect(stop).to_be_hidden()
    _assert_not_cut(status)
    results = widget(page, "results")
    expect(results).to_contain_text(f"accepted {recipients}, rejected 0, uncertain 0")
    table = results.locator(".plasgate-table table")
    expect(widget(page, "by").locator("select")).to_have_value("template")  # grouped by template
    expect(table.locator("th", has_text=re.compile(r"^km$"))).to_have_count(1)
    expect(table.locator("th", has_text=re.compile(r"^en$"))).to_have_count(1)
    expect(results.locator("img")).to_be_visible()
    results.scroll_into_view_if_needed()
    shot("results-by-template")

    # report by carrier: invalid numbers have no carrier and read "unknown", not NaN
    by = widget(page, "by").locator("select")
    by.select_option("carrier")
    expect(table).to_contain_text("unknown")
    assert "NaN" not in table.inner_text()

    # report by first name: a long table, which scrolls in its box
    by.select_option("first_name")
    box = results.locator(".plasgate-table")
    expect(box.locator("table")).to_contain_text(str(en["first_name"]))
    sizes = box.evaluate("el => [el.scrollHeight, el.clientHeight, getComputedStyle(el).overflowY]")
    assert sizes[0] > sizes[1] and sizes[2] == "auto", sizes
    box.hover()
    page.mouse.wheel(0, 400)
    deadline = time.monotonic() + 10
    while box.evaluate("el => el.scrollTop") == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert box.evaluate("el => el.scrollTop") > 0, "the results table did not scroll"
    shot("results-table-scrolled")

    # a broken template shows its error beside it and in the form, and the preview goes blank
    en_text.click()
    en_text.press("Control+a")
    en_text.press_sequentially("Hi {{ first_name", delay=15)
    error = widget(page, "error")
    expect(error).to_contain_text("Error:")
    expect(error).to_contain_text("template")
    expect(en_preview).to_contain_text("Error:")
    expect(km_preview).to_contain_text(km["first_name"])  # the Khmer template still renders
    expect(preview).to_have_text("")
    error.scroll_into_view_if_needed()
    shot("broken-template")

    # A/B variants: two editors pre-filled, each previewing the chosen row; Add variant adds one, Remove takes it away
    widget(page, "template-mode").get_by_role("button", name="A/B variants").click()
    variants = page.locator(".plasgate-form .plasgate-variant")
    expect(variants).to_have_count(2)
    expect(variants.nth(0).locator(".plasgate-variant-name input")).to_have_value("A")
    expect(variants.nth(1).locator(".plasgate-variant-name input")).to_have_value("B")
    row0 = pd.read_csv(ROOT / "sample_data" / "customers.csv", dtype="string").iloc[0]
    expect(variants.nth(0).locator(".plasgate-template-preview")).to_contain_text(f"Hi {row0['first_name']}")
    retype(variants.nth(1).locator("textarea"), "Hello {{ first_name }}, {{ coupon }} is yours")
    b_preview = variants.nth(1).locator(".plasgate-template-preview")
    expect(b_preview).to_contain_text(f"Hello {row0['first_name']}, #ma#{row0['coupon']}#ma# is yours")
    widget(page, "add-variant-button").click()
    expect(variants).to_have_count(3)
    expect(variants.nth(2).locator(".plasgate-variant-name input")).to_have_value("C")
    expect(variants.nth(2).locator("textarea")).to_have_value("Hello {{ first_name }}, {{ coupon }} is yours")
    variants.nth(2).locator(".plasgate-variant-remove").click()
    expect(variants).to_have_count(2)
    expect(widget(page, "holdout").locator("input")).to_have_value("0.1")
    which = preview.locator("tr").filter(has=page.locator("th", has_text=re.compile(r"^(template|variant)$")))
    expect(which.locator("td")).to_have_text(re.compile(r"^(A|B|holdout)$"))  # the variant row 0 gets
    expect(error).to_have_text("")
    variants.nth(1).scroll_into_view_if_needed()
    shot("ab-variants")

    # what reached the simulator: exactly the confirmed messages, each once, Khmer text to Khmer customers
    counted = run_cell(
        page,
        'records = sim.records()\nstates = ledger.messages("form-demo")["state"]\n'
        'frame = form.last_plan.frame\nkhmer = set(frame.loc[frame["template"] == "km", "msisdn"])\n'
        'print("received", len(records), "distinct", len({r["to"] for r in records}), '
        '"accepted", int((states == "accepted").sum()), "khmer", '
        'sum(r["delivered_text"].startswith("សួស្តី") == (r["to"] in khmer) for r in records))',
    )
    n = recipients
    assert counted.strip() == f"received {n} distinct {n} accepted {n} khmer {n}"
    shot("simulator-count")
    run_cell(page, 'shut_down()\nprint("closed")')
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(f"\nbrowser test: {elapsed:.0f} s in the browser; screenshots in {folder}")


def _assert_not_cut(locator: Any) -> None:
    """The element shows its whole text: nothing is clipped sideways."""
    clipped = locator.evaluate(
        "el => [el, ...el.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1).length"
    )
    assert clipped == 0, f"text cut in {locator}: {locator.inner_text()!r}"
    assert re.search(r"\S", locator.inner_text())

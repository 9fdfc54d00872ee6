"""SendForm driven as a person would (set ``.value``, ``.click()``) against the simulator over real sockets."""

from __future__ import annotations

import html
import re
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import ipywidgets as w
import pandas as pd
import pytest
import traitlets

from plasgate_nb.callbacks import CallbackServer
from plasgate_nb.campaign import Campaign
from plasgate_nb.errors import ConfigError
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.pacing import PHNOM_PENH
from plasgate_nb.simulator import Fault, RateLimits, Simulator, SimulatorConfig
from plasgate_nb.smpp import SmppConfig
from plasgate_nb.widgets import SendForm, transport_options
from tests.conftest import gateway_for

PRICE = 0.012
TEMPLATE = "Hi {{ first_name }}, your code is {{ coupon }}"


@pytest.fixture(scope="module")
def sim() -> Iterator[Simulator]:
    # clock_speed: delivery reports come 100x faster than real time
    config = SimulatorConfig(seed=1, rate_limits=RateLimits.off(), clock_speed=100.0, callback_retry_delay=0.05)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


@pytest.fixture
def gateway(sim: Simulator) -> Gateway:
    sim.clear_faults()
    return gateway_for(sim, read_timeout=5.0)


_blocks = iter(range(100, 1000, 10))


def customers() -> pd.DataFrame:
    """Six customers with their own number block: four sendable, one invalid, one duplicate."""
    block = next(_blocks)
    phones = [f"012 {block:03d} 01{i}" for i in range(4)]
    return pd.DataFrame(
        {
            "phone": [*phones, "12345", phones[0]],
            "first_name": ["Dara", "Sophea", "Vichet", "ចិន្តា", "Lida", "Dara"],
            "coupon": ["K7Q2", "M9X4", "Z1Z1", "P0P0", "A1A1", "K7Q2"],
            "city": ["Phnom Penh", "Siem Reap", "Battambang", "Kampot", "Kep", "Phnom Penh"],
        },
        index=pd.Index([f"c{block}-{i}" for i in range(6)], name="customer"),
    )


def ok_numbers(df: pd.DataFrame) -> Counter[str]:
    """The Plasgate form of the four sendable numbers of ``customers()``."""
    return Counter("855" + p.replace(" ", "")[1:] for p in df["phone"].iloc[:4])


@pytest.fixture
def form(gateway: Gateway, tmp_path: Path) -> Iterator[SendForm]:
    f = any_hour_form(
        customers(),
        campaign="spring",
        gateway=gateway,
        ledger=tmp_path / "ledger.db",
        price_per_segment=PRICE,
        template=TEMPLATE,
    )
    yield f
    f.close()


def any_hour_form(df: pd.DataFrame, **options: Any) -> SendForm:
    """A SendForm with quiet hours off: the suite runs at any hour (the quiet-hours tests set their own window)."""
    options.setdefault("quiet_hours", None)
    return SendForm(df, **options)


def cells(fragment: str) -> dict[str, str]:
    """The label -> value cells of a form HTML table, as plain text."""
    pairs = re.findall(r"<th[^>]*>(.*?)</th><td[^>]*>(.*?)</td>", fragment, re.S)
    return {html.unescape(k): html.unescape(v) for k, v in pairs}


def text(fragment: str) -> str:
    """An HTML fragment as plain text."""
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def status_text(form: SendForm) -> str:
    """The line beside the progress bar as plain text ("Done: accepted 4, ...")."""
    return " ".join(text(form.status.value).split()).replace(" :", ":")


def descendants(widget: w.Widget) -> list[w.Widget]:
    """Every widget shown inside ``widget``."""
    found = []
    for child in getattr(widget, "children", ()):
        found += [child, *descendants(child)]
    return found


def outputs_text(output: w.Output) -> str:
    """Everything in an Output widget as text (streams and text/plain of displays)."""
    parts = [o.get("text") or o.get("data", {}).get("text/plain", "") for o in output.outputs]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- preview
def test_preview_follows_the_template_and_the_row(form: SendForm) -> None:
    shown = cells(form.preview.value)
    assert shown["message"] == "Hi Dara, your code is K7Q2"
    assert (shown["encoding"], shown["segments"], shown["cost"]) == ("GSM-7", "1", f"{PRICE:.4f} USD")
    form.row.value = 1
    assert cells(form.preview.value)["message"] == "Hi Sophea, your code is M9X4"
    form.template.value = "Bonjour {{ first_name }} from {{ city }}"
    shown = cells(form.preview.value)
    assert shown["message"] == "Bonjour Sophea from Siem Reap"
    assert shown["to"] == ok_numbers(form.df).most_common()[1][0]
    form.row.value = 3  # a Khmer name: UCS-2
    shown = cells(form.preview.value)
    assert shown["message"] == "Bonjour ចិន្តា from Kampot"
    assert shown["encoding"] == "UCS-2"
    form.template.value = "x" * 161  # two GSM-7 parts cost twice
    assert (cells(form.preview.value)["segments"], cells(form.preview.value)["cost"]) == ("2", f"{2 * PRICE:.4f} USD")
    form.row.value = 4  # the invalid number is shown as such and costs nothing
    shown = cells(form.preview.value)
    assert shown["audience"].startswith("invalid") and shown["cost"] == "0.0000 USD"
    assert form.error.value == ""


def test_masked_column_shows_stars_in_the_report_view(form: SendForm) -> None:
    assert cells(form.preview.value)["report view"] == "Hi Dara, your code is K7Q2"
    form.mask.value = ("coupon",)
    shown = cells(form.preview.value)
    assert shown["report view"] == "Hi Dara, your code is ******"
    assert shown["message"] == "Hi Dara, your code is #ma#K7Q2#ma#"
    form.template.value = "Code {{ coupon|lower }} for {{ first_name }}"  # masking survives filters
    assert cells(form.preview.value)["report view"] == "Code ****** for Dara"


def test_every_dropdown_shows_a_choice(form: SendForm) -> None:
    """No dropdown starts blank: the row index and the overall summary are choices with their own labels."""
    dropdowns = [c for c in vars(form).values() if isinstance(c, w.Dropdown)]
    assert {d.description for d in dropdowns} == {
        "phone column",
        "key column",
        "consent column",
        "per value of",
        "transport",
        "report by",
    }
    assert all(d.index is not None and d.label for d in dropdowns)
    assert (form.key.label, form.key_column) == ("(row index)", None)
    form.key.value = "coupon"
    assert form.key_column == "coupon"


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("template", "Hi {{ first_name", "template"),
        ("template", "Hi {{ nickname }}", "'nickname'"),
        ("template", "   ", "template is empty"),
        ("sender", "", "sender is empty"),
        ("sender", "A very long sender", "at most"),
        ("name", "", "campaign name"),
        ("phone", "city", "no row can be sent"),
        ("key", "first_name", "duplicate values"),
        ("schedule", "2001-01-01 09:00:00", "in the past"),
        ("schedule", "tomorrow", "YYYY-MM-DD HH:MM:SS"),
    ],
)
def test_invalid_input_shows_an_error_and_sends_nothing(
    form: SendForm, sim: Simulator, field: str, value: str, expected: str
) -> None:
    before = len(sim.records())
    getattr(form, field).value = value
    for button in (form.dry_run_button, form.send_button):
        button.click()
        assert expected in text(form.error.value)
        assert form.confirm_box.layout.display == "none"
    form.confirm_button.click()
    assert "nothing to confirm" in text(form.error.value)
    assert not form.running
    assert len(sim.records()) == before


def test_missing_credentials_name_the_environment_variable(sim: Simulator, tmp_path: Path) -> None:
    no_secret = Gateway(base_url=sim.url, private_key="k", sender="SMS Info")
    f = any_hour_form(customers(), campaign="c", gateway=no_secret, ledger=tmp_path / "l.db", template=TEMPLATE)
    try:
        f.send_button.click()
        assert "PLASGATE_SECRET" in text(f.error.value)
        assert f.confirm_box.layout.display == "none"
    finally:
        f.close()


def test_dry_run_needs_no_credentials_and_send_names_them(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``plasgate-nb send --dry-run``: totals without credentials; Send stops and names what is missing."""
    for name in ("PRIVATE_KEY", "SECRET", "USERNAME", "PASSWORD", "SENDER"):
        monkeypatch.delenv(f"PLASGATE_{name}", raising=False)
    monkeypatch.setenv("PLASGATE_BASE_URL", sim.url)  # a request that left by mistake would be recorded
    before = len(sim.records())
    f = any_hour_form(
        customers(), campaign="no-keys", ledger=tmp_path / "l.db", template=TEMPLATE, price_per_segment=PRICE
    )
    try:
        f.dry_run_button.click()
        assert f.error.value == ""
        assert "Dry run: nothing was sent." in text(f.notice.value)
        assert (cells(f.notice.value)["recipients"], cells(f.notice.value)["cost"]) == ("4", f"{4 * PRICE:.4f} USD")
        assert "PLASGATE_PRIVATE_KEY" in text(f.notice.value)  # the note says what a send would need
        f.transport.value = "http"
        f.dry_run_button.click()
        assert f.error.value == "" and "PLASGATE_USERNAME" in text(f.notice.value)
        f.send_button.click()
        assert "PLASGATE_USERNAME" in text(f.error.value) and "PLASGATE_PASSWORD" in text(f.error.value)
        assert f.confirm_box.layout.display == "none"
        f.confirm_button.click()
        assert not f.running
    finally:
        f.close()
    assert len(sim.records()) == before
    assert len(Ledger(tmp_path / "l.db").messages("no-keys")) == 0


def test_a_refusing_gateway_is_reported_in_the_form(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    before = len(sim.records())
    f = any_hour_form(
        customers(),
        campaign="refused",
        gateway=gateway.with_options(secret="not-the-secret"),
        ledger=tmp_path / "l.db",
        template=TEMPLATE,
    )
    try:
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20)
        shown = text(f.notice.value) + text(f.error.value)
        assert "rejected 4" in shown and "accepted 0" in shown
        assert f.progress.bar_style == "warning" and not f.send_button.disabled
        assert "4 x " in outputs_text(f.results) and "401" in outputs_text(f.results)  # why, from the ledger
        assert "not-the-secret" not in shown + outputs_text(f.results)
    finally:
        f.close()
    assert len(sim.records()) == before


# ---------------------------------------------------------------------------------------------- dry run and send
def test_dry_run_shows_totals_and_sends_nothing(form: SendForm, sim: Simulator) -> None:
    before = len(sim.records())
    form.template.value = TEMPLATE + " " + "y" * 140  # ~167 characters: 2 GSM-7 parts, 3 UCS-2 parts (Khmer name)
    form.dry_run_button.click()
    totals = cells(form.notice.value)
    assert "Dry run: nothing was sent." in text(form.notice.value)
    assert (totals["recipients"], totals["segments"], totals["cost"]) == ("4", "9", f"{9 * PRICE:.4f} USD")
    assert totals["encodings"] == "GSM-7: 3 msg / 6 parts, UCS-2: 1 msg / 3 parts"
    assert "invalid 1" in totals["left out (why)"] and "duplicate 1" in totals["left out (why)"]
    assert totals["projected duration"].endswith("s")
    assert form.error.value == ""
    assert len(sim.records()) == before
    assert len(form._ledger_obj().messages("spring")) == 0  # a dry run plans nothing


def test_send_asks_to_confirm_then_sends_the_ok_rows_exactly_once(form: SendForm, sim: Simulator) -> None:
    df_before = form.df.copy()
    before = len(sim.records())
    form.mask.value = ("coupon",)
    form.send_button.click()
    assert form.confirm_box.layout.display == "flex"
    totals = cells(form.confirm_text.value)
    assert "Send 4 message(s)?" in text(form.confirm_text.value)
    assert (totals["recipients"], totals["segments"], totals["cost"]) == ("4", "4", f"{4 * PRICE:.4f} USD")
    assert len(sim.records()) == before  # nothing leaves before Confirm
    form.confirm_button.click()
    assert form.wait(20)
    assert form.error.value == ""
    records = sim.records(offset=before)
    assert Counter(r["to"] for r in records) == ok_numbers(form.df)
    assert {r["content_report"] for r in records} == {
        f"Hi {n}, your code is ******" for n in form.df["first_name"].iloc[:4]
    }
    assert {r["delivered_text"] for r in records} == {
        f"Hi {n}, your code is {c}" for n, c in form.df[["first_name", "coupon"]].iloc[:4].values
    }
    assert {r["attempt"] for r in records} == {1}
    assert "accepted 4" in text(form.notice.value)
    assert (form.progress.value, form.progress.max) == (4, 4)
    results = outputs_text(form.results)
    assert "sent 4 message(s)" in results and "accepted 4, rejected 0, uncertain 0" in results
    assert any("image/png" in o.get("data", {}) for o in form.results.outputs)
    # clicking Send again sends nothing new, and says so
    form.send_button.click()
    assert form.confirm_box.layout.display == "none"
    assert "Nothing new to send" in text(form.notice.value) and "4 row(s) were already sent" in text(form.notice.value)
    form.confirm_button.click()
    assert len(sim.records()) == before + 4
    pd.testing.assert_frame_equal(form.df, df_before)  # the caller's frame is untouched


def test_cancel_and_changed_settings_drop_the_confirmation(form: SendForm, sim: Simulator) -> None:
    before = len(sim.records())
    form.send_button.click()
    form.cancel_button.click()
    assert form.confirm_box.layout.display == "none" and "Cancelled" in text(form.notice.value)
    form.send_button.click()
    form.sender.value = "Other"  # what was confirmed is no longer what would be sent
    assert form.confirm_box.layout.display == "none" and "press Send again" in text(form.notice.value)
    form.confirm_button.click()
    assert "nothing to confirm" in text(form.error.value)
    assert not form.running and len(sim.records()) == before


@pytest.mark.parametrize("transport", [value for _, value in transport_options()])
def test_each_transport_of_the_dropdown_sends(sim: Simulator, gateway: Gateway, tmp_path: Path, transport: str) -> None:
    df = customers()
    before = len(sim.records())
    f = any_hour_form(df, campaign=f"via-{transport}", gateway=gateway, ledger=tmp_path / "l.db", template=TEMPLATE)
    try:
        f.transport.value = transport
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20)
        assert f.error.value == ""
        assert Counter(r["to"] for r in sim.records(offset=before)) == ok_numbers(df)
    finally:
        f.close()


def test_sending_runs_in_the_background(form: SendForm, sim: Simulator) -> None:
    sim.set_faults(Fault("delay_after", route="batch", count=1, delay=0.8))  # the answer comes 0.8 s late
    before = len(sim.records())
    form.send_button.click()
    started = time.monotonic()
    form.confirm_button.click()
    assert time.monotonic() - started < 0.5 and form.running
    assert form.send_button.disabled
    form.send_button.click()  # a second send cannot start meanwhile
    assert "a send is running" in text(form.error.value)
    form.row.value = 2  # the kernel stays free: the preview still follows
    assert cells(form.preview.value)["message"].startswith("Hi Vichet")
    assert form.wait(20) and not form.running and not form.send_button.disabled
    assert Counter(r["to"] for r in sim.records(offset=before)) == ok_numbers(form.df)
    assert "accepted 4" in text(form.notice.value)


def test_results_fill_in_as_delivery_reports_arrive(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    df = customers()
    with CallbackServer(ledger, mode="thread") as receiver:
        f = any_hour_form(
            df,
            campaign="dlr",
            gateway=gateway,
            ledger=ledger,
            receiver=receiver,
            template=TEMPLATE,
            report_timeout=20,
            poll=0.2,
        )
        shown: list[tuple[dict, ...]] = []  # the results area after each complete refresh (it ends with a chart)

        def on_change(change: dict) -> None:
            outputs = change["new"]
            if outputs and "image/png" in outputs[-1].get("data", {}):
                shown.append(outputs)

        f.results.observe(on_change, names="outputs")
        try:
            assert f.dlr.value and not f.dlr.disabled
            f.by.value = "city"
            f.send_button.click()
            f.confirm_button.click()
            assert f.wait(30)
            results = outputs_text(f.results)
            assert "delivery reports: 4 of 4 final" in results
            table = [o for o in f.results.outputs if "text/html" in o.get("data", {})]
            assert len(table) == 1 and "Siem Reap" in table[0]["data"]["text/html"]
            assert "overflow: auto" in table[0]["data"]["text/html"]  # the table scrolls in its box
            assert any("image/png" in o.get("data", {}) for o in f.results.outputs)
            assert (f.progress.value, f.progress.max) == (4, 4)
            status = status_text(f)
            assert status.startswith("Done") and "delivery reports: 4 of 4 final" in status
            assert f.stop_button.layout.display == "none" and not f.send_button.disabled
            # the area was filled more than once: first right after the send, before any report was
            # counted, then as reports came in; each refresh replaces the previous one
            assert len(shown) >= 2
            first = "\n".join(o.get("text", "") for o in shown[0])
            assert "sent 4 message(s)" in first and "delivery reports:" not in first
            assert "delivery reports: 4 of 4 final" in "\n".join(o.get("text", "") for o in shown[-1])
            for outputs in shown:
                assert sum("text/html" in o.get("data", {}) for o in outputs) == 1
                assert sum(o.get("name") == "stdout" for o in outputs) >= 1
        finally:
            f.results.unobserve(on_change, names="outputs")
            f.close()
    ledger.close()


def test_buttons_come_back_when_sending_ends_and_stop_waiting_ends_the_wait(
    sim: Simulator, gateway: Gateway, tmp_path: Path
) -> None:
    """A number whose final report never comes: the form waits, the buttons are back, Stop waiting ends it."""
    ledger = Ledger(tmp_path / "l.db")
    df = customers().iloc[:2]
    df = pd.concat([df, pd.DataFrame({"phone": ["010 000 004"], "first_name": ["Never"], "coupon": ["N0N0"]})])
    df.index = pd.Index(["a", "b", "never"], name="customer")
    before = len(sim.records())
    with CallbackServer(ledger, mode="thread") as receiver:
        f = any_hour_form(
            df, campaign="stop", gateway=gateway, ledger=ledger, receiver=receiver, template=TEMPLATE, poll=0.1
        )
        try:
            assert f.stop_button.layout.display == "none"  # nothing to stop yet
            f.send_button.click()
            f.confirm_button.click()
            deadline = time.monotonic() + 20
            while f.sending and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not f.sending and f.running  # sent; still waiting for the third report
            assert not f.send_button.disabled and not f.dry_run_button.disabled
            assert f.stop_button.layout.display is None and not f.stop_button.disabled
            assert "accepted 3" in text(f.notice.value)
            f.dry_run_button.click()  # usable while reports arrive: nothing new would be sent
            assert f.error.value == "" and cells(f.notice.value)["already sent (not resent)"] == "3"
            while time.monotonic() < deadline and "2 of 3 final" not in status_text(f):
                time.sleep(0.02)
            assert status_text(f).startswith("Waiting for delivery reports: 2 of 3 final")
            assert f.running
            f.stop_button.click()
            assert f.wait(10)
            status = status_text(f)
            assert status.startswith("Done") and "you stopped waiting" in status and "2 of 3 final" in status
            assert f.stop_button.layout.display == "none"
            assert "delivery reports: 2 of 3 final" in outputs_text(f.results)
        finally:
            f.close()
    ledger.close()
    assert Counter(r["to"] for r in sim.records(offset=before)) == Counter(
        [*ok_numbers(df.iloc[:2]).elements(), "85510000004"]
    )


def test_a_new_send_ends_the_wait_for_the_previous_reports(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    df = pd.DataFrame({"phone": ["010 000 004"], "first_name": ["Never"], "coupon": ["N0N0"]})
    with CallbackServer(ledger, mode="thread") as receiver:
        f = any_hour_form(
            df, campaign="first", gateway=gateway, ledger=ledger, receiver=receiver, template=TEMPLATE, poll=0.1
        )
        try:
            f.send_button.click()
            f.confirm_button.click()
            deadline = time.monotonic() + 20
            while f.sending and time.monotonic() < deadline:
                time.sleep(0.02)
            assert f.running and not f.send_button.disabled
            f.name.value = "second"
            f.send_button.click()
            f.confirm_button.click()  # the first wait ends; the second send starts
            deadline = time.monotonic() + 20
            while f.sending and time.monotonic() < deadline:
                time.sleep(0.02)
            assert "Sent campaign 'second'" in text(f.notice.value) and f.running
            f.stop_button.click()
            assert f.wait(10) and status_text(f).startswith("Done")
        finally:
            f.close()
    assert [len(ledger.messages(name)) for name in ("first", "second")] == [1, 1]
    ledger.close()


def test_without_reports_the_done_state_says_so_and_an_unknown_carrier_reads_unknown(
    form: SendForm, sim: Simulator
) -> None:
    before = len(sim.records())
    form.send_button.click()
    form.confirm_button.click()
    assert form.wait(20)
    status = status_text(form)
    assert status.startswith("Done") and "accepted 4" in status and "delivery reports not requested" in status
    assert form.progress.bar_style == "success" and form.stop_button.layout.display == "none"
    table = next(o for o in form.results.outputs if "text/html" in o.get("data", {}))
    plain = table["data"]["text/plain"]
    assert form.by.value == "carrier"
    groups = [line.split()[0] for line in plain.splitlines()[2:]]  # under the header and the index name
    assert "unknown" in groups and "NaN" not in groups and "nan" not in groups  # the invalid number's carrier
    assert "<th>unknown</th>" in table["data"]["text/html"]
    assert "NaN" not in plain and "NaN" not in table["data"]["text/html"]  # nothing sent there: its rates read "-"
    form.by.value = "city"  # after the send: the results are regrouped at once, nothing is sent
    table = next(o for o in form.results.outputs if "text/html" in o.get("data", {}))
    assert "<th>Siem Reap</th>" in table["data"]["text/html"] and "<th>unknown</th>" not in table["data"]["text/html"]
    assert len(sim.records(offset=before)) == 4
    form.by.value = "(overall)"  # one row, and the funnel chart
    form.name.value = "overall"
    form.send_button.click()
    form.confirm_button.click()
    assert form.wait(20) and form.error.value == ""
    table = next(o for o in form.results.outputs if "text/html" in o.get("data", {}))
    assert table["data"]["text/plain"].splitlines()[1].split()[0] == "all"
    assert [o["data"]["text/plain"] for o in form.results.outputs if "image/png" in o.get("data", {})] == [
        "send funnel"
    ]


def test_a_campaign_object_gives_the_defaults(sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.db")
    campaign = Campaign("autumn", gateway=gateway, ledger=ledger, transport="http", key="coupon", progress=False)
    f = any_hour_form(customers().drop_duplicates("coupon"), campaign=campaign, template=TEMPLATE)
    try:
        assert (f.name.value, f.transport.value, f.key.value, f.sender.value) == (
            "autumn",
            "http",
            "coupon",
            gateway.sender,
        )
        assert not f.dlr.value and f.dlr.disabled  # no receiver: no delivery reports
        assert isinstance(f.widget, w.VBox) and f.template in descendants(f.widget)
        f.dry_run_button.click()
        assert cells(f.notice.value)["recipients"] == "4"
    finally:
        f.close()
    ledger.close()


# ---------------------------------------------------------------------------------------------- consent and templates
KM_TEMPLATE = "សួស្តី {{ first_name }}! កូដ {{ coupon }}"


def multilingual() -> pd.DataFrame:
    """``customers()`` with a language and an opt_in column: Sophea (row 1) said no, so three rows can be sent."""
    df = customers()
    return df.assign(language=["en", "en", "km", "km", "en", "en"], opt_in=["yes", "no", "yes", "true", "1", "yes"])


def multi_form(gateway: Gateway, tmp_path: Path, **options: object) -> SendForm:
    """A form over ``multilingual()``."""
    settings: dict[str, object] = {"campaign": "multi", "ledger": tmp_path / "l.db", "template": TEMPLATE}
    return any_hour_form(multilingual(), gateway=gateway, price_per_segment=PRICE, **{**settings, **options})


def test_the_consent_column_defaults_to_opt_in_and_leaves_out_who_said_no(
    form: SendForm, gateway: Gateway, tmp_path: Path
) -> None:
    assert (form.consent.label, form.consent_column) == ("(none: everyone consents)", None)  # no such column
    f = multi_form(gateway, tmp_path)
    try:
        assert f.consent.value == "opt_in" and f.consent_column == "opt_in"
        f.row.value = 1
        assert cells(f.preview.value)["audience"] == "no_consent: no consent (opt_in is 'no')"
        f.dry_run_button.click()
        totals = cells(f.notice.value)
        assert totals["recipients"] == "3" and "no_consent 1" in totals["left out (why)"]
        f.consent.value = "(none: everyone consents)"  # a person who knows better: every row counts as consenting
        assert cells(f.preview.value)["audience"] == "ok"
        f.dry_run_button.click()
        assert cells(f.notice.value)["recipients"] == "4"
        f.consent.value = "city"  # not a yes/no column: prepare_audience's error, in the form
        assert "neither yes nor no" in text(f.error.value) and "'city'" in text(f.error.value)
    finally:
        f.close()
    off = multi_form(gateway, tmp_path, consent=False)
    try:
        assert off.consent_column is None
    finally:
        off.close()
    with pytest.raises(ConfigError, match="'agreed'"):
        multi_form(gateway, tmp_path, consent="agreed")


def value_editor(form: SendForm, value: object) -> tuple[w.Textarea, w.HTML]:
    """The text box and the live preview of the template for ``value``."""
    editor = form.templates.value_editors[value]
    return editor.text, editor.preview


def test_one_template_per_language_sends_khmer_text_to_khmer_customers(
    gateway: Gateway, sim: Simulator, tmp_path: Path
) -> None:
    f = multi_form(gateway, tmp_path)
    df = f.df
    before = len(sim.records())
    try:
        assert f.by.value == "carrier" and "template" not in f.by.options
        f.template_mode.value = "by"
        assert f.template_by.value == "language"  # the default column
        assert list(f.templates.value_editors) == ["en", "km"]  # the values present, most rows first
        km_text, km_preview = value_editor(f, "km")
        en_text, en_preview = value_editor(f, "en")
        assert km_text.value == en_text.value == TEMPLATE  # pre-filled with the one template
        assert f.by.value == "template"  # the results will be grouped by template
        # each template's preview shows a row that uses it
        assert cells(en_preview.value)["message"] == "Hi Dara, your code is K7Q2"
        assert cells(km_preview.value)["message"] == "Hi Vichet, your code is Z1Z1"
        km_text.value = KM_TEMPLATE  # typed: only the Khmer preview changes
        assert cells(km_preview.value)["message"] == "សួស្តី Vichet! កូដ Z1Z1"
        units = len("សួស្តី Vichet! កូដ Z1Z1".encode("utf-16-le")) // 2
        assert cells(km_preview.value)["size"] == f"UCS-2, {units} characters, 1 part(s)"
        assert cells(en_preview.value)["message"] == "Hi Dara, your code is K7Q2"
        shown = cells(f.preview.value)  # the chosen row (0) with its own template
        assert (shown["template"], shown["message"]) == ("en", "Hi Dara, your code is K7Q2")
        f.row.value = 3
        shown = cells(f.preview.value)
        assert (shown["template"], shown["message"], shown["encoding"]) == ("km", "សួស្តី ចិន្តា! កូដ P0P0", "UCS-2")
        f.mask.value = ("coupon",)
        assert cells(km_preview.value)["report view"] == "សួស្តី Vichet! កូដ ******"
        f.dry_run_button.click()
        assert f.error.value == ""
        totals = cells(f.notice.value)
        assert (totals["recipients"], totals["templates"]) == ("3", "en 1, km 2")
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and f.error.value == ""
    finally:
        f.close()
    texts = {r["to"]: r["delivered_text"] for r in sim.records(offset=before)}
    number = {name: "855" + p.replace(" ", "")[1:] for name, p in zip(df["first_name"], df["phone"], strict=False)}
    assert texts == {
        number["Dara"]: "Hi Dara, your code is K7Q2",
        number["Vichet"]: "សួស្តី Vichet! កូដ Z1Z1",
        number["ចិន្តា"]: "សួស្តី ចិន្តា! កូដ P0P0",
    }
    results = outputs_text(f.results)
    assert "sent 3 message(s)" in results
    table = next(o for o in f.results.outputs if "text/html" in o.get("data", {}))
    assert "<th>km</th>" in table["data"]["text/html"] and "<th>en</th>" in table["data"]["text/html"]


def test_templates_per_value_from_the_constructor_a_missing_value_and_a_broken_one(
    gateway: Gateway, tmp_path: Path
) -> None:
    df = multilingual()
    df.loc[df.index[0], "language"] = None  # Dara's language is unknown: the "no value" template
    with pytest.raises(ConfigError, match="template_by"):
        any_hour_form(df, template={"en": TEMPLATE, "km": KM_TEMPLATE})
    f = any_hour_form(
        df,
        campaign="given",
        gateway=gateway,
        ledger=tmp_path / "l.db",
        template={"en": TEMPLATE, "km": KM_TEMPLATE, "fr": "Bonjour {{ first_name }}"},
        template_by="language",
    )
    try:
        assert f.template_mode.value == "by" and f.by.value == "template"
        assert "No row has 'fr': that template is not used." in text(f.templates.values_note.value)
        assert [repr(v) for v in f.templates.value_editors] == ["'en'", "'km'", "(no value)"]
        assert value_editor(f, "km")[0].value == KM_TEMPLATE
        missing = next(e for e in f.templates.editors() if e.key not in ("en", "km"))
        assert missing.text.value == TEMPLATE  # pre-filled with the first template given
        assert cells(missing.preview.value)["message"] == "Hi Dara, your code is K7Q2"
        missing.text.value = "Hello {{ first_name }}"
        assert cells(f.preview.value)["message"] == "Hello Dara"  # row 0 takes the "no value" template
        assert cells(f.preview.value)["template"] == "default"
        value_editor(f, "km")[0].value = "សួស្តី {{ first_name"  # broken: its own preview says why, the others render
        assert "Error:" in text(value_editor(f, "km")[1].value)
        assert cells(value_editor(f, "en")[1].value)["message"] == "Hi Sophea, your code is M9X4"
        f.dry_run_button.click()
        assert "syntax error" in text(f.error.value) and "Dry run" not in text(f.notice.value)
        value_editor(f, "km")[0].value = "  "
        f.dry_run_button.click()
        assert "the template for 'km' is empty" in text(f.error.value)
    finally:
        f.close()


def test_another_column_gets_its_own_editors_and_typed_texts_come_back(gateway: Gateway, tmp_path: Path) -> None:
    many = pd.DataFrame(
        {
            "phone": [f"012 555 {i:03d}" for i in range(25)],
            "first_name": [f"name{i}" for i in range(25)],  # 25 values: too many for one template each
            "language": ["en", "km"] * 12 + ["en"],
        }
    )
    f = any_hour_form(many, campaign="cols", gateway=gateway, ledger=tmp_path / "l.db", template="Hi {{ first_name }}")
    try:
        f.template_mode.value = "by"
        value_editor(f, "km")[0].value = "សួស្តី {{ first_name }}"
        f.template_by.value = "first_name"
        assert f.templates.value_editors == {}
        assert "has 25 different values" in text(f.templates.values_note.value)
        f.dry_run_button.click()
        assert "at most 20" in text(f.error.value)
        f.template_by.value = "language"
        assert value_editor(f, "km")[0].value == "សួស្តី {{ first_name }}"  # kept while another column was chosen
        f.dry_run_button.click()
        assert f.error.value == "" and cells(f.notice.value)["templates"] == "en 13, km 12"
        f.template_mode.value = "one"  # back to one template: the per-value editors are not used
        f.dry_run_button.click()
        assert "templates" not in cells(f.notice.value)
    finally:
        f.close()


def test_ab_variants_are_assigned_by_assign_variants_and_sent_with_their_templates(
    gateway: Gateway, sim: Simulator, tmp_path: Path
) -> None:
    from plasgate_nb.audience import prepare_audience
    from plasgate_nb.experiments import assign_variants

    df = customers()
    before = len(sim.records())
    f = any_hour_form(df, campaign="ab", gateway=gateway, ledger=tmp_path / "l.db", template=TEMPLATE, holdout=0.0)
    try:
        f.template_mode.value = "variants"
        editors = f.templates.variant_editors
        assert [e.template_key for e in editors] == ["A", "B"]
        assert {e.text.value for e in editors} == {TEMPLATE}
        assert f.by.value == "variant" and f.seed.value == "" and f.holdout.value == 0.0
        extra = f.templates.add_variant()  # the Add variant button
        assert extra.template_key == "C" and extra.text.value == TEMPLATE
        extra.remove_button.click()
        assert [e.template_key for e in f.templates.variant_editors] == ["A", "B"]
        editors[0].text.value = "A: {{ first_name }}"
        editors[1].text.value = "B: {{ first_name }} {{ coupon }}"
        # each variant's preview shows the chosen row as that variant would read
        assert cells(editors[0].preview.value)["message"] == "A: Dara"
        assert cells(editors[1].preview.value)["message"] == "B: Dara K7Q2"
        expected = assign_variants(prepare_audience(df), ["A", "B"], key=None, seed="ab")["variant"]
        assert cells(f.preview.value)["template"] == expected.iloc[0]
        editors[1].name.value = "A"  # two variants with one name: assign_variants refuses
        f.dry_run_button.click()
        assert "distinct" in text(f.error.value)
        editors[1].name.value = "B"
        f.dry_run_button.click()
        sendable = expected[prepare_audience(df)["audience_status"].eq("ok")].value_counts()
        assert cells(f.notice.value)["variants"] == f"A {sendable['A']}, B {sendable['B']}"
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and f.error.value == ""
    finally:
        f.close()
    texts = {r["to"]: r["delivered_text"] for r in sim.records(offset=before)}
    sent = prepare_audience(df).assign(variant=expected).iloc[:4]
    assert texts == {
        row.msisdn: f"A: {row.first_name}" if row.variant == "A" else f"B: {row.first_name} {row.coupon}"
        for row in sent.itertuples()
    }
    f2 = any_hour_form(
        df, campaign="ab", gateway=gateway, ledger=tmp_path / "l2.db", variants={"X": TEMPLATE}, seed="s"
    )
    try:  # a seed of its own: another assignment, as assign_variants gives it
        assert f2.template_mode.value == "variants" and f2.templates.variant_editors[0].remove_button.disabled
        f2.row.value = 0
        expected = assign_variants(prepare_audience(df).iloc[[0]], ["X"], holdout=0.1, seed="s")["variant"].iloc[0]
        shown = cells(f2.preview.value)
        assert shown.get("template", shown.get("variant")) == expected
    finally:
        f2.close()


# ---------------------------------------------------------------------------------------------- pacing
def test_quiet_hours_are_offered_on_and_the_cap_off(gateway: Gateway, tmp_path: Path) -> None:
    """The form's own defaults (Campaign's are off), what the constructor fills in, and what it refuses."""
    from plasgate_nb.pacing import FrequencyCap, QuietHours

    defaults = SendForm(customers(), campaign="p", gateway=gateway, ledger=tmp_path / "l.db", template=TEMPLATE)
    given = any_hour_form(
        customers(),
        campaign="p",
        gateway=gateway,
        ledger=tmp_path / "l.db",
        template=TEMPLATE,
        quiet_hours=("22:00", "7:30"),
        frequency_cap=FrequencyCap(3, "36h"),
    )
    off = any_hour_form(customers(), campaign="p", gateway=gateway, ledger=tmp_path / "l.db", template=TEMPLATE)
    try:
        assert (defaults.quiet_hours.value, defaults.frequency_cap.value) == ("21:00-08:00", "")
        assert defaults.quiet_hours_on.value
        assert (given.quiet_hours.value, given.frequency_cap.value) == ("22:00-07:30", "3/36h")
        assert not off.quiet_hours_on.value and off.quiet_hours.value == "21:00-08:00"  # unticked, still filled in
        assert QuietHours.parse(given.quiet_hours.value) == QuietHours("22:00", "07:30")
    finally:
        for f in (defaults, given, off):
            f.close()
    with pytest.raises(ConfigError, match="time of day"):
        any_hour_form(customers(), quiet_hours="21:00-8")
    with pytest.raises(ConfigError, match="2/7D"):
        any_hour_form(customers(), frequency_cap="twice a week")


def window_around_now(minutes: int = 60) -> tuple[str, str]:
    """A quiet-hours window from ``minutes`` ago to ``minutes`` ahead (Phnom Penh), and when it ends."""
    now = datetime.now(PHNOM_PENH)
    start, end = now - timedelta(minutes=minutes), now + timedelta(minutes=minutes)
    return f"{start:%H:%M}-{end:%H:%M}", f"{end:%Y-%m-%d %H:%M}"


def test_quiet_hours_from_the_form_schedule_a_batch_for_the_end_of_the_window(tmp_path: Path) -> None:
    window, ends = window_around_now()
    df = customers()
    # a simulator on real time: the module's runs 100x faster, and would soon be past the window's end
    with Simulator(SimulatorConfig(seed=3, rate_limits=RateLimits.off()), mode="thread") as real_time:
        f = any_hour_form(
            df, campaign="quiet", gateway=gateway_for(real_time), ledger=tmp_path / "l.db", template=TEMPLATE
        )
        try:
            assert not f.quiet_hours_on.value
            f.quiet_hours_on.value = True
            f.quiet_hours.value = window  # now is inside it
            f.dry_run_button.click()
            totals = cells(f.notice.value)
            assert totals["quiet hours"] == f"{window} Asia/Phnom_Penh"
            assert totals["scheduled for"] == f"{ends} Asia/Phnom_Penh, the end of the quiet hours"
            f.send_button.click()
            f.confirm_button.click()
            assert f.wait(20) and f.error.value == ""
            assert f"Scheduled by the gateway for {ends} Asia/Phnom_Penh" in text(f.notice.value)
        finally:
            f.close()
        records = real_time.records()
    assert Counter(r["to"] for r in records) == ok_numbers(df)
    # the gateway holds them until the window ends, about an hour after it accepted them
    assert all(50 * 60 < r["due_at"] - r["accepted_at"] <= 60 * 60 for r in records)


def test_quiet_hours_leave_other_transports_planned_and_an_unticked_box_sends_now(
    gateway: Gateway, sim: Simulator, tmp_path: Path
) -> None:
    window, ends = window_around_now()
    df = customers()
    before = len(sim.records())
    ledger = Ledger(tmp_path / "l.db")
    f = any_hour_form(df, campaign="later", gateway=gateway, ledger=ledger, template=TEMPLATE, quiet_hours=window)
    try:
        assert f.quiet_hours_on.value and f.quiet_hours.value == window
        f.transport.value = "http"
        f.dry_run_button.click()
        assert cells(f.notice.value)["scheduled for"].startswith(f"not now: quiet hours until {ends}")
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and f.error.value == ""
        assert f"Quiet hours: 4 message(s) left planned until {ends}" in text(f.notice.value)
        assert len(sim.records()) == before
        assert set(ledger.messages("later")["state"]) == {"planned"}
        f.quiet_hours_on.value = False  # the analyst decides it cannot wait
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and "accepted 4" in text(f.notice.value)
        f.quiet_hours_on.value = True
        f.quiet_hours.value = "25:00-08:00"
        f.dry_run_button.click()
        assert "time of day" in text(f.error.value)
    finally:
        f.close()
    assert Counter(r["to"] for r in sim.records(offset=before)) == ok_numbers(df)
    ledger.close()


def test_a_frequency_cap_from_the_form_counts_other_campaigns(gateway: Gateway, sim: Simulator, tmp_path: Path) -> None:
    df = customers()
    before = len(sim.records())
    ledger = Ledger(tmp_path / "l.db")
    f = any_hour_form(df, campaign="first", gateway=gateway, ledger=ledger, template=TEMPLATE)
    try:
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and "accepted 4" in text(f.notice.value)
        f.name.value = "second"
        f.template.value = "Second: " + TEMPLATE
        f.frequency_cap.value = "1/7D"
        f.dry_run_button.click()
        totals = cells(f.notice.value)
        assert totals["frequency cap"].startswith("1 per 7 days")
        assert totals["recipients"] == "0" and "capped 4" in totals["left out (why)"]
        f.send_button.click()
        assert "Nothing new to send for campaign 'second'" in text(f.notice.value)
        assert "Left out: " in text(f.notice.value) and "capped 4" in text(f.notice.value)
        f.frequency_cap.value = "2/7D"  # a second message a week is fine
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and "accepted 4" in text(f.notice.value)
        f.frequency_cap.value = "twice"
        f.dry_run_button.click()
        assert "2/7D" in text(f.error.value)
    finally:
        f.close()
    assert len(sim.records(offset=before)) == 8
    assert set(ledger.messages("second")["state"]) == {"accepted"}
    ledger.close()


def test_a_holdout_is_planned_and_never_sent(gateway: Gateway, sim: Simulator, tmp_path: Path) -> None:
    from plasgate_nb.audience import prepare_audience
    from plasgate_nb.experiments import assign_variants

    df = customers().iloc[:4]  # four sendable customers with distinct coupons, the key
    expected = assign_variants(df, ["A", "B"], holdout=0.4, key="coupon", seed="spring")["variant"]
    assert 0 < (expected == "holdout").sum() < 4  # the seed gives both kinds of rows
    before = len(sim.records())
    ledger = Ledger(tmp_path / "l.db")
    f = any_hour_form(
        df,
        campaign="spring",  # the seed, as the seed field is left empty
        gateway=gateway,
        ledger=ledger,
        variants={"A": "A: {{ first_name }}", "B": "B: {{ first_name }}"},
        holdout=0.4,
    )
    try:
        f.key.value = "coupon"
        for position, variant in enumerate(expected):
            f.row.value = position
            shown = cells(f.preview.value)
            assert shown.get("template", shown.get("variant")) == variant
        f.dry_run_button.click()
        totals = cells(f.notice.value)
        held = int((expected == "holdout").sum())
        assert totals["recipients"] == str(4 - held) and f"holdout {held}" in totals["left out (why)"]
        assert totals["variants"].endswith(f"holdout {held}")
        f.send_button.click()
        f.confirm_button.click()
        assert f.wait(20) and f.error.value == ""
    finally:
        f.close()
    prepared = prepare_audience(df)
    texts = {r["to"]: r["delivered_text"] for r in sim.records(offset=before)}
    assert texts == {
        number: f"{variant}: {name}"
        for number, variant, name in zip(prepared["msisdn"], expected, df["first_name"], strict=True)
        if variant != "holdout"
    }
    states = ledger.messages("spring").set_index("message_key")["state"]
    assert states.to_dict() == {
        c: "holdout" if v == "holdout" else "accepted" for c, v in zip(df["coupon"], expected, strict=True)
    }
    ledger.close()


# ---------------------------------------------------------------------------------------------- SMPP
@pytest.fixture(scope="module")
def smpp_sim() -> Iterator[Simulator]:
    """A thread-mode simulator that also serves SMPP (receipts 100x faster than real time)."""
    config = SimulatorConfig(seed=5, smpp=True, rate_limits=RateLimits.off(), clock_speed=100.0)
    with Simulator(config, mode="thread") as simulator:
        yield simulator


def smpp_settings(sim: Simulator) -> SmppConfig:
    """A session login for the simulator's default account."""
    creds = sim.credentials
    return SmppConfig(
        port=sim.smpp_port, system_id=creds.username, password=creds.password, window=10, response_timeout=2.0
    )


def test_smpp_is_offered_only_with_a_session_config(smpp_sim: Simulator, gateway: Gateway, tmp_path: Path) -> None:
    assert "smpp" not in [v for _, v in transport_options()]
    assert ("SMPP", "smpp") in transport_options(smpp=True)
    plain = any_hour_form(customers(), campaign="no-smpp", gateway=gateway, ledger=tmp_path / "l.db", template=TEMPLATE)
    with_smpp = any_hour_form(
        customers(),
        campaign="smpp",
        gateway=gateway,
        ledger=tmp_path / "l.db",
        template=TEMPLATE,
        smpp=smpp_settings(smpp_sim),
    )
    campaign = Campaign(
        "from-campaign",
        gateway=gateway,
        ledger=tmp_path / "c.db",
        transport="smpp",
        smpp=smpp_settings(smpp_sim),
        receipt_timeout=7.0,
        progress=False,
    )
    from_campaign = any_hour_form(customers(), campaign=campaign, template=TEMPLATE)
    try:
        assert "smpp" not in [v for _, v in plain.transport.options]
        with pytest.raises(traitlets.TraitError):
            plain.transport.value = "smpp"
        assert "smpp" in [v for _, v in with_smpp.transport.options] and with_smpp.transport.value == "batch"
        assert from_campaign.transport.value == "smpp" and from_campaign.receipt_timeout == 7.0
        with pytest.raises(ConfigError, match="SmppConfig"):
            any_hour_form(customers(), smpp={"port": 2775})  # type: ignore[arg-type]
    finally:
        for f in (plain, with_smpp, from_campaign):
            f.close()
    campaign.ledger.close()


def test_send_through_the_form_over_smpp(smpp_sim: Simulator, tmp_path: Path) -> None:
    """Confirm sends the ok rows once over SMPP; receipts fill the results; a reply shows up; re-send sends nothing."""
    creds = smpp_sim.credentials
    gateway = Gateway(base_url=smpp_sim.url, sender=creds.sender)  # no REST keys: SMPP needs none of them
    df = customers()
    ok = ok_numbers(df)
    first = next(iter(ok))
    smpp_sim.reply(first, "Thanks! STOP")  # held by the simulator until the form's session binds
    before = len(smpp_sim.records())
    f = any_hour_form(
        df,
        campaign="via-smpp",
        gateway=gateway,
        ledger=tmp_path / "l.db",
        template=TEMPLATE,
        smpp=smpp_settings(smpp_sim),
        receipt_timeout=10.0,
        price_per_segment=PRICE,
    )
    try:
        f.transport.value = "smpp"
        f.send_button.click()
        assert f.error.value == "" and f.confirm_box.layout.display == "flex"
        assert cells(f.confirm_text.value)["recipients"] == "4"
        assert len(smpp_sim.records()) == before
        f.confirm_button.click()
        assert f.wait(30)
        assert f.error.value == ""
        records = smpp_sim.records(offset=before)
        assert {r["route"] for r in records} == {"smpp"} and Counter(r["to"] for r in records) == ok
        assert "accepted 4" in text(f.notice.value) and (f.progress.value, f.progress.max) == (4, 4)
        results = outputs_text(f.results)
        assert "accepted 4, rejected 0, uncertain 0" in results
        assert "replies received: 1" in results and "Thanks! STOP" in results
        messages = f._ledger_obj().messages("via-smpp")
        assert messages["delivery_status"].notna().all()  # every receipt came over the session
        assert f._ledger_obj().replies("via-smpp")["msisdn"].tolist() == [first]
        f.send_button.click()
        assert "Nothing new to send" in text(f.notice.value)
        assert len(smpp_sim.records()) == before + 4
    finally:
        f.close()


def test_smpp_with_a_schedule_is_refused_in_the_form(smpp_sim: Simulator, tmp_path: Path) -> None:
    before = len(smpp_sim.records())
    gateway = Gateway(base_url=smpp_sim.url, sender=smpp_sim.credentials.sender)
    f = any_hour_form(
        customers(),
        campaign="smpp-later",
        gateway=gateway,
        ledger=tmp_path / "l.db",
        template=TEMPLATE,
        smpp=smpp_settings(smpp_sim),
    )
    try:
        f.transport.value = "smpp"
        f.schedule.value = "2099-01-01 09:00:00"
        f.send_button.click()
        assert "schedule_at is only supported" in text(f.error.value) and f.confirm_box.layout.display == "none"
        assert len(smpp_sim.records()) == before
    finally:
        f.close()

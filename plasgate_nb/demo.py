"""The one-command demo: the whole product on the embedded simulator, with no account.

Loads ``sample_data/customers.csv`` (text as text), prepares the audience (customers without consent,
invalid, duplicate and opted-out rows reported), renders the English or Khmer template by each customer's
language with a masked coupon, previews a message per template and the cost, sends
through REST batch-send with delivery reports to a real callback receiver, waits for the reports,
summarizes delivery by carrier and writes the charts and the enriched CSV into an output folder:
``demo_results.csv`` and ``demo_results.png`` (the main chart, delivered rate by carrier), then
``demo_status_by_carrier.png``, ``demo_time_to_deliver.png`` and ``demo_funnel.png``. A small share
of the simulated handsets reply STOP or ឈប់ to the receiver's MO URL: the demo shows those numbers on
the ledger's suppression list and a dry run of a follow-up campaign leaving them out. The ledger lives
in that folder, so a second run resumes and sends nothing new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .audience import prepare_audience
from .callbacks import CallbackServer
from .campaign import Campaign, SendSummary
from .compose import estimate_cost, preview, render_messages
from .errors import ConfigError
from .gateway import Gateway
from .io import read_customers
from .ledger import Ledger
from .report import collect, delivery_summary, export_report, wait_for_reports
from .simulator import Account, RateLimits, Simulator, SimulatorConfig
from .simulator.delivery import opt_out_reply

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["DemoResult", "find_sample_data", "run_demo", "write_charts"]

logger = logging.getLogger("plasgate_nb")

CAMPAIGN = "demo-spring-offer"
FOLLOW_UP = "demo-spring-reminder"
OPT_OUT_SHARE = 0.01  # of the simulated handsets reply STOP or ឈប់ to a delivered message
SEED = 2026
PRICE_PER_SEGMENT = 0.012
CHART_DPI = 120

# file name -> what the chart shows (demo_results.png, the main chart, comes from export_report)
CHARTS: dict[str, str] = {
    "demo_status_by_carrier.png": "message outcomes by carrier",
    "demo_time_to_deliver.png": "time to deliver by carrier",
    "demo_funnel.png": "send funnel",
}


@dataclass
class DemoResult:
    """What the demo did and where it wrote its files."""

    output: Path
    summary: SendSummary
    delivery: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def find_sample_data(start: Path | None = None) -> Path:
    """Return the ``sample_data`` folder of the repository (searched upwards from here and ``start``)."""
    candidates = [start or Path.cwd(), Path(__file__).resolve().parent]
    for base in candidates:
        for folder in (base, *base.parents):
            if (folder / "sample_data" / "customers.csv").is_file():
                return folder / "sample_data"
    raise ConfigError("sample_data/customers.csv not found: run the demo from the plasgate_nb repository")


def compose_sample(data: Path) -> pd.DataFrame:
    """Prepare and render the sample audience: consent and opt-outs honoured, offer by language, coupon masked.

    The README's tour does exactly this, so both send to the same customers.
    """
    customers = read_customers(data / "customers.csv")
    opt_out = read_customers(data / "opt_out.csv")["phone"]
    audience = prepare_audience(customers, consent="opt_in", suppress=opt_out)
    templates = {language: data / "templates" / f"offer_{language}.j2" for language in ("en", "km")}
    return render_messages(audience, templates, by="language", mask=["coupon"])


def write_charts(collected: pd.DataFrame, output: Path, *, dpi: int = CHART_DPI) -> list[Path]:
    """Write the demo's further charts (:data:`CHARTS`) as PNGs into ``output``; return their paths.

    Each chart is drawn on its own :class:`~matplotlib.figure.Figure` (rendered by Agg), so pyplot's
    global figure list is never touched.
    """
    from matplotlib.figure import Figure

    from . import charts

    # name -> (draw on an Axes, figure size): the outcome bars need room for five groups and a legend
    draw: dict[str, tuple[Callable[[Axes], Axes], tuple[float, float]]] = {
        "demo_status_by_carrier.png": (
            lambda ax: charts.plot_status_breakdown(collected, by="carrier", ax=ax),
            (10.0, 4.5),
        ),
        "demo_time_to_deliver.png": (lambda ax: charts.plot_time_to_deliver(collected, ax=ax, by="carrier"), (8, 4.5)),
        "demo_funnel.png": (lambda ax: charts.plot_funnel(collected, ax=ax), (8, 4.5)),
    }
    paths = []
    for name in CHARTS:
        plot, size = draw[name]
        fig = Figure(figsize=size, layout="constrained")
        plot(fig.subplots())
        path = output / name
        try:
            fig.savefig(path, dpi=dpi)
        except OSError as exc:
            raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
        paths.append(path)
    return paths


def _simulator_config(mo_url: str) -> SimulatorConfig:
    """The demo's simulator: seeded, fast clock, handsets of :data:`OPT_OUT_SHARE` replying to ``mo_url``."""
    return SimulatorConfig(
        seed=SEED,
        rate_limits=RateLimits.off(),
        clock_speed=30.0,
        callback_retry_delay=0.5,
        opt_out_replies=OPT_OUT_SHARE,
        accounts=(Account(mo_url=mo_url),),
    )


def _show_opt_outs(
    rendered: pd.DataFrame, campaign: Campaign, ledger: Ledger, *, timeout: float, say: Callable[[str], None]
) -> None:
    """Wait (up to ``timeout`` s) for the opt-out replies to the delivered messages; say what they were."""
    states = ledger.messages(campaign.name, columns=["msisdn", "delivery_status"])
    delivered = set(states.loc[states["delivery_status"] == "DELIVRD", "msisdn"])
    expected = {n for n in delivered if opt_out_reply(n, share=OPT_OUT_SHARE, seed=SEED)}
    deadline = time.monotonic() + timeout
    while not expected <= ledger.suppressed_numbers() and time.monotonic() < deadline:
        time.sleep(0.1)
    listed = ledger.suppressions()
    listed = listed[listed["source"] == "reply"]
    english = int((listed["text"].str.strip().str.upper() == "STOP").sum())
    say(
        f"opt-out replies: {len(listed)} number(s) replied STOP ({english} in English, "
        f"{len(listed) - english} in Khmer ឈប់); on the suppression list: {len(ledger.suppressed_numbers())}"
    )


def run_demo(
    output: Path | str = "demo_output",
    *,
    data: Path | None = None,
    wait: float = 40.0,
    say: Callable[[str], None] = logger.info,
) -> DemoResult:
    """Run the demo campaign end to end on the simulator and write its results into ``output``."""
    started = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    data = data or find_sample_data()
    rendered = compose_sample(data)
    counts = rendered["audience_status"].value_counts().to_dict()
    say(f"audience: {len(rendered)} customers; " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    cost = estimate_cost(rendered, price_per_segment=PRICE_PER_SEGMENT)
    say(f"cost preview: {cost}")
    say(preview(rendered)[["msisdn", "template", "content_report", "encoding", "segments"]].to_string())
    ledger = Ledger(output / "demo_ledger.db")
    with CallbackServer(ledger) as receiver, Simulator(_simulator_config(receiver.reply_url)) as sim:
        creds = sim.credentials
        gateway = Gateway(
            base_url=sim.url,
            private_key=creds.private_key,
            secret=creds.secret,
            sender=creds.sender,
            rate_limits={"batch": None},
        )
        campaign = Campaign(
            CAMPAIGN,
            gateway=gateway,
            ledger=ledger,
            key="customer_id",
            receiver=receiver,
            price_per_segment=PRICE_PER_SEGMENT,
        )
        say(f"simulator at {sim.url}; delivery reports to {receiver.public_url}")
        summary = campaign.send(rendered)
        say(str(summary))
        if summary.recipients == 0:
            say(
                "nothing new to send: this campaign was already sent (the ledger remembers); showing the stored results"
            )
        else:
            counts = wait_for_reports(campaign, timeout=wait, until=0.95)
            say(f"delivery reports: {counts}")
        _show_opt_outs(rendered, campaign, ledger, timeout=wait, say=say)
        follow_up = Campaign(FOLLOW_UP, gateway=gateway, ledger=ledger, key="customer_id", progress=False)
        reminder = follow_up.send(rendered, dry_run=True)
        listed = int((rendered["audience_status"] == "suppressed").sum())  # opt_out.csv, left out by the audience
        suppressed = reminder.skipped_reasons.get("suppressed", 0)
        say(
            f"follow-up campaign {FOLLOW_UP!r} (dry run): would send {reminder.recipients}; suppressed {suppressed} "
            f"({listed} on opt_out.csv, {suppressed - listed} replied STOP or ឈប់)"
        )
    collected = collect(rendered, campaign)
    collected["carrier"] = collected["carrier"].fillna("(no valid number)")
    delivery = delivery_summary(collected, by="carrier")
    say("delivery by carrier:\n" + delivery.to_string())
    exported = export_report(collected, output / "demo_results.csv", by="carrier")
    say(f"wrote {exported.data} (every customer with send and delivery results)")
    say(f"wrote {exported.chart} (delivered rate by carrier)")
    files = [Path(exported.data), Path(exported.chart)]
    for path in write_charts(collected, output):
        say(f"wrote {path} ({CHARTS[path.name]})")
        files.append(path)
    ledger.close()
    return DemoResult(output, summary, delivery, files, time.perf_counter() - started)

"""The one-command demo: the whole product on the embedded simulator, with no account.

Loads ``sample_data/customers.csv`` (text as text), prepares the audience (customers without consent,
invalid, duplicate and opted-out rows reported), renders the English or Khmer template by each customer's
language with a masked coupon, previews a message per template and the cost, sends
through REST batch-send with delivery reports to a real callback receiver, waits for the reports,
summarizes delivery by carrier and writes the charts and the enriched CSV into an output folder:
``demo_results.csv`` and ``demo_results.png`` (the main chart, delivered rate by carrier), then
``demo_status_by_carrier.png``, ``demo_time_to_deliver.png`` and ``demo_funnel.png``. The ledger lives
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
from .simulator import RateLimits, Simulator, SimulatorConfig

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["DemoResult", "find_sample_data", "run_demo", "write_charts"]

logger = logging.getLogger("plasgate_nb")

CAMPAIGN = "demo-spring-offer"
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
    config = SimulatorConfig(seed=2026, rate_limits=RateLimits.off(), clock_speed=30.0, callback_retry_delay=0.5)
    ledger = Ledger(output / "demo_ledger.db")
    with Simulator(config) as sim, CallbackServer(ledger) as receiver:
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

"""Generate the README's delivery charts (docs/*.png) from sample data: ``python docs/make_charts.py``.

The sample is a made-up campaign of 3,000 rows with Khmer and Latin city names, three carriers and two
template variants, recorded in a throwaway SQLite ledger (plan, submit, settle, delivery reports) and
collected back with ``collect``, exactly as a notebook would. Seeded: the PNGs change only when the
code does.
"""

from __future__ import annotations

import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from plasgate_nb.charts import plot_delivery_rate, plot_funnel, plot_status_breakdown, plot_time_to_deliver
from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect

OUT = Path(__file__).resolve().parent
CARRIERS = {"Smart": 0.96, "Cellcard": 0.91, "Metfone": 0.84}
CITIES = ["ភ្នំពេញ (Phnom Penh)", "សៀមរាប (Siem Reap)", "បាត់ដំបង (Battambang)", "កំពត (Kampot)"]


def sample_frame(rows: int = 3000, seed: int = 5) -> pd.DataFrame:
    """The analyst's frame: one row per customer, 2% flagged by the audience stage."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "customer": [f"C{i:05d}" for i in range(rows)],
            "msisdn": [f"8551{2 + i % 7}{100000 + i:06d}" for i in range(rows)],
            "carrier": rng.choice(list(CARRIERS), size=rows, p=[0.45, 0.3, 0.25]),
            "city": rng.choice(CITIES, size=rows, p=[0.5, 0.2, 0.2, 0.1]),
            "variant": rng.choice(["A: short", "B: with name"], size=rows),
            "audience_status": np.where(rng.random(rows) < 0.02, "invalid", "ok"),
        }
    )
    frame["audience_reason"] = np.where(frame["audience_status"] == "ok", None, "not a mobile number")
    frame["content"] = "Hello, your coupon is #ma#X1#ma#"
    return frame.set_index("customer")


def record(ledger: Ledger, frame: pd.DataFrame, seed: int = 5) -> None:
    """Plan, submit, settle and deliver the sample campaign in ``ledger``."""
    rng = np.random.default_rng(seed)
    ok = frame[frame["audience_status"] == "ok"]
    plan = pd.DataFrame(
        {"message_key": ok.index, "msisdn": ok["msisdn"], "content": ok["content"], "segments": 1, "encoding": "GSM-7"}
    )
    ledger.plan("sample", plan)
    keys = list(ok.index)
    refused = set(rng.choice(keys, size=30, replace=False))
    sent = [k for k in keys if k not in refused]
    ledger.mark_submitting("sample", keys, batch_id="b1")
    ledger.settle("sample", sorted(refused), state="rejected", status=400, reason="HTTP 400: invalid number")
    ledger.settle("sample", sent, state="accepted", message_ids={k: f"gw-{k}" for k in sent})
    start = datetime.now(UTC)
    events = []
    for key in sent:
        roll = rng.random()
        carrier = ok.at[key, "carrier"]
        variant_bonus = 0.02 if ok.at[key, "variant"].startswith("B") else 0.0
        if roll < 0.06:
            continue  # no final report yet
        delivered = rng.random() < CARRIERS[str(carrier)] + variant_bonus
        status = "DELIVRD" if delivered else rng.choice(["UNDELIV", "EXPIRED", "REJECTD"])
        done = start + timedelta(seconds=float(rng.gamma(2.0, 12.0 if carrier != "Metfone" else 40.0)))
        events.append(
            {
                "source": "dlr",
                "message_id": f"gw-{key}",
                "level": 2,
                "status": status,
                "err": "000" if delivered else "001",
                "done_at": done,
                "campaign": "sample",
                "message_key": key,
            }
        )
    ledger.record_events(events)


def charts(collected: pd.DataFrame, out: Path) -> list[Path]:
    """Draw the five README charts into ``out``; return their paths."""
    drawings = {
        "delivery_rate_by_carrier.png": lambda ax: plot_delivery_rate(collected, "carrier", ax=ax),
        "delivery_rate_by_city.png": lambda ax: plot_delivery_rate(collected, "city", ax=ax),
        "status_breakdown_by_variant.png": lambda ax: plot_status_breakdown(collected, "variant", ax=ax),
        "time_to_deliver_by_carrier.png": lambda ax: plot_time_to_deliver(collected, ax=ax, by="carrier"),
        "funnel.png": lambda ax: plot_funnel(collected, ax=ax),
    }
    paths = []
    for name, draw in drawings.items():
        fig = Figure(figsize=(8, 3.6 if name == "funnel.png" else 4.5), layout="constrained")
        draw(fig.subplots())
        fig.savefig(out / name, dpi=96)
        paths.append(out / name)
    return paths


def main() -> int:
    """Build the sample campaign and write the charts."""
    frame = sample_frame()
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "sample.db")
        record(ledger, frame)
        collected = collect(frame, (ledger, "sample"))
        ledger.close()
    for path in charts(collected, OUT):
        sys.stdout.write(f"wrote {path.relative_to(OUT.parent)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

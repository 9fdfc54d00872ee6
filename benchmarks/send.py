"""Benchmark: a personalized campaign end to end (plan + send + ledger) vs one /rest/send per recipient.

Run from the repo root: ``python benchmarks/send.py [--quick]``. The simulator runs in its own
process with rate limits off. Prints a table and, last, one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pandas as pd

from plasgate_nb._ratelimit import projected_seconds
from plasgate_nb.campaign import Campaign
from plasgate_nb.compose import render_messages
from plasgate_nb.gateway import DEFAULT_RATE_LIMITS, Gateway
from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig

TEMPLATE = "Hi customer {{ n }}, your code is {{ code }}. Reply STOP to opt out."


def audience(rows: int, offset: int = 0) -> pd.DataFrame:
    """A rendered, personalized frame (``render_messages`` output): every row its own text, code masked."""
    ids = range(offset, offset + rows)
    people = pd.DataFrame(
        {"msisdn": [f"8551{i % 10_000_000:07d}" for i in ids], "n": list(ids), "code": [f"K{i:07d}" for i in ids]},
        index=[f"c{i}" for i in ids],
    )
    return render_messages(people, TEMPLATE, mask=["code"])


def batch_run(sim: Simulator, rows: int, ledger: Path) -> tuple[float, int]:
    """Send ``rows`` through REST batch-send via Campaign; return (seconds, requests)."""
    creds = sim.credentials
    gateway = Gateway(
        base_url=sim.url,
        private_key=creds.private_key,
        secret=creds.secret,
        sender=creds.sender,
        max_in_flight=4,
        rate_limits={"batch": None},
    )
    df = audience(rows)  # rendering is the compose benchmark's business: not timed here
    start = time.perf_counter()
    campaign = Campaign("bench", gateway=gateway, ledger=ledger, progress=False)
    summary = campaign.send(df)
    elapsed = time.perf_counter() - start
    if summary.accepted != rows:
        raise SystemExit(f"batch run accepted {summary.accepted} of {rows}: {summary}")
    return elapsed, summary.requests


def per_message_run(sim: Simulator, rows: int) -> float:
    """Send ``rows`` one ``/rest/send`` at a time, sequentially, as the vendor's client does."""
    creds = sim.credentials
    df = audience(rows, offset=5_000_000)
    with httpx.Client(
        base_url=sim.url, params={"private_key": creds.private_key}, headers={"X-Secret": creds.secret}
    ) as client:
        start = time.perf_counter()
        for to, content in zip(df["msisdn"], df["content"], strict=True):
            answer = client.post("/rest/send", json={"sender": creds.sender, "to": to, "content": content})
            if answer.status_code != 200:
                raise SystemExit(f"per-message send failed: {answer.status_code} {answer.text[:200]}")
        return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 recipients instead of 100,000")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (medians are quoted)")
    args = parser.parse_args()
    rows = 20_000 if args.quick else 100_000
    sample = 2_000
    config = SimulatorConfig(seed=1, rate_limits=RateLimits.off(), accounts=SimulatorConfig().accounts)
    batch_times, per_times, requests = [], [], 0
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            seconds, requests = batch_run(sim, rows, Path(tmp) / f"bench{run}.db")
            batch_times.append(seconds)
            per_times.append(per_message_run(sim, sample))
    batch_s = statistics.median(batch_times)
    per_s = statistics.median(per_times)
    rate = rows / batch_s
    per_rate = sample / per_s
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    million = 1_000_000
    batch_requests_1m = -(-million // 1000)
    projected_batch = projected_seconds(batch_requests_1m, DEFAULT_RATE_LIMITS["batch"])
    projected_single = projected_seconds(million, DEFAULT_RATE_LIMITS["single"])
    table = [
        ("recipients (batch-send, personalized)", f"{rows:,}"),
        ("requests", f"{requests:,}"),
        ("batch-send end to end (median)", f"{rate:,.0f} recipients/s  ({batch_s:.2f} s)"),
        (f"per-message /rest/send, sequential ({sample:,})", f"{per_rate:,.0f} recipients/s"),
        ("ratio batch / per-message", f"{rate / per_rate:.1f}x"),
        ("peak RSS of this process", f"{peak_mb:,.0f} MB"),
        ("1,000,000 recipients under documented limits", ""),
        ("  batch-send (1,000 per request, 100 req/min)", f"{projected_batch / 60:,.0f} min"),
        ("  per-message send (200 req/min)", f"{projected_single / 3600:,.1f} h"),
    ]
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"{key:<{width}}  {value}")
    print(
        json.dumps(
            {
                "benchmark": "send",
                "figures": {
                    "recipients": rows,
                    "recipients_per_s": round(rate),
                    "requests": requests,
                    "per_message_recipients_per_s": round(per_rate),
                    "peak_rss_mb": round(peak_mb),
                    "projected_1m_batch_s": round(projected_batch),
                    "projected_1m_per_message_s": round(projected_single),
                    "runs": args.repeat,
                },
                "ratios": {"vs_per_message": round(rate / per_rate, 1)},
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()

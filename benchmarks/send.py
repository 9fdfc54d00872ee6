"""Benchmark: a personalized campaign end to end (plan + send + ledger) vs one /rest/send per recipient.

Run from the repo root: ``python benchmarks/send.py [--quick] [--recipients N]`` (default 1,000,000).
The simulator runs in its own process with rate limits off. Prints a table and, last, one JSON line.

Memory: ``peak_rss_mb`` is the peak resident size of this (the sending) process while ``Campaign.send``
runs, the caller's rendered frame included: the peak is reset (``/proc/self/clear_refs``) once the frame
is rendered, so rendering's own peak (the compose benchmark's business) is reported apart
(``process_peak_rss_mb``), as is what the frame itself costs (``frame_rss_mb``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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


def _status_mb(field: str) -> float | None:
    """A size from /proc/self/status (VmRSS, VmHWM) in MB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as status:
            found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


def _reset_peak() -> bool:
    """Reset this process's peak RSS to its current RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def batch_run(sim: Simulator, rows: int, ledger: Path) -> tuple[float, int, dict[str, float]]:
    """Send ``rows`` through REST batch-send via Campaign; return (seconds, requests, memory in MB)."""
    creds = sim.credentials
    gateway = Gateway(
        base_url=sim.url,
        private_key=creds.private_key,
        secret=creds.secret,
        sender=creds.sender,
        max_in_flight=4,
        rate_limits={"batch": None},
    )
    before = _status_mb("VmRSS") or 0.0
    df = audience(rows)  # rendering is the compose benchmark's business: not timed here
    memory = {
        "frame": (_status_mb("VmRSS") or 0.0) - before,
        "frame_deep": df.memory_usage(deep=True).sum() / 2**20,
        "before_send": _status_mb("VmRSS") or 0.0,
        "before_reset": _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    reset = _reset_peak()
    start = time.perf_counter()
    campaign = Campaign("bench", gateway=gateway, ledger=ledger, progress=False)
    summary = campaign.send(df)
    elapsed = time.perf_counter() - start
    peak = _status_mb("VmHWM") if reset else None
    memory["send_peak"] = peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if summary.accepted != rows:
        raise SystemExit(f"batch run accepted {summary.accepted} of {rows}: {summary}")
    del df, campaign
    return elapsed, summary.requests, memory


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
    parser.add_argument("--quick", action="store_true", help="20,000 recipients instead of 1,000,000")
    parser.add_argument("--recipients", type=int, default=None, help="recipients per batch run (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each way (medians are quoted)")
    args = parser.parse_args()
    rows = args.recipients or (20_000 if args.quick else 1_000_000)
    sample = 2_000
    config = SimulatorConfig(seed=1, rate_limits=RateLimits.off(), accounts=SimulatorConfig().accounts)
    batch_times, per_times, requests, memory = [], [], 0, []
    load_before = os.getloadavg()[0]
    with Simulator(config) as sim, tempfile.TemporaryDirectory() as tmp:
        for run in range(args.repeat):
            seconds, requests, used = batch_run(sim, rows, Path(tmp) / f"bench{run}.db")
            batch_times.append(seconds)
            memory.append(used)
            per_times.append(per_message_run(sim, sample))
    batch_s = statistics.median(batch_times)
    per_s = statistics.median(per_times)
    rate = rows / batch_s
    per_rate = sample / per_s
    peak_mb = max(m["send_peak"] for m in memory)  # the first run's: later ones reuse what it freed
    frame_mb = memory[0]["frame"]  # later runs reuse memory the first one freed
    frame_deep_mb = memory[0]["frame_deep"]
    before_send_mb = memory[0]["before_send"]
    # the kernel's high-water mark since the last reset, read before each reset and after each send
    process_peak_mb = max(max(m["before_reset"], m["send_peak"]) for m in memory)
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
        ("peak RSS of this process while sending (frame included)", f"{peak_mb:,.0f} MB"),
        ("  before the send: imports, simulator client, the frame", f"{before_send_mb:,.0f} MB"),
        (
            "  the rendered frame: RSS rendering left / the frame's own size",
            f"{frame_mb:,.0f} / {frame_deep_mb:,.0f} MB",
        ),
        ("peak RSS of this process, rendering included", f"{process_peak_mb:,.0f} MB"),
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
                    "frame_rss_mb": round(frame_mb),
                    "frame_mb": round(frame_deep_mb),
                    "rss_before_send_mb": round(before_send_mb),
                    "process_peak_rss_mb": round(process_peak_mb),
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
                    "load_avg_1m_before": round(load_before, 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()

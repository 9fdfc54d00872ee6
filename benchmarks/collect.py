"""Benchmark ``collect``: merge a 1,000,000-row campaign's ledger state into the analyst's frame.

Setup (not timed): an SQLite ledger with one campaign planned through ``Ledger.plan``, then moved in
bulk with SQL to a realistic mix (90% accepted with gateway ids, of which 85% DELIVRD, 7% UNDELIV,
8% pending; 5% rejected; 5% still planned), and the analyst's frame (key column, number, text, city,
carrier, plus 1% rows the audience stage skipped). Timed: ``collect(df, (ledger, name), key="id",
price_per_segment=...)`` end to end, ledger read included, median of several runs. Target <= 2 s.

    python benchmarks/collect.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect, delivery_summary

TARGET_S = 2.0
COLUMNS = [
    "state",
    "message_id",
    "delivery_status",
    "delivered_at",
    "error_code",
    "segments",
    "attempts",
    "reason",
    "submitted_at",
    "done_at",
]


def audience(rows: int) -> pd.DataFrame:
    """The analyst's frame: ``rows`` messages plus 1% rows the audience stage skipped."""
    skipped = rows // 100
    total = rows + skipped
    rng = np.random.default_rng(7)
    ids = np.char.add("cust-", np.arange(total).astype(str))
    numbers = np.char.add("8551", (2_000_000 + np.arange(total)).astype(str))
    status = np.where(np.arange(total) < rows, "ok", "invalid")
    return pd.DataFrame(
        {
            "id": ids,
            "msisdn": numbers,
            "content": "Your code is #ma#1234#ma#, valid 10 minutes",
            "city": rng.choice(["Phnom Penh", "Siem Reap", "Battambang", "Kampot"], size=total),
            "carrier": rng.choice(["Smart", "Cellcard", "Metfone"], size=total),
            "audience_status": status,
            "audience_reason": np.where(status == "ok", None, "not a mobile number"),
        }
    )


def build_ledger(path: Path, frame: pd.DataFrame, rows: int) -> Ledger:
    """Plan the first ``rows`` rows and move them in bulk to a realistic mix of states."""
    ledger = Ledger(path)
    plan = pd.DataFrame(
        {
            "message_key": frame["id"][:rows],
            "msisdn": frame["msisdn"][:rows],
            "content": frame["content"][:rows],
            "encoding": "GSM-7",
            "segments": 1,
        }
    )
    ledger.plan("bench", plan)
    ledger.close()
    with sqlite3.connect(path) as db:
        db.executescript("""
            UPDATE plasgate_messages SET
              state = CASE WHEN id % 20 = 0 THEN 'rejected' WHEN id % 20 = 1 THEN 'planned' ELSE 'accepted' END,
              attempts = CASE WHEN id % 20 = 1 THEN 0 ELSE 1 END,
              reason = CASE WHEN id % 20 = 0 THEN 'HTTP 400: invalid number' END,
              submitted_at = CASE WHEN id % 20 != 1 THEN '2026-01-05 02:00:00.000000' END;
            UPDATE plasgate_messages SET
              message_id = 'gw-' || id,
              delivery_status = CASE WHEN id % 100 < 85 THEN 'DELIVRD'
                                     WHEN id % 100 < 92 THEN 'UNDELIV' END,
              delivered_at = CASE WHEN id % 100 < 85 THEN '2026-01-05 02:00:07.000000' END,
              done_at = CASE WHEN id % 100 < 92 THEN '2026-01-05 02:00:07.000000' END,
              error_code = CASE WHEN id % 100 >= 85 AND id % 100 < 92 THEN '001' END
            WHERE state = 'accepted';
        """)
    return ledger


def main() -> None:
    """Build the campaign, time collect, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, fewer runs")
    args = parser.parse_args()
    rows, runs = (100_000, 3) if args.quick else (1_000_000, 5)
    frame = audience(rows)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        ledger = build_ledger(Path(tmp) / "bench.db", frame, rows)
        setup_s = time.perf_counter() - started
        times, read_times, general_times = [], [], []
        result = frame
        for _ in range(runs):
            ledger.close()  # each run opens the ledger afresh, as a new notebook session would
            t0 = time.perf_counter()
            ledger.read_columns("bench", COLUMNS)
            read_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            if not args.quick and len(general_times) < 2:  # the general reader, for comparison (slow)
                ledger.messages("bench", columns=COLUMNS)
                general_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = collect(frame, (ledger, "bench"), key="id", price_per_segment=0.0125)
            times.append(time.perf_counter() - t0)
        ledger.close()
    collect_s = statistics.median(times)
    read_s = statistics.median(read_times)
    summary = delivery_summary(result)
    print(f"collect benchmark: {len(frame):,} frame rows, {rows:,} ledger rows, setup {setup_s:.1f} s")
    print(f"{'step':<34}{'median s':>10}")
    print(f"{'ledger read_columns (10 columns)':<34}{read_s:>10.3f}")
    if general_times:
        print(f"{'ledger messages (general reader)':<34}{statistics.median(general_times):>10.3f}")
    print(f"{'collect (read + join + columns)':<34}{collect_s:>10.3f}")
    print(f"{'target':<34}{TARGET_S:>10.3f}")
    print(summary.to_string())
    figures = {
        "rows": rows,
        "frame_rows": len(frame),
        "collect_s": round(collect_s, 3),
        "ledger_read_s": round(read_s, 3),
        "runs": runs,
        "general_read_s": round(statistics.median(general_times), 3) if general_times else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    ratios = {"vs_target": round(collect_s / TARGET_S, 3), "read_share": round(read_s / collect_s, 3)}
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pandas": pd.__version__,
    }
    print(json.dumps({"benchmark": "collect", "figures": figures, "ratios": ratios, "machine": machine}))


if __name__ == "__main__":
    main()

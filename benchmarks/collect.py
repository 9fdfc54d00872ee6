"""Benchmark ``collect``: merge a 1,000,000-row campaign's ledger state into the analyst's frame.

Setup (not timed): a ledger with one campaign planned through ``Ledger.plan``, then moved in bulk with
SQL to a realistic mix (90% accepted with gateway ids, of which 85% DELIVRD, 7% UNDELIV, 8% pending;
5% rejected; 5% still planned), and the analyst's frame (key column, number, text, city, carrier,
plus 1% rows the audience stage skipped). Timed: ``collect(df, (ledger, name), key="id",
price_per_segment=...)`` end to end, ledger read included, median of several runs, each on a freshly
opened ledger; beside it the columnar read alone (``Ledger.read_arrow``) and, for comparison, the
general reader (``Ledger.messages``). Target <= 1.0 s on SQLite. ``--url postgresql://...`` adds the
same run on a PostgreSQL ledger (in a schema of its own, dropped afterwards).

    python benchmarks/collect.py [--quick] [--runs N] [--url postgresql://user@host/db]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from plasgate_nb.ledger import Ledger
from plasgate_nb.report import collect, delivery_summary

TARGET_S = 1.0
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


MIX_SQL = [  # ``id % n`` spelled mod(id, n): PostgreSQL's driver reads a bare % as a parameter
    """UPDATE plasgate_messages SET
         state = CASE WHEN mod(id, 20) = 0 THEN 'rejected' WHEN mod(id, 20) = 1 THEN 'planned' ELSE 'accepted' END,
         attempts = CASE WHEN mod(id, 20) = 1 THEN 0 ELSE 1 END,
         reason = CASE WHEN mod(id, 20) = 0 THEN 'HTTP 400: invalid number' END,
         submitted_at = CASE WHEN mod(id, 20) != 1 THEN :submitted END""",
    """UPDATE plasgate_messages SET
         message_id = 'gw-' || id,
         delivery_status = CASE WHEN mod(id, 100) < 85 THEN 'DELIVRD' WHEN mod(id, 100) < 92 THEN 'UNDELIV' END,
         delivered_at = CASE WHEN mod(id, 100) < 85 THEN :done END,
         done_at = CASE WHEN mod(id, 100) < 92 THEN :done END,
         error_code = CASE WHEN mod(id, 100) >= 85 AND mod(id, 100) < 92 THEN '001' END
       WHERE state = 'accepted'""",
]


def build_ledger(url: str, frame: pd.DataFrame, rows: int) -> Ledger:
    """Plan the first ``rows`` rows and move them in bulk to a realistic mix of states."""
    ledger = Ledger(url)
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
    sqlite = ledger._ready().dialect.name == "sqlite"
    times = {  # as each backend stores them: SQLAlchemy's SQLite text, PostgreSQL timestamptz
        "submitted": "2026-01-05 02:00:00.000000" if sqlite else "2026-01-05 02:00:00+00",
        "done": "2026-01-05 02:00:07.000000" if sqlite else "2026-01-05 02:00:07+00",
    }
    with ledger._ready().begin() as conn:
        for statement in MIX_SQL:
            text = statement if sqlite else statement.replace(":submitted", "CAST(:submitted AS timestamptz)")
            conn.execute(sa.text(text.replace(":done", ":done" if sqlite else "CAST(:done AS timestamptz)")), times)
        if not sqlite:
            conn.exec_driver_sql("ANALYZE plasgate_messages")
    ledger.close()
    return ledger


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A ledger URL in a fresh schema of the PostgreSQL database ``url``, dropped afterwards."""
    admin = sa.create_engine(sa.make_url(url).set(drivername="postgresql+psycopg"))
    schema = f"plasgate_bench_{uuid.uuid4().hex[:10]}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def measure(url: str, frame: pd.DataFrame, rows: int, runs: int, *, general: bool) -> dict[str, Any]:
    """Build the campaign at ``url`` and time the columnar read, collect and (once or twice) the general reader."""
    started = time.perf_counter()
    ledger = build_ledger(url, frame, rows)
    setup_s = time.perf_counter() - started
    times: list[float] = []
    read_times: list[float] = []
    general_times: list[float] = []
    result = frame
    for _ in range(runs):
        ledger.close()  # each run opens the ledger afresh, as a new notebook session would
        t0 = time.perf_counter()
        ledger.read_arrow("bench", COLUMNS)
        read_times.append(time.perf_counter() - t0)
        if general and len(general_times) < 2:  # the general reader, for comparison (slow)
            t0 = time.perf_counter()
            ledger.messages("bench", columns=COLUMNS)
            general_times.append(time.perf_counter() - t0)
        ledger.close()
        t0 = time.perf_counter()
        result = collect(frame, (ledger, "bench"), key="id", price_per_segment=0.0125)
        times.append(time.perf_counter() - t0)
    ledger.close()
    return {
        "setup_s": setup_s,
        "collect_s": statistics.median(times),
        "collect_runs": times,
        "read_s": statistics.median(read_times),
        "general_s": statistics.median(general_times) if general_times else None,
        "summary": delivery_summary(result),
    }


def main() -> None:
    """Build the campaign, time collect, print a table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows, fewer runs")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per backend (default 5, quick 3)")
    parser.add_argument("--url", default=None, help="also run on this PostgreSQL database (a schema of its own)")
    args = parser.parse_args()
    rows, runs = (100_000, 3) if args.quick else (1_000_000, 5)
    runs = args.runs or runs
    frame = audience(rows)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        lite = measure(str(Path(tmp) / "bench.db"), frame, rows, runs, general=not args.quick)
    pg = None
    if args.url:
        with postgres_schema(args.url) as url:
            pg = measure(url, frame, rows, runs, general=not args.quick)
    print(f"collect benchmark: {len(frame):,} frame rows, {rows:,} ledger rows, setup {lite['setup_s']:.1f} s")
    print(f"{'median s':>46}{'SQLite':>10}" + (f"{'PostgreSQL':>12}" if pg else ""))

    def line(label: str, key: str) -> None:
        value = lite[key]
        cells = f"{value:>10.3f}" if value is not None else f"{'-':>10}"
        if pg:
            cells += f"{pg[key]:>12.3f}" if pg[key] is not None else f"{'-':>12}"
        print(f"{label:<46}{cells}")

    line("ledger read_arrow (key + 10 columns)", "read_s")
    line("ledger messages (general reader, comparison)", "general_s")
    line("collect (read + join + columns)", "collect_s")
    print(f"{'target (SQLite)':<46}{TARGET_S:>10.3f}")
    print("collect runs (s): " + ", ".join(f"{t:.3f}" for t in lite["collect_runs"]))
    load_after = os.getloadavg()[0]
    print(f"load average (1 min) before/after: {load_before:.2f} / {load_after:.2f}")
    print(lite["summary"].to_string())
    figures = {
        "rows": rows,
        "frame_rows": len(frame),
        "collect_s": round(lite["collect_s"], 3),
        "ledger_read_s": round(lite["read_s"], 3),
        "runs": runs,
        "general_read_s": round(lite["general_s"], 3) if lite["general_s"] is not None else None,
        "pg_collect_s": round(pg["collect_s"], 3) if pg else None,
        "pg_ledger_read_s": round(pg["read_s"], 3) if pg else None,
        "load_avg_1m": round(load_after, 2),
        "load_avg_1m_before": round(load_before, 2),
    }
    ratios = {
        "vs_target": round(lite["collect_s"] / TARGET_S, 3),
        "read_share": round(lite["read_s"] / lite["collect_s"], 3),
    }
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pandas": pd.__version__,
    }
    print(json.dumps({"benchmark": "collect", "figures": figures, "ratios": ratios, "machine": machine}))


if __name__ == "__main__":
    main()

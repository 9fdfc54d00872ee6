"""Benchmark message composition: render_messages against the naive way and an f-string floor.

Run from the repo root: ``python benchmarks/compose.py [--quick] [--repeat N]``. Ours and the floor take turns
(``--repeat`` runs each, medians reported); naive is timed on 20,000 rows and scaled. Prints a table, then
one JSON line ``{"benchmark": "compose", "figures": ..., "ratios": ..., "machine": ...}``.

- ours: ``render_messages`` (render, masking, report view, encoding, units, parts).
- naive: ``df.apply`` with a precompiled sandboxed Jinja template plus ``count_segments`` per row.
- floor: an f-string over the columns (no missing-value handling, no masking, no counting).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from plasgate_nb.compose import render_messages
from plasgate_nb.segments import count_segments

TEMPLATE = (
    "Hi {{ first_name }}, thank you for shopping at our {{ city }} store on {{ last_purchase }}. "
    "Use code {{ coupon }} for 10% off this week. Reply STOP to opt out."
)
FIRST = ["Dara", "Sophea", "Vanna", "Sokha", "Chenda", "Rithy", "Bopha", "Kosal", "Srey", "Visal"]
CITIES = ["Phnom Penh", "Siem Reap", "Battambang", "Kampot", "Sihanoukville", "Kampong Cham", "Takeo"]


def audience(rows: int, *, seed: int = 7) -> pd.DataFrame:
    """A realistic audience: ~20k distinct names, 7 cities, one coupon per row, dates with gaps."""
    rng = np.random.default_rng(seed)
    names = np.array([f"{f}{i}" for i in range(2000) for f in FIRST], dtype=object)
    purchase = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, rows), unit="D")
    purchase = purchase.where(rng.random(rows) > 0.1)  # 10 % never bought anything
    return pd.DataFrame(
        {
            "first_name": pd.Series(names[rng.integers(0, len(names), rows)], dtype="str"),
            "city": pd.Series(np.array(CITIES, dtype=object)[rng.integers(0, len(CITIES), rows)], dtype="str"),
            "coupon": pd.Series([f"C{i:07X}" for i in range(rows)], dtype="str"),
            "last_purchase": purchase,
        }
    )


def ours(df: pd.DataFrame) -> pd.DataFrame:
    """The library: everything the campaign needs."""
    return render_messages(df, TEMPLATE, mask=["coupon"])


def naive(df: pd.DataFrame) -> pd.Series:
    """What a careful analyst writes: a precompiled template applied per row, then counted per row."""
    env = SandboxedEnvironment(undefined=StrictUndefined)
    masked = TEMPLATE.replace("{{ coupon }}", "#ma#{{ coupon }}#ma#")
    template = env.from_string(masked)

    def one(row: pd.Series) -> tuple[str, int]:
        text = template.render(row.to_dict())
        return text, count_segments(text).segments

    return df.apply(one, axis=1)


def floor(df: pd.DataFrame) -> list[str]:
    """The ideal floor: one f-string per row over the columns' values."""
    last = df["last_purchase"].dt.date.tolist()
    return [
        f"Hi {a}, thank you for shopping at our {b} store on {d}. Use code #ma#{c}#ma# for 10% off "
        f"this week. Reply STOP to opt out."
        for a, b, c, d in zip(df["first_name"].tolist(), df["city"].tolist(), df["coupon"].tolist(), last, strict=True)
    ]


def timed(func: Callable[[pd.DataFrame], object], df: pd.DataFrame, repeat: int) -> float:
    """Median wall time of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func(df)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved(ways: list[Callable[[pd.DataFrame], object]], df: pd.DataFrame, repeat: int) -> list[float]:
    """Median wall time of each way, the ways taking turns so that a burst of load elsewhere hits them alike."""
    times: list[list[float]] = [[] for _ in ways]
    for _ in range(repeat):
        for way, spent in zip(ways, times, strict=True):
            start = time.perf_counter()
            way(df)
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def main() -> None:
    """Run the three ways on the same frame and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--repeat", type=int, default=5, help="runs per way, taking turns (medians are reported)")
    args = parser.parse_args()
    rows = 100_000 if args.quick else 1_000_000
    naive_rows = min(rows, 20_000)
    df = audience(rows)
    warnings.simplefilter("error")  # a warning here would be a bug in the benchmark or the library

    check = ours(df.head(3))
    if not check["content_report"].str.contains(r"\*{6}", regex=True).all():
        raise SystemExit("the coupon is not masked: the benchmark is broken")
    load_before = os.getloadavg()[0]
    t_ours, t_floor = interleaved([ours, floor], df, args.repeat)
    t_naive = timed(naive, df.head(naive_rows), 1) * rows / naive_rows

    ours_rps, naive_rps, floor_rps = rows / t_ours, rows / t_naive, rows / t_floor
    print(f"compose benchmark: {rows:,} rows, template with first_name, city, masked coupon, a date with gaps")
    print(f"{'way':<10}{'seconds':>10}{'rows/s':>14}")
    print(f"{'ours':<10}{t_ours:>10.3f}{ours_rps:>14,.0f}")
    print(f"{'naive':<10}{t_naive:>10.3f}{naive_rps:>14,.0f}   (measured on {naive_rows:,} rows, per row x {rows:,})")
    print(f"{'floor':<10}{t_floor:>10.3f}{floor_rps:>14,.0f}")
    print(
        f"vs naive: {ours_rps / naive_rps:.1f}x faster (target >= 15); "
        f"vs floor: {t_ours / t_floor:.2f}x the floor's time (target <= 1.5); medians of {args.repeat} runs"
    )
    print(f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(
        json.dumps(
            {
                "benchmark": "compose",
                "figures": {
                    "rows": rows,
                    "rows_per_s": round(ours_rps),
                    "naive_rows_per_s": round(naive_rps),
                    "floor_rows_per_s": round(floor_rps),
                    "naive_sample_rows": naive_rows,
                },
                "ratios": {"vs_naive": round(ours_rps / naive_rps, 2), "vs_floor": round(t_ours / t_floor, 2)},
                "machine": {
                    "python": platform.python_version(),
                    "pandas": pd.__version__,
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "load_avg_1m_before": round(load_before, 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()

"""Benchmark: 10,000,000 customers through prepare, render (masked coupon), plan, send and collect on Dask.

Run from the repo root: ``python benchmarks/scale.py [--quick]``. The customers are generated on the
workers of a ``dask.distributed.LocalCluster`` (2 single-threaded worker processes, 1 GiB each) into
Parquet files of 100,000 rows before the clock starts: phone numbers in mixed formats (``012 345 678``,
``+855 12 345 678``, ``855012345678``, dashes), 2% of them repeating the number of a row in another
partition and 0.5% not numbers at all, Khmer and Latin names (a template per language), a coupon column
that is masked. Timed: reading the files, ``prepare_audience``, ``render_messages``, ``Campaign.plan``,
``Campaign.send`` and ``collect`` on the Dask frame (the ledger's states counted, no rows gathered). The
simulator runs in its own process with rate limits off and no delivery reports asked, keeping no record
of the messages (``SimulatorConfig(record=False)``; ``--record`` keeps it: about 70 bytes a message,
0.7 GB for 10M, past the memory bound with the rest); the ledger is an SQLite file in a temporary
directory (``--ledger URL`` for another, e.g. PostgreSQL). The same pipeline then runs in plain pandas
on 1,000,000 rows read from one Parquet file. Memory is the peak of the summed VmRSS of this process and
all its descendants (client, scheduler and nannies in this process; workers; simulator), sampled every
0.2 s: shared pages count once per process, so the figure is an upper bound.

Prints a table and, last, one JSON line (DESIGN.md section 8, ``scale``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from plasgate_nb import Campaign, prepare_audience, render_messages
from plasgate_nb.gateway import Gateway
from plasgate_nb.ledger import Ledger
from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig

BOUND_MB = 2048
TEMPLATE = "សួស្តី {{ name }}! Your coupon {{ coupon }} takes 20% off until {{ until }}. Reply STOP to opt out."
TEMPLATE_LATIN = "Hi {{ name }}, your coupon {{ coupon }} takes 20% off until {{ until }}. Reply STOP to opt out."
# national prefixes with 6-digit subscriber numbers (8-digit national numbers): 1,000,000 numbers each
PREFIXES = (
    "10",
    "11",
    "12",
    "14",
    "15",
    "16",
    "17",
    "61",
    "69",
    "70",
    "81",
    "77",
    "78",
    "85",
    "89",
    "92",
    "93",
    "95",
    "99",
)
KHMER = ("សុខា", "ដារ៉ា", "សុភា", "វិចិត្រ", "ចន្ទា", "រតនា", "បុប្ផា", "សំណាង")
LATIN = ("Sokha", "Dara", "Sophea", "Vichet", "Chantha", "Rotana", "Bopha", "Samnang", "Lina", "Pisey")
DUPLICATE_EVERY = 50  # one row in 50 repeats the number of the row DUP_OFFSET rows before it
DUP_OFFSET = 123_457  # more than a partition: the first row is always in another partition
INVALID_EVERY = 200  # one row in 200 holds no number


# -- the audience ------------------------------------------------------------------------------------
def _person(k: int) -> int:
    """Whose number row ``k`` holds: its own, or (one row in 50) the row's DUP_OFFSET rows before it."""
    return k - DUP_OFFSET if k % DUPLICATE_EVERY == 7 and k >= DUP_OFFSET else k


def _phone(k: int) -> str:
    """Row ``k``'s phone cell: its person's number in one of four formats, or (one row in 200) no number."""
    if k % INVALID_EVERY == 3:
        return "n/a"
    person = _person(k)
    prefix = PREFIXES[person % len(PREFIXES)]
    head, tail = divmod((person // len(PREFIXES)) * 7919 % 1_000_000, 1000)  # 7919 is prime: a permutation
    style = k % 4
    if style == 0:
        return f"0{prefix} {head:03d} {tail:03d}"
    if style == 1:
        return f"+855 {prefix} {head:03d} {tail:03d}"
    if style == 2:
        return f"8550{prefix}{head:03d}{tail:03d}"
    return f"0{prefix}-{head:03d}-{tail:03d}"


def customers(start: int, rows: int) -> pd.DataFrame:
    """Rows ``start..start+rows`` of the synthetic customer base (deterministic, any slice on its own)."""
    ks = range(start, start + rows)
    persons = [_person(k) for k in ks]
    khmer = [p % 3 == 0 for p in persons]
    return pd.DataFrame(
        {
            "phone": [_phone(k) for k in ks],
            "name": [
                KHMER[p % len(KHMER)] if km else LATIN[p % len(LATIN)] for p, km in zip(persons, khmer, strict=True)
            ],
            "language": ["km" if km else "en" for km in khmer],
            "coupon": [f"K{k * 104_729 % 10_000_000:07d}" for k in ks],
            "until": "2027-01-31",
        },
        index=pd.Index([f"c{k}" for k in ks], name="customer"),
    )


def dask_customers(rows: int, partition_rows: int) -> Any:
    """The customer base as a lazy Dask DataFrame: each partition generated where it is computed."""
    import dask.dataframe as dd

    starts = list(range(0, rows, partition_rows))
    sizes = [min(partition_rows, rows - s) for s in starts]
    return dd.from_map(customers, starts, sizes, meta=customers(0, 1).iloc[:0], divisions=None)


def write_customers(folder: Path, rows: int, partition_rows: int) -> Path:
    """Write the customer base as Parquet, one file per partition, on the workers (not timed)."""
    dask_customers(rows, partition_rows).to_parquet(folder, write_index=True)
    return folder


def read_customers(folder: Path) -> Any:
    """The customers as a Dask DataFrame read from ``folder``, one partition per file (the pipeline's input)."""
    import dask.dataframe as dd

    return dd.read_parquet(folder, index="customer", calculate_divisions=False)


# -- memory ------------------------------------------------------------------------------------------
def _children() -> dict[int, list[int]]:
    """Map each process id to its children's ids (one pass over /proc)."""
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def tree_rss_mb(root: int) -> dict[str, float]:
    """The VmRSS (MB) of ``root`` and each of its descendants now, named by role and pid."""
    kids, todo, sizes = _children(), [root], {}
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, ()))
        try:
            with open(f"/proc/{pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmRSS:"):
                        sizes[f"{_role(pid, root)} {pid}"] = int(line.split()[1]) / 1024
                        break
        except OSError:
            continue
    return sizes


def _role(pid: int, root: int) -> str:
    """What process ``pid`` of this benchmark's tree is."""
    if pid == root:
        return "this process (client; with Dask also scheduler, nannies)"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read()
    except OSError:
        return "gone"
    if b"plasgate_nb._child" in command:
        return "simulator"
    if b"resource_tracker" in command:
        return "multiprocessing resource tracker"
    if b"multiprocessing" in command:
        return "dask worker"
    return command.replace(b"\0", b" ").decode(errors="replace")[:40]


class PeakSampler:
    """A thread summing the VmRSS of this process tree every ``interval`` s, keeping the peak."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_mb = 0.0
        self.at_peak: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        """Take one sample; keep it (by process) when it is the largest sum so far."""
        sizes = tree_rss_mb(os.getpid())
        total = sum(sizes.values())
        if total > self.peak_mb:
            self.peak_mb, self.at_peak = total, sizes

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


# -- the pipeline ------------------------------------------------------------------------------------
def templates() -> dict[str, str]:
    """One template per language: Khmer customers get the Khmer greeting."""
    return {"km": TEMPLATE, "en": TEMPLATE_LATIN}


def gateway_for(sim: Simulator) -> Gateway:
    """A gateway client for the simulator with the batch route's client-side limit off."""
    creds = sim.credentials
    return Gateway(
        base_url=sim.url,
        private_key=creds.private_key,
        secret=creds.secret,
        sender=creds.sender,
        max_in_flight=4,
        rate_limits={"batch": None},
    )


def pandas_pipeline(df: pd.DataFrame, campaign: Campaign) -> dict[str, int]:
    """prepare -> render (masked coupon) -> send (which plans first) -> collect on a pandas frame; counts by state."""
    prepared = prepare_audience(df, phone="phone")
    rendered = render_messages(prepared, templates(), by="language", mask=["coupon"])
    campaign.send(rendered)  # plans every row in the ledger, then sends: one pass, not plan() and send()
    out = campaign.collect(rendered)
    return {str(k): int(v) for k, v in out["send_state"].value_counts().items()}


def dask_pipeline(ddf: Any, campaign: Campaign) -> dict[str, int]:
    """The same pipeline on a Dask frame; counts by state, computed without gathering the rows."""
    prepared = prepare_audience(ddf, phone="phone")
    rendered = render_messages(prepared, templates(), by="language", mask=["coupon"])
    campaign.send(rendered)  # plans every row in the ledger, then sends: one pass, not plan() and send()
    collected = campaign.collect(rendered)
    # counts per partition, summed on the client: no shuffle for a handful of states
    counts = collected["send_state"].map_partitions(_state_counts, meta=_state_counts(collected._meta["send_state"]))
    return {str(k): int(v) for k, v in counts.compute().groupby(level=0).sum().items()}


def _state_counts(states: pd.Series) -> pd.Series:
    """Rows per send state of one partition."""
    return states.astype("string").value_counts().astype("int64")


@contextmanager
def cluster(workers: int, memory_limit: str) -> Iterator[Any]:
    """A LocalCluster of ``workers`` single-threaded worker processes and its client."""
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", memory_limit=memory_limit
        ) as local,
        distributed.Client(local) as client,
    ):
        yield client


def run_dask(
    rows: int, partition_rows: int, ledger_url: str, sim: Simulator, args: argparse.Namespace, tmp: str
) -> dict[str, Any]:
    """Time the Dask pipeline on ``rows`` rows, read from Parquet files written first; return figures."""
    with PeakSampler() as peak, cluster(args.workers, args.memory_limit):
        ledger = Ledger(ledger_url)
        campaign = Campaign("scale-dask", gateway=gateway_for(sim), ledger=ledger, progress=False)
        folder = write_customers(Path(tmp) / "customers", rows, partition_rows)
        start = time.perf_counter()
        states = dask_pipeline(read_customers(folder), campaign)
        seconds = time.perf_counter() - start
        ledger.close()
    return {"seconds": seconds, "states": states, "peak_mb": peak.peak_mb, "at_peak": peak.at_peak}


def run_pandas(rows: int, ledger_url: str, sim: Simulator, tmp: str) -> dict[str, Any]:
    """Time the pandas pipeline on ``rows`` rows, read from a Parquet file written first; return figures."""
    with PeakSampler() as peak:
        path = Path(tmp) / "customers.parquet"
        customers(0, rows).to_parquet(path)
        ledger = Ledger(ledger_url)
        campaign = Campaign("scale-pandas", gateway=gateway_for(sim), ledger=ledger, progress=False)
        start = time.perf_counter()
        df = pd.read_parquet(path)
        states = pandas_pipeline(df, campaign)
        seconds = time.perf_counter() - start
        ledger.close()
        del df
    return {"seconds": seconds, "states": states, "peak_mb": peak.peak_mb, "at_peak": peak.at_peak}


def expected_ok(rows: int) -> int:
    """How many of the first ``rows`` customers the audience stage keeps (no duplicate, a number)."""
    i = np.arange(rows, dtype=np.int64)
    dup = (i % DUPLICATE_EVERY == 7) & (i >= DUP_OFFSET)
    invalid = i % INVALID_EVERY == 3
    # a duplicate whose first row is invalid text still has a number of its own ('n/a' is per row)
    first_invalid = np.zeros(rows, dtype=bool)
    first_invalid[dup] = (i[dup] - DUP_OFFSET) % INVALID_EVERY == 3
    return int(rows - invalid.sum() - (dup & ~invalid & ~first_invalid).sum())


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="200,000 rows on Dask and 50,000 in pandas")
    parser.add_argument("--rows", type=int, help="rows on Dask (default 10,000,000; --quick 200,000)")
    parser.add_argument("--pandas-rows", type=int, help="rows in pandas (default 1,000,000; --quick 50,000)")
    parser.add_argument("--partition-rows", type=int, default=100_000, help="rows per Dask partition")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--memory-limit", default="1GiB", help="memory limit per Dask worker")
    parser.add_argument("--ledger", help="ledger URL or path (default: an SQLite file in a temporary directory)")
    parser.add_argument("--skip-pandas", action="store_true", help="run only the Dask pipeline")
    parser.add_argument("--skip-dask", action="store_true", help="run only the pandas pipeline")
    parser.add_argument(
        "--record",
        action="store_true",
        help="the simulator keeps its record of every message (about 70 bytes each); default record=False",
    )
    args = parser.parse_args()
    rows = args.rows or (200_000 if args.quick else 10_000_000)
    pandas_rows = args.pandas_rows or (50_000 if args.quick else 1_000_000)
    load_before = os.getloadavg()[0]
    config = SimulatorConfig(seed=1, rate_limits=RateLimits.off(), record=args.record)
    runs: dict[str, tuple[int, dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_dask:
            with Simulator(config) as sim:
                runs["dask"] = (
                    rows,
                    run_dask(rows, args.partition_rows, args.ledger or str(Path(tmp) / "dask.db"), sim, args, tmp),
                )
        if not args.skip_pandas:
            with Simulator(config) as sim:
                runs["pandas"] = (
                    pandas_rows,
                    run_pandas(pandas_rows, args.ledger or str(Path(tmp) / "pandas.db"), sim, tmp),
                )
    wrong = report(runs, args, (load_before, os.getloadavg()[0]))
    if wrong:
        raise SystemExit("; ".join(wrong))


def _processes(sizes: dict[str, float]) -> list[tuple[str, str]]:
    """Table rows: each process's RSS at the peak."""
    return [(f"    {role}", f"{mb:,.0f} MB") for role, mb in sorted(sizes.items(), key=lambda item: -item[1])]


def _dask_rows(
    rows: int, run: dict[str, Any], args: argparse.Namespace
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Table rows and figures of the Dask run."""
    rate = rows / run["seconds"]
    accepted = run["states"].get("accepted", 0)
    partitions = -(-rows // args.partition_rows)
    table = [
        (f"Dask, {args.workers} workers x {args.memory_limit}", f"{rows:,} rows in {partitions:,} partitions"),
        ("  prepare -> render -> plan -> send -> collect", f"{rate:,.0f} rows/s  ({run['seconds']:,.1f} s)"),
        ("  accepted by the simulator", f"{accepted:,} (expected {expected_ok(rows):,})"),
        ("  peak RSS, whole process tree", f"{run['peak_mb']:,.0f} MB (bound {BOUND_MB:,})"),
        *_processes(run["at_peak"]),
    ]
    figures = {
        "rows": rows,
        "rows_per_s": round(rate),
        "peak_rss_mb": round(run["peak_mb"]),
        "seconds": round(run["seconds"], 1),
        "partitions": partitions,
        "workers": args.workers,
    }
    return table, figures


def _pandas_rows(rows: int, run: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """Table rows and figures of the pandas run."""
    rate = rows / run["seconds"]
    accepted = run["states"].get("accepted", 0)
    table = [
        (f"pandas, {rows:,} rows", f"{rate:,.0f} rows/s  ({run['seconds']:,.1f} s)"),
        ("  accepted by the simulator", f"{accepted:,} (expected {expected_ok(rows):,})"),
        ("  peak RSS, whole process tree", f"{run['peak_mb']:,.0f} MB"),
        *_processes(run["at_peak"]),
    ]
    figures = {
        "pandas_rows": rows,
        "pandas_rows_per_s": round(rate),
        "pandas_peak_rss_mb": round(run["peak_mb"]),
        "pandas_seconds": round(run["seconds"], 1),
    }
    return table, figures


def report(
    runs: dict[str, tuple[int, dict[str, Any]]], args: argparse.Namespace, load: tuple[float, float]
) -> list[str]:
    """Print the table and the JSON line; return what went wrong (accepted rows not as expected)."""
    table: list[tuple[str, str]] = []
    figures: dict[str, Any] = {}
    wrong = []
    for name, (rows, run) in runs.items():
        rows_, figures_ = _dask_rows(rows, run, args) if name == "dask" else _pandas_rows(rows, run)
        table += rows_
        figures.update(figures_)
        accepted = run["states"].get("accepted", 0)
        if accepted != expected_ok(rows):
            wrong.append(f"{name}: {accepted:,} rows accepted, {expected_ok(rows):,} expected")
    table.append(("load average (1 min) before / after", f"{load[0]:.2f} / {load[1]:.2f}"))
    width = max(len(k) for k, _ in table)
    for key, value in table:
        print(f"{key:<{width}}  {value}")
    print(
        json.dumps(
            {
                "benchmark": "scale",
                "figures": figures,
                "ratios": {},
                "machine": {
                    "cpus": os.cpu_count(),
                    "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30),
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                    "load_avg_1m": round(load[1], 2),
                    "load_avg_1m_before": round(load[0], 2),
                },
            }
        )
    )
    return wrong


if __name__ == "__main__":
    main()

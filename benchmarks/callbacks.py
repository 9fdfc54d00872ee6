"""Benchmark the callback receiver: sustained DLR ingestion with durable commits, against its ceiling.

Setup (not timed): an SQLite ledger file with one campaign whose messages are ``accepted`` (half
grouped content sent by batch, half personalized). The receiver runs in its own process
(``CallbackServer`` process mode) and ``wrk`` (Debian package ``wrk``) loads it with 50 keep-alive
connections from a Lua script that gives every request its own report: for a grouped message a batch
callback (GET), a level-1 DLR (GET) and a level-2 DLR (POST form) to the ``_group`` URL, in whatever
order the connections deliver them; for a personalized message a level-1 GET and two level-2 POSTs
(ACCEPTD then a final status) to its own ``dlr_url``. Each run sends ``--reports`` distinct reports;
the script counts the ``ACK/Jasmin`` answers and the benchmark checks that the ledger then holds
exactly that many events. The ceiling is the same app stack (routes, parsing, group writer) over a
no-op sink that stores nothing, also in its own process. ``workers_2_per_s`` is the stored rate of
two receiver processes serving the same port into the same ledger (``CallbackServer(workers=2)``,
``plasgate-nb callbacks --workers 2``); on a 2-core machine that also runs wrk, two receivers cannot
have two cores to themselves, so compare it with one receiver's rate on a machine with cores to spare.
Medians of several runs. ``--writer thread`` commits in a thread of the receiver's process instead of
its writer process (for comparison).

On Linux the benchmark also reads the CPU time (user + system, ``/proc``) the server's processes and
their writer processes spent while wrk ran: ``cpu_us_per_report`` (one receiver),
``workers_2_cpu_us_per_report`` and ``ceiling_cpu_us_per_report``. That cost depends far less on
what else runs on the machine than the rates do; ``cpu_vs_ceiling`` (the ceiling's CPU per report
over the stored one's) is the stored/ceiling ratio a CPU-bound machine would show. From the same
costs, ``workers_2_core_bound_vs_1`` models (it does not measure) how two workers would scale if
each receiver process had a core to itself: N x 1 s / (the larger of the HTTP and the writer CPU per
report). ``--wrk-cpus 0`` pins wrk to CPU 0 (``taskset``) to keep it off the receiver's other core.

``collect_1m_s`` (merging a 1,000,000-row campaign into a frame) is measured by ``benchmarks/collect.py``
and left null here.

    python benchmarks/callbacks.py [--quick] [--runs N] [--reports N] [--writer process|thread] [--wrk-cpus LIST]

wrk: ``apt-get install wrk`` (Debian/Ubuntu), ``brew install wrk`` (macOS), or build it from
https://github.com/wg/wrk; the benchmark looks for it on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from plasgate_nb._keys import key_digest
from plasgate_nb.callbacks import create_app_from
from plasgate_nb.ledger import Ledger
from plasgate_nb.server import BackgroundServer

CAMPAIGN = "bench"
QUEUE_ID = "q-bench"
CONNECTIONS = 50
THREADS = 2
TOKEN = "bench-token-not-secret"

LUA = r"""
local token, quota, per_thread = "%(token)s", %(quota)d, %(per_thread)d
local signal_dir = "%(signal_dir)s"
local base = "/dlr/%(campaign)d/" .. token .. "/"
local batch = "/batch/%(campaign)d/" .. token
local digests = {}  -- the key digests callback URLs carry, digests[m + 1] for key "k" .. m
for line in io.lines("%(digests)s") do digests[#digests + 1] = line end
local form = {["Content-Type"] = "application/x-www-form-urlencoded"}
local threads = {}
tid, sent, answered, acked, other, checked = 0, 0, 0, 0, 0, false

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local function level2(id, status)
  return "id=" .. id .. "&message_status=" .. status .. "&level=2&connector=smsc&id_smsc=5E8F" ..
         "&sub=001&dlvrd=001&subdate=2611250932&donedate=2611250933&err=000&text=Your+code+is"
end

function request()
  if tid == 0 and not checked then  -- wrk calls thread 0's request() once to check it, and never sends it
    checked = true
    return wrk.format("GET", "/health")
  end
  local n = sent
  sent = sent + 1
  if n >= quota then return wrk.format("GET", "/health") end
  local m = tid * per_thread + math.floor(n / 3)
  local j = n %% 3
  local id = "gw-" .. m
  local final = (m %% 20 == 7) and "UNDELIV" or "DELIVRD"
  if m %% 2 == 0 then
    if j == 0 then
      return wrk.format("GET", batch .. "?batchId=%(queue)s&to=8551" .. (2000000 + m) ..
                        "&status=1&statusText=Success%%20%%22" .. id .. "%%22")
    elseif j == 1 then
      return wrk.format("GET", base .. "_group?id=" .. id .. "&message_status=ESME_ROK&level=1&connector=smsc")
    end
    return wrk.format("POST", base .. "_group", form, level2(id, final))
  end
  local key = base .. digests[m + 1]
  if j == 0 then
    return wrk.format("GET", key .. "?id=" .. id .. "&message_status=ESME_ROK&level=1&connector=smsc")
  elseif j == 1 then
    return wrk.format("POST", key, form, level2(id, "ACCEPTD"))
  end
  return wrk.format("POST", key, form, level2(id, final))
end

function response(status, headers, body)
  if body == "ok" then return end
  answered = answered + 1
  if status == 200 and body == "ACK/Jasmin" then acked = acked + 1 else other = other + 1 end
  if answered == quota then
    io.open(signal_dir .. "/done-" .. tid, "w"):close()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("THREAD %%d %%d %%d\n", t:get("tid"), t:get("acked"), t:get("other")))
  end
end
"""


class NullSink:
    """An EventSink that knows the bench token and stores nothing (the ceiling)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def campaign_route(self, campaign_id: int) -> tuple[str, str] | None:
        """Every campaign id is the bench campaign, with the bench token."""
        return CAMPAIGN, self.token

    def record_events(self, events: list[dict[str, Any]]) -> int:
        """Store nothing."""
        return len(events)


def null_app(token: str) -> Any:
    """The receiver app over a no-op sink (the factory the ceiling's child process calls)."""
    return create_app_from(NullSink(token))


def build_ledger(path: Path, messages: int) -> tuple[Ledger, str, int]:
    """An SQLite ledger whose ``messages`` rows were accepted by the gateway; returns it, the token and
    the campaign's id."""
    ledger = Ledger(path)
    info = ledger.open_campaign(CAMPAIGN)
    token = info.token
    keys = [f"k{m}" for m in range(messages)]
    ledger.plan(
        CAMPAIGN,
        pd.DataFrame(
            {
                "message_key": keys,
                "msisdn": [f"8551{2_000_000 + m}" for m in range(messages)],
                "content": "Your code is #ma#1234#ma#",
            }
        ),
    )
    ledger.mark_submitting(CAMPAIGN, keys, batch_id="b-bench")
    ledger.settle(CAMPAIGN, keys, state="accepted", queue_id=QUEUE_ID, status=200)
    ledger.close()
    return ledger, token, info.id


def count_events(path: Path) -> int:
    """The number of events stored in the ledger file."""
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM plasgate_events").fetchone()[0])


def _tree(roots: list[int]) -> list[int]:
    """``roots`` and all their descendants (Linux /proc; the receivers' writer processes among them)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def cpu_seconds(roots: list[int]) -> dict[int, float] | None:
    """User + system CPU seconds of each process in the trees under ``roots`` (None without /proc)."""
    if not Path("/proc/self/stat").exists():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in _tree(roots):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick
    return out


def run_wrk(
    url: str,
    token: str,
    reports: int,
    workdir: Path,
    *,
    campaign_id: int = 1,
    timeout: float = 600.0,
    server_pids: list[int] | None = None,
    wrk_cpus: str | None = None,
) -> dict[str, Any]:
    """Send ``reports`` distinct reports with wrk; return reports/s, ACKs and other answers.

    With ``server_pids``, also the CPU time the server's processes (and their writers) spent per
    report while wrk ran (``cpu_us``); ``wrk_cpus`` pins wrk to those CPUs (``taskset -c``).
    """
    quota = reports // THREADS
    per_thread = (quota + 2) // 3
    digests = workdir / "digests.txt"
    digests.write_text("".join(f"{key_digest(f'k{m}')}\n" for m in range(THREADS * per_thread)))
    signal_dir = workdir / f"signals-{time.monotonic_ns()}"
    signal_dir.mkdir()
    script = workdir / "reports.lua"
    script.write_text(
        LUA
        % {
            "token": token,
            "quota": quota,
            "per_thread": per_thread,
            "signal_dir": signal_dir,
            "queue": QUEUE_ID,
            "campaign": campaign_id,
            "digests": digests,
        }
    )
    command = [
        *(["taskset", "-c", wrk_cpus] if wrk_cpus else []),
        "wrk",
        "-t",
        str(THREADS),
        "-c",
        str(CONNECTIONS),
        "-d",
        f"{int(timeout)}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        url,
    ]
    cpu_before = cpu_seconds(server_pids) if server_pids else None
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = timeout
    while time.perf_counter() - started < timeout and process.poll() is None:
        if len(list(signal_dir.iterdir())) == THREADS:
            elapsed = time.perf_counter() - started
            break
        time.sleep(0.005)
    cpu_after = cpu_seconds(server_pids) if server_pids else None
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=30)
    if elapsed >= timeout:
        raise RuntimeError(f"wrk did not finish in {timeout:.0f} s:\n{output}")
    counts = [tuple(int(v) for v in line.split()[2:]) for line in output.splitlines() if line.startswith("THREAD")]
    if len(counts) != THREADS:
        raise RuntimeError(f"wrk did not report its counts:\n{output}")
    acked = sum(c[0] for c in counts)
    errors = re.search(r"Socket errors: .*", output)
    cpu = web = None
    if cpu_before is not None and cpu_after is not None and server_pids and acked:
        spent = {pid: after - cpu_before.get(pid, 0.0) for pid, after in cpu_after.items()}
        cpu = sum(spent.values()) / acked * 1e6
        web = sum(spent.get(pid, 0.0) for pid in server_pids) / acked * 1e6
    return {
        "cpu_us": cpu,  # CPU microseconds per report of the server processes and their writers
        "web_cpu_us": web,  # of the server (HTTP) processes alone
        "reports": quota * THREADS,
        "acked": acked,
        "other": sum(c[1] for c in counts),
        "seconds": elapsed,
        "per_s": acked / elapsed,
        "socket_errors": errors.group(0) if errors else "",
    }


def measure_stored(
    work: Path, run: int, reports: int, *, writer: str, workers: int, wrk_cpus: str | None = None
) -> dict[str, Any]:
    """One run of ``reports`` into a fresh ledger served by ``workers`` receiver processes; with the count
    of events the ledger then holds."""
    path = work / f"ledger-{run}-{workers}.db"
    ledger, token, campaign_id = build_ledger(path, (reports + 2) // 3 + THREADS)
    with BackgroundServer(
        "plasgate_nb.callbacks:create_app",
        mode="process",
        kwargs={"ledger_url": ledger.url, "writer": writer},
        workers=workers,
    ) as server:
        result: dict[str, Any] = run_wrk(
            server.url, token, reports, work, campaign_id=campaign_id, server_pids=server.pids, wrk_cpus=wrk_cpus
        )
    result["stored"] = count_events(path)
    path.unlink()
    return result


def rates(results: list[dict[str, Any]]) -> str:
    """Each run's reports/s, comma-separated."""
    return ", ".join(f"{r['per_s']:,.0f}" for r in results)


def cpu_costs(results: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Median CPU microseconds per report: all the receiver's processes, and its HTTP processes alone."""
    if any(r["cpu_us"] is None for r in results):
        return None
    return statistics.median(r["cpu_us"] for r in results), statistics.median(r["web_cpu_us"] for r in results)


def core_bound(costs: tuple[float, float] | None, workers: int) -> float | None:
    """The rate CPU alone allows when each of the receiver's processes has a core to itself.

    Each of the ``workers`` HTTP processes and each writer takes its share of the reports, and none can
    use more than one core: ``workers`` x 1 s / (the larger of the HTTP and the writer CPU per report).
    A model from measured CPU costs, not a measurement: latency (fsync, hand-overs) is left out.
    """
    if costs is None:
        return None
    total, web = costs
    return workers * 1e6 / max(web, total - web, 1e-9)


def main() -> None:
    """Run the stored and the ceiling measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 reports, 2 runs")
    parser.add_argument("--reports", type=int, default=None, help="reports per run (default 50,000)")
    parser.add_argument(
        "--writer",
        choices=("process", "thread"),
        default="process",
        help="where the receiver commits: its writer process (default) or a thread",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs of each measurement (default 5)")
    parser.add_argument(
        "--wrk-cpus", default=None, help="pin wrk to these CPUs (taskset -c list, e.g. 0), to keep it off the others"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("this benchmark needs wrk on PATH: apt-get install wrk (Debian/Ubuntu) or brew install wrk (macOS)")
    load_before = os.getloadavg()[0]
    reports = args.reports or (10_000 if args.quick else 50_000)
    runs = args.runs or (2 if args.quick else 5)
    stored: list[dict[str, float]] = []
    stored_2: list[dict[str, float]] = []
    ceiling: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for run in range(runs):
            stored.append(measure_stored(work, run, reports, writer=args.writer, workers=1, wrk_cpus=args.wrk_cpus))
            with BackgroundServer("benchmarks.callbacks:null_app", kwargs={"token": TOKEN}, mode="process") as server:
                ceiling.append(
                    run_wrk(server.url, TOKEN, reports, work, server_pids=server.pids, wrk_cpus=args.wrk_cpus)
                )
            stored_2.append(measure_stored(work, run, reports, writer=args.writer, workers=2, wrk_cpus=args.wrk_cpus))
    for result in stored + stored_2:
        if result["stored"] != result["acked"] or result["other"]:
            sys.exit(f"ledger check failed: {result}")
    per_s = statistics.median(r["per_s"] for r in stored)
    per_s_2 = statistics.median(r["per_s"] for r in stored_2)
    top = statistics.median(r["per_s"] for r in ceiling)
    cost, cost_2, cost_top = cpu_costs(stored), cpu_costs(stored_2), cpu_costs(ceiling)
    bound, bound_2 = core_bound(cost, 1), core_bound(cost_2, 2)

    def shown(costs: tuple[float, float] | None) -> str:
        return "n/a" if costs is None else f"{costs[0]:.0f} ({costs[1]:.0f} HTTP)"

    print(
        f"callbacks benchmark: {reports:,} reports per run, {CONNECTIONS} connections, {runs} runs, "
        f"receiver in its own process over an SQLite ledger file (synchronous=FULL), {args.writer} writer"
    )
    print(f"{'measure':<36}{'median/s':>10}   {'CPU us/report':<20} runs")
    print(f"{'stored (ACK after commit)':<36}{per_s:>10,.0f}   {shown(cost):<20} {rates(stored)}")
    print(f"{'ceiling (no-op sink)':<36}{top:>10,.0f}   {shown(cost_top):<20} {rates(ceiling)}")
    print(f"{'stored, 2 workers (--workers 2)':<36}{per_s_2:>10,.0f}   {shown(cost_2):<20} {rates(stored_2)}")
    if bound is not None and bound_2 is not None:
        print(
            f"CPU alone, a core per receiver process (model): 1 worker {bound:,.0f}/s, 2 workers {bound_2:,.0f}/s "
            f"({bound_2 / bound:.2f}x)"
        )
    print(f"{'ledger events == ACKs':<36}{'yes':>10}   {', '.join(str(r['stored']) for r in stored + stored_2)}")
    print(f"load average (1 min) before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    figures = {
        "reports": reports,
        "reports_per_s": round(per_s),
        "ceiling_per_s": round(top),
        "workers_2_per_s": round(per_s_2),
        "collect_1m_s": None,
        "cpu_us_per_report": None if cost is None else round(cost[0], 1),
        "ceiling_cpu_us_per_report": None if cost_top is None else round(cost_top[0], 1),
        "workers_2_cpu_us_per_report": None if cost_2 is None else round(cost_2[0], 1),
        "runs": runs,
        "connections": CONNECTIONS,
    }
    ratios = {
        "vs_ceiling": round(per_s / top, 3),
        "workers_2_vs_1": round(per_s_2 / per_s, 3),
        "cpu_vs_ceiling": None if cost is None or cost_top is None else round(cost_top[0] / cost[0], 3),
        "workers_2_core_bound_vs_1": None if bound is None or bound_2 is None else round(bound_2 / bound, 3),
    }
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "load_avg_1m_before": round(load_before, 2),
        "writer": args.writer,
        "wrk_cpus": args.wrk_cpus,
        "collect_1m_s": "see benchmarks/collect.py",
    }
    print(json.dumps({"benchmark": "callbacks", "figures": figures, "ratios": ratios, "machine": machine}))


if __name__ == "__main__":
    main()

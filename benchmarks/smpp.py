"""Benchmark: submit_sm/s over one transceiver, windowed vs stop-and-wait, against the simulator's
SMPP server running in its own process. Prints a table; the last line is one JSON object."""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import time
from typing import Any

from plasgate_nb.simulator.smpp_server import SimpleBackend, SmppServer
from plasgate_nb.smpp import SmppConfig, SmppSession


def _serve(conn: Any, stop: Any) -> None:
    """Child process: run the SMPP server until told to stop."""
    server = SmppServer(SimpleBackend(latency=0.0))
    server.start()
    conn.send(server.port)
    stop.wait()
    server.stop()


async def _rate(port: int, *, window: int, count: int) -> float:
    """Bind one transceiver and return submit_sm/s for ``count`` one-part messages."""
    cfg = SmppConfig(port=port, system_id="demo", password="demopass", window=window,
                     registered_delivery=0)
    messages = [{"to": f"8551234{i % 100000:05d}", "text": f"Hello {i}", "sender": "SMS Info"}
                for i in range(count)]
    async with SmppSession(cfg) as session:
        await session.submit_many(messages[: min(200, count)])  # warm up
        started = time.perf_counter()
        results = await session.submit_many(messages)
        elapsed = time.perf_counter() - started
    if any(r.outcome != "accepted" for r in results):
        raise RuntimeError("some submit_sm were not accepted")
    return count / elapsed


def main() -> None:
    """Run the benchmark and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument("--window", type=int, default=50)
    args = parser.parse_args()
    count = 4000 if args.quick else 20000
    runs = 3
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    proc = ctx.Process(target=_serve, args=(child, stop), name="smpp-bench-server")
    proc.start()
    try:
        port = parent.recv()
        windowed = [asyncio.run(_rate(port, window=args.window, count=count)) for _ in range(runs)]
        stop_and_wait = [asyncio.run(_rate(port, window=1, count=count // 5)) for _ in range(runs)]
    finally:
        stop.set()
        proc.join(10)
    w, s = statistics.median(windowed), statistics.median(stop_and_wait)
    print(f"{'client':<22}{'messages':>10}{'submit_sm/s (median of 3)':>28}")
    print(f"{'window=' + str(args.window):<22}{count:>10}{w:>28,.0f}")
    print(f"{'stop-and-wait':<22}{count // 5:>10}{s:>28,.0f}")
    print(f"ratio {w / s:.1f}x")
    print(json.dumps({"benchmark": "smpp",
                      "figures": {"submit_per_s": round(w), "stop_and_wait_per_s": round(s),
                                  "messages": count, "window": args.window},
                      "ratios": {"vs_stop_and_wait": round(w / s, 2)},
                      "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                  "platform": platform.platform()}}))


if __name__ == "__main__":
    main()

"""Benchmark the simulator: recipients/s accepted through /rest/batch-send, and callbacks/s it throws.

The simulator runs in its own process (rate limits off); the load comes from this process with several
concurrent httpx clients (1,000 recipients per request). Callbacks go to a minimal receiver in a third
process. Prints a table; the last line is one JSON object.

    python benchmarks/simulator.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the child imports benchmarks.simulator

from plasgate_nb.server import BackgroundServer
from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig


def receiver_app() -> Starlette:
    """A receiver answering ACK/Jasmin to everything (served in its own process)."""
    async def ack(request: object) -> PlainTextResponse:
        return PlainTextResponse("ACK/Jasmin")
    return Starlette(routes=[Route("/{p:path}", ack, methods=["GET", "POST"])])


def batch_body(n: int, offset: int, *, callback_url: str | None = None) -> bytes:
    """A batch of ``n`` distinct recipients with one content."""
    body: dict[str, object] = {"globals": {"sender": "SMS Info"},
                               "messages": [{"to": [f"8551{2 + (i % 7)}{(offset + i) % 10**6:06d}"
                                                    for i in range(n)],
                                             "content": "Hello from the benchmark, your code is #ma#1234#ma#"}]}
    if callback_url:
        body["batch_config"] = {"callback_url": callback_url}
    return json.dumps(body).encode()


async def load(url: str, params: dict[str, str], headers: dict[str, str], bodies: list[bytes],
               concurrency: int) -> float:
    """Post ``bodies`` with ``concurrency`` clients; return the elapsed seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, params=params, headers=headers, timeout=60,
                                     trust_env=False) as c:
            while not queue.empty():
                body = queue.get_nowait()
                resp = await c.post("/rest/batch-send", content=body)
                if resp.status_code != 200:
                    raise RuntimeError(f"{resp.status_code} {resp.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return time.perf_counter() - start


def run_accept(requests: int, size: int, runs: int) -> list[float]:
    """Measure accepted recipients/s, ``runs`` times (fresh simulator each)."""
    rates = []
    for run in range(runs):
        config = SimulatorConfig(seed=run, rate_limits=RateLimits.off())
        with Simulator(config) as sim:
            creds = sim.credentials
            bodies = [batch_body(size, i * size) for i in range(requests)]
            elapsed = asyncio.run(load(sim.url, {"private_key": creds.private_key},
                                       {"X-Secret": creds.secret, "Content-Type": "application/json"},
                                       bodies, concurrency=4))
            if sim.state()["records"] != requests * size:
                raise RuntimeError("record count mismatch")
            rates.append(requests * size / elapsed)
    return rates


def run_callbacks(recipients: int, runs: int) -> list[float]:
    """Measure batch callbacks/s thrown to a receiver in another process."""
    rates = []
    with BackgroundServer("benchmarks.simulator:receiver_app", mode="process") as receiver:
        for run in range(runs):
            config = SimulatorConfig(seed=run, rate_limits=RateLimits.off())
            with Simulator(config) as sim:
                creds = sim.credentials
                start = time.perf_counter()
                resp = httpx.post(f"{sim.url}/rest/batch-send", params={"private_key": creds.private_key},
                                  headers={"X-Secret": creds.secret, "Content-Type": "application/json"},
                                  content=batch_body(recipients, 0, callback_url=f"{receiver.url}/cb"),
                                  trust_env=False, timeout=60)
                resp.raise_for_status()
                state = sim.wait_idle(timeout=300)
                elapsed = time.perf_counter() - start
                if state["callbacks"]["acked"] != recipients:
                    raise RuntimeError(f"callbacks acked {state['callbacks']['acked']} != {recipients}")
                rates.append(recipients / elapsed)
    return rates


def main() -> None:
    """Run both measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    args = parser.parse_args()
    requests, runs, cb = (40, 2, 2_000) if args.quick else (200, 3, 10_000)
    accept = run_accept(requests, 1_000, runs)
    callbacks = run_callbacks(cb, runs)
    figures = {"recipients_per_s": round(statistics.median(accept)),
               "callbacks_per_s": round(statistics.median(callbacks))}
    print(f"{'measure':<34}{'median':>12}{'runs':>28}")
    print(f"{'batch-send recipients/s (1000/req)':<34}{figures['recipients_per_s']:>12,}"
          f"{', '.join(f'{r:,.0f}' for r in accept):>28}")
    print(f"{'batch callbacks/s':<34}{figures['callbacks_per_s']:>12,}"
          f"{', '.join(f'{r:,.0f}' for r in callbacks):>28}")
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    print(json.dumps({"benchmark": "simulator", "figures": figures, "ratios": {}, "machine": machine}))


if __name__ == "__main__":
    main()

"""Benchmark the simulator: recipients/s accepted through /rest/batch-send, and callbacks/s it throws.

The simulator runs in its own process (rate limits off); the load comes from this process with several
concurrent httpx clients (1,000 recipients per request). Callbacks go to a minimal raw-asyncio receiver
(answers ``ACK/Jasmin``, counts requests) in a third process, so the simulator is what is measured.
The callback rate is the receiver's count over the time from its first to its last callback; the mix
is the demo's: per recipient one batch callback (GET), a level-1 and a level-2 DLR (POST form).
Prints a table; the last line is one JSON object.

    python benchmarks/simulator.py [--quick] [--concurrency 8,32,64] [--slow-ms 5]

It also compares ``callback_concurrency`` settings against the fast receiver and against one that
answers after ``--slow-ms`` (as a receiver committing each callback to a database would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from plasgate_nb.simulator import RateLimits, Simulator, SimulatorConfig

ACK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nACK/Jasmin"
STATS = {"count": 0, "first": 0.0, "last": 0.0}  # the receiver process's counters


class _Receiver(asyncio.Protocol):
    """Answer every request with ACK/Jasmin (after ``DELAY`` s, as a receiver committing to a database
    would); count them (and serve the counts on /_stats)."""

    delay = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport; no Nagle delay."""
        self.transport = transport
        self.buf = b""
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        """Answer each complete request in ``data``."""
        self.buf += data
        out = []
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self.buf[:end].lower()
            length = 0
            at = head.find(b"\r\ncontent-length:")
            if at >= 0:
                length = int(head[at + 17 :].split(b"\r\n", 1)[0])
            if len(self.buf) < end + 4 + length:
                break
            self.buf = self.buf[end + 4 + length :]
            if head.startswith(b"get /_stats"):
                body = json.dumps(STATS).encode()
                out.append(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                continue
            if head.startswith(b"get /_reset"):
                STATS.update(count=0, first=0.0, last=0.0)
            else:
                now = time.perf_counter()
                if not STATS["count"]:
                    STATS["first"] = now
                STATS["count"] += 1
                STATS["last"] = now
            out.append(ACK)
        if out and self.delay:
            asyncio.get_running_loop().call_later(self.delay, self.transport.write, b"".join(out))
        elif out:
            self.transport.write(b"".join(out))


async def _serve_receiver(delay_ms: float) -> None:
    """Serve the receiver on a free loopback port; print the port; run until killed."""
    _Receiver.delay = delay_ms / 1000
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Receiver, "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


class ReceiverProcess:
    """The raw receiver in a child process (answering after ``delay_ms``)."""

    def __init__(self, delay_ms: float = 0.0) -> None:
        self.delay_ms = delay_ms

    def __enter__(self) -> ReceiverProcess:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-receiver", "--delay-ms", str(self.delay_ms)],
            stdout=subprocess.PIPE,
            text=True,
        )
        port = int(self.proc.stdout.readline())  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def reset(self) -> None:
        """Zero the counters."""
        httpx.get(f"{self.url}/_reset", trust_env=False)

    def stats(self) -> dict[str, float]:
        """Return the counters."""
        return httpx.get(f"{self.url}/_stats", trust_env=False).json()


def batch_body(n: int, offset: int, *, callback_url: str | None = None, dlr_url: str | None = None) -> bytes:
    """A batch of ``n`` distinct recipients with one content."""
    body: dict[str, object] = {
        "globals": {"sender": "SMS Info"},
        "messages": [
            {
                "to": [f"8551{2 + (i % 7)}{(offset + i) % 10**6:06d}" for i in range(n)],
                "content": "Hello from the benchmark, your code is #ma#1234#ma#",
            }
        ],
    }
    if callback_url:
        body["batch_config"] = {"callback_url": callback_url}
    if dlr_url:
        body["globals"].update(dlr="yes", dlr_url=dlr_url, dlr_level=3, dlr_method="POST")  # type: ignore[union-attr]
    return json.dumps(body).encode()


async def load(
    url: str, params: dict[str, str], headers: dict[str, str], bodies: list[bytes], concurrency: int
) -> float:
    """Post ``bodies`` with ``concurrency`` clients; return the elapsed seconds."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, params=params, headers=headers, timeout=60, trust_env=False) as c:
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
            elapsed = asyncio.run(
                load(
                    sim.url,
                    {"private_key": creds.private_key},
                    {"X-Secret": creds.secret, "Content-Type": "application/json"},
                    bodies,
                    concurrency=4,
                )
            )
            if sim.state()["records"] != requests * size:
                raise RuntimeError("record count mismatch")
            rates.append(requests * size / elapsed)
    return rates


def run_callbacks(receiver: ReceiverProcess, recipients: int, runs: int, concurrency: int | None) -> list[float]:
    """Measure callbacks/s (1 batch callback + level 1 + level 2 DLR per recipient) at ``concurrency``."""
    rates = []
    for run in range(runs):
        extra = {} if concurrency is None else {"callback_concurrency": concurrency}
        config = SimulatorConfig(seed=run, rate_limits=RateLimits.off(), clock_speed=1e6, **extra)
        with Simulator(config) as sim:
            creds = sim.credentials
            receiver.reset()
            resp = httpx.post(
                f"{sim.url}/rest/batch-send",
                params={"private_key": creds.private_key},
                headers={"X-Secret": creds.secret, "Content-Type": "application/json"},
                content=batch_body(recipients, 0, callback_url=f"{receiver.url}/cb", dlr_url=f"{receiver.url}/dlr"),
                trust_env=False,
                timeout=60,
            )
            resp.raise_for_status()
            state = sim.wait_idle(timeout=600)
            # batch callback + level 1 + level 2 each; no level 2 for NEVER and SMSC refusals, an
            # intermediate report (UNKNOWN or ENROUTE) before the DELIVRD of *_THEN_DELIVRD
            outcomes = [r["outcome"] for r in sim.records()]
            expected = (
                3 * recipients
                - sum(o in ("NEVER", "ESME_RINVDSTADR") for o in outcomes)
                + sum(o.endswith("_THEN_DELIVRD") for o in outcomes)
            )
            stats = receiver.stats()
            if state["callbacks"]["acked"] != expected or stats["count"] != expected:
                raise RuntimeError(
                    f"callbacks acked {state['callbacks']['acked']}, received {stats['count']}, expected {expected}"
                )
            rates.append((stats["count"] - 1) / (stats["last"] - stats["first"]))
    return rates


def main() -> None:
    """Run both measurements and print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, fewer runs")
    parser.add_argument(
        "--concurrency", default="8,16,32,64,128", help="callback_concurrency values to compare (comma-separated)"
    )
    parser.add_argument(
        "--slow-ms", type=float, default=5.0, help="the second sweep's receiver answers after this many milliseconds"
    )
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_receiver:
        asyncio.run(_serve_receiver(args.delay_ms))
        return
    requests, runs, recipients = (40, 3, 2_000) if args.quick else (200, 5, 10_000)
    values = [int(v) for v in args.concurrency.split(",") if v]
    accept = run_accept(requests, 1_000, runs)
    sweep: dict[int, list[float]] = {}
    slow: dict[int, list[float]] = {}
    with ReceiverProcess() as receiver:
        callbacks = run_callbacks(receiver, recipients, runs, None)
        for value in values:
            sweep[value] = run_callbacks(receiver, recipients, 3, value)
    with ReceiverProcess(args.slow_ms) as receiver:
        for value in values:
            slow[value] = run_callbacks(receiver, 1_000, 1 if args.quick else 3, value)
    default = SimulatorConfig().callback_concurrency
    figures = {
        "recipients_per_s": round(statistics.median(accept)),
        "callbacks_per_s": round(statistics.median(callbacks)),
    }
    print(f"{'measure':<44}{'median':>10}   runs")
    print(
        f"{'batch-send recipients/s (1000/req)':<44}{figures['recipients_per_s']:>10,}   "
        f"{', '.join(f'{r:,.0f}' for r in accept)}"
    )
    print(
        f"{f'callbacks/s (concurrency {default}, default)':<44}{figures['callbacks_per_s']:>10,}   "
        f"{', '.join(f'{r:,.0f}' for r in callbacks)}"
    )
    for label, table in (("", sweep), (f", receiver {args.slow_ms:g} ms", slow)):
        for value, rates in table.items():
            print(
                f"{f'callbacks/s (concurrency {value}{label})':<44}{statistics.median(rates):>10,.0f}   "
                f"{', '.join(f'{r:,.0f}' for r in rates)}"
            )
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "callback_concurrency": default,
        "callbacks_per_s_by_concurrency": {str(k): round(statistics.median(v)) for k, v in sweep.items()},
        f"callbacks_per_s_by_concurrency_receiver_{args.slow_ms:g}ms": {
            str(k): round(statistics.median(v)) for k, v in slow.items()
        },
    }
    print(json.dumps({"benchmark": "simulator", "figures": figures, "ratios": {}, "machine": machine}))


if __name__ == "__main__":
    main()

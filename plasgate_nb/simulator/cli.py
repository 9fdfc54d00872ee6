"""``plasgate-nb simulator``: serve the gateway double in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import secrets
import sys

import uvicorn

from ..errors import PlasgateError
from ..server import bind_socket
from .app import ADMIN_HEADER, create_app
from .config import RateLimits, SimulatorConfig
from .faults import parse_fault

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 = any)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the delivery model (reproducible)")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn the documented rate limits off")
    parser.add_argument("--clock-speed", type=float, default=1.0,
                        help="run simulated time this many times faster (latencies, schedules, retries)")
    parser.add_argument("--balance", type=float, default=None, help="starting balance of the demo account")
    parser.add_argument("--retry-delay", type=float, default=30.0,
                        help="seconds between DLR retries until ACK/Jasmin (default 30, as Jasmin)")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND[:ROUTE][:p=P|n=N]",
                        help="inject a fault, e.g. drop_after:batch:n=1 or error_before:*:p=0.1 (repeatable)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; print the URL and the demo credentials first."""
    try:
        faults = tuple(parse_fault(text) for text in args.fault)
    except (ValueError, TypeError) as exc:
        print(f"plasgate-nb simulator: bad --fault: {exc}", file=sys.stderr)
        return 2
    config = SimulatorConfig(seed=args.seed, clock_speed=args.clock_speed, faults=faults,
                             callback_retry_delay=args.retry_delay,
                             rate_limits=RateLimits.off() if args.no_rate_limits else RateLimits())
    if args.balance is not None:
        from dataclasses import replace
        config = replace(config, accounts=(replace(config.accounts[0], balance=args.balance),))
    token = secrets.token_urlsafe(18)
    try:
        sock = bind_socket(args.host, args.port)
    except PlasgateError as exc:
        print(f"plasgate-nb simulator: {exc}", file=sys.stderr)
        return 1
    port = sock.getsockname()[1]
    account = config.accounts[0]
    url = f"http://{args.host}:{port}"
    # the simulator's own demo account: showing its secret here is the point
    print(f"Plasgate simulator listening on {url}\n"
          f"  REST:      POST {url}/rest/send?private_key={account.private_key}  "
          f"(header X-Secret: {account.secret})\n"
          f"             POST {url}/rest/batch-send?private_key=...   GET {url}/report?private_key=...\n"
          f"  HTTP API:  POST {url}/api/send  username={account.username} password={account.password}\n"
          f"  sender:    {account.senders[0]}\n"
          f"  admin:     GET {url}/_sim/records  (header {ADMIN_HEADER}: {token})\n"
          "Press Ctrl-C to stop.", flush=True)
    server = uvicorn.Server(uvicorn.Config(create_app(config, token), log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=3))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # pragma: no cover - uvicorn normally handles SIGINT itself
        pass
    finally:
        sock.close()
    print("Plasgate simulator stopped.", flush=True)
    return 0

"""``plasgate-nb callbacks``: run the delivery-report receiver in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse

import uvicorn

from ..callbacks import create_app
from ..server import bind_socket


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the receiver's options."""
    parser.add_argument("--ledger", required=True, help="the campaigns' ledger: SQLite path or postgresql:// URL")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8090, help="port to listen on (default 8090)")
    parser.add_argument(
        "--public-url",
        default=None,
        help="the URL the gateway reaches this receiver at (tunnel or reverse proxy); "
        "give it to `plasgate-nb send --callback-url`",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    sock = bind_socket(args.host, args.port)
    port = sock.getsockname()[1]
    public = args.public_url or f"http://{args.host}:{port}"
    print(f"callback receiver listening on http://{args.host}:{port}; tell the gateway {public}", flush=True)
    config = uvicorn.Config(create_app(args.ledger), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0

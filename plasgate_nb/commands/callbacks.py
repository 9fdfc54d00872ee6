"""``plasgate-nb callbacks``: run the delivery-report receiver in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import errno

import uvicorn

from ..callbacks import create_app
from ..errors import ConfigError, PlasgateError
from ..ledger import Ledger
from ..server import bind_socket


def port_number(text: str) -> int:
    """An ``--port`` value: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0-65535")
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the receiver's options."""
    parser.add_argument("--ledger", required=True, help="the campaigns' ledger: SQLite path or postgresql:// URL")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=8090, help="port to listen on (default 8090; 0 picks a free one)"
    )
    parser.add_argument(
        "--public-url",
        default=None,
        help="the URL the gateway reaches this receiver at (tunnel or reverse proxy); "
        "give it to `plasgate-nb send --callback-url`",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (a normal stop: exit 0), then say so."""
    with Ledger(args.ledger) as ledger:  # a bad --ledger fails here in one line, not in the server's startup
        ledger.campaign_token("")
    app = create_app(args.ledger)
    try:
        sock = bind_socket(args.host, args.port)
    except (PlasgateError, OSError) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        in_use = isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE
        hint = "; another program listens there: choose another --port (0 picks a free one)" if in_use else ""
        raise ConfigError(f"{exc} (--host {args.host} --port {args.port}){hint}") from exc
    port = sock.getsockname()[1]
    public = args.public_url or f"http://{args.host}:{port}"
    print(f"callback receiver listening on http://{args.host}:{port}; tell the gateway {public}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    started = False
    try:
        server.run(sockets=[sock])
        started = server.started
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled once it has shut down
        started = server.started
    except SystemExit:  # uvicorn exits when the app's startup (the ledger writer) failed
        started = False
    finally:
        sock.close()
    if not started:
        raise ConfigError(f"the callback receiver did not start on --ledger {args.ledger} (see the log above)")
    print("callback receiver stopped", flush=True)
    return 0

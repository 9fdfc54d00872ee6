"""``plasgate-nb callbacks``: run the callback receiver in the foreground until Ctrl-C.

It answers the gateway's delivery reports, batch callbacks and replies (MO) over HTTP; with
``--smpp HOST:PORT`` it also keeps a ``bind_receiver`` to the gateway for receipts and replies that
arrive after a campaign's SMPP session unbound (login from ``PLASGATE_SMPP_SYSTEM_ID`` and
``PLASGATE_SMPP_PASSWORD``), reconnecting with backoff. With ``--workers N`` N processes serve the
port (one listening socket, each storing into the ledger; writers take turns there), and a worker that
dies is replaced.
"""

from __future__ import annotations

import argparse
import errno
import socket
import time

import uvicorn

from ..callbacks import HEADER_TIMEOUT, create_app, reply_url
from ..errors import ConfigError, PlasgateError
from ..ledger import Ledger
from ..server import BackgroundServer, bind_socket, header_timeout_protocol
from ..smpp import SmppConfig


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
    parser.add_argument(
        "--smpp",
        default=None,
        metavar="HOST:PORT",
        help="also stay bound to this SMPP server as a receiver and store late receipts and replies "
        "(login from PLASGATE_SMPP_SYSTEM_ID and PLASGATE_SMPP_PASSWORD)",
    )
    parser.add_argument(
        "--header-timeout",
        type=positive_seconds,
        default=HEADER_TIMEOUT,
        help="close connections that send no complete request headers in this many seconds "
        f"(default {HEADER_TIMEOUT:g})",
    )
    parser.add_argument(
        "--workers",
        type=worker_count,
        default=1,
        help="receiver processes serving the port, each storing into the ledger (default 1; "
        "2 or more when cores are free: see the README's 'Several receivers')",
    )


def worker_count(text: str) -> int:
    """A ``--workers`` value: 1 to 64 processes."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of workers: {text!r}") from None
    if not 1 <= count <= 64:
        raise argparse.ArgumentTypeError(f"--workers {count} is out of range 1-64")
    return count


def positive_seconds(text: str) -> float:
    """A ``--header-timeout`` value: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value


def smpp_config(address: str | None) -> SmppConfig | None:
    """The receiver's SMPP settings from ``--smpp HOST:PORT`` (None without it)."""
    if address is None:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--smpp needs HOST:PORT (e.g. smpp.example.com:2775), not {address!r}")
    return SmppConfig(host=host, port=int(port), bind="receiver")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (a normal stop: exit 0), then say so."""
    smpp = smpp_config(args.smpp)  # before anything starts: a missing SMPP login is one clear line
    with Ledger(args.ledger) as ledger:  # a bad --ledger fails here in one line, not in the server's startup
        token = ledger.reply_token()
        url = ledger.url  # the workers open the same ledger, whatever their working directory
    app = create_app(args.ledger, smpp=smpp) if args.workers == 1 else None
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
    print(
        f"replies (MO) over HTTP: set the account's MO URL to {reply_url(public, token)} (keep it secret)", flush=True
    )
    if smpp is not None:
        print(f"keeping an SMPP receiver bound to {smpp.host}:{smpp.port} for late receipts and replies", flush=True)
    if args.workers > 1:
        return _run_workers(args, url, sock, smpp)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, http=header_timeout_protocol(args.header_timeout)
    )
    server = uvicorn.Server(config)
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


SUPERVISE_EVERY = 0.5  # seconds between checks that every worker still runs


def _run_workers(args: argparse.Namespace, url: str, sock: socket.socket, smpp: SmppConfig | None) -> int:
    """Serve from ``--workers`` processes sharing the bound socket; replace any that dies; stop on Ctrl-C."""
    server = BackgroundServer(
        "plasgate_nb.callbacks:create_app",
        kwargs={"ledger_url": url, "smpp": smpp},
        host=args.host,
        port=sock.getsockname()[1],
        mode="process",
        header_timeout=args.header_timeout,
        workers=args.workers,
        sock=sock,
    )
    try:
        server.start()
    except PlasgateError as exc:
        raise ConfigError(f"the callback receiver did not start on --ledger {args.ledger}: {exc}") from exc
    print(f"{args.workers} receiver processes serving the port: {' '.join(map(str, server.pids))}", flush=True)
    try:
        while True:
            time.sleep(SUPERVISE_EVERY)
            try:
                for old, code, new in server.revive():
                    print(f"receiver process {old} exited (code {code}); started {new} in its place", flush=True)
            except PlasgateError as exc:  # e.g. the ledger is down: try again at the next check
                print(f"could not replace a receiver process: {exc}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("callback receiver stopped", flush=True)
    return 0

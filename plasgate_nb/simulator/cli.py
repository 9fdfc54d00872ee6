"""``plasgate-nb simulator``: serve the gateway double in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import uvicorn

from ..errors import PlasgateError
from ..server import bind_socket
from .app import ADMIN_HEADER, create_app
from .config import ROUTES, DeliveryModel, RateLimits, SimulatorConfig
from .faults import parse_fault

__all__ = ["add_arguments", "parse_carrier", "parse_limits", "run"]

_CARRIER_FIELDS = {
    "undeliverable": "undeliverable",
    "expired": "expired",
    "rejected": "rejected",
    "latency": "median_latency",
    "sigma": "latency_sigma",
    "submit": "submit_latency",
    "expiry": "expiry_after",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default 8080; 0 = any)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the delivery model (reproducible)")
    parser.add_argument("--no-rate-limits", action="store_true", help="turn the documented rate limits off")
    parser.add_argument(
        "--limit",
        action="append",
        default=[],
        metavar="ROUTE=N|off",
        help="requests per minute of one route: rest (/rest/send, default 200), batch (/rest/batch-send, "
        "100) or api (/api/send, 200); e.g. --limit batch=20 --limit api=off (repeatable)",
    )
    parser.add_argument(
        "--carrier",
        action="append",
        default=[],
        metavar="NAME:FIELD=V,...",
        help="change one carrier of the delivery model (smart, cellcard, metfone, seatel, other): "
        "undeliverable, expired, rejected (probabilities), latency, sigma, submit, expiry (seconds); "
        "e.g. --carrier metfone:undeliverable=0.2,latency=30 (repeatable)",
    )
    parser.add_argument(
        "--callback-retries",
        type=int,
        default=None,
        metavar="N",
        help="times a DLR is retried until the receiver answers ACK/Jasmin (default 3, as Jasmin)",
    )
    parser.add_argument(
        "--clock-speed",
        type=float,
        default=1.0,
        help="run simulated time this many times faster (latencies, schedules, retries)",
    )
    parser.add_argument("--balance", type=float, default=None, help="starting balance of the demo account")
    parser.add_argument(
        "--retry-delay",
        type=float,
        default=30.0,
        help="seconds between DLR retries until ACK/Jasmin (default 30, as Jasmin)",
    )
    parser.add_argument(
        "--smpp-port",
        type=int,
        default=None,
        metavar="N",
        help="also serve SMPP v3.4 on port N (0 = any free port; Plasgate's is 2775); "
        "bind with the HTTP API username and password printed at start",
    )
    parser.add_argument(
        "--opt-out-replies",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of numbers (0-1, chosen per number from --seed) whose handset replies STOP or ឈប់ "
        "a second after each delivered message (default 0: never)",
    )
    parser.add_argument(
        "--mo-url",
        default=None,
        metavar="URL",
        help="post replies from handsets to URL as Jasmin's MO HTTP connector does (without it they go to "
        "the bound SMPP receiver)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND[:ROUTE][:p=P|n=N]",
        help="inject a fault, e.g. drop_after:batch:n=1 or error_before:*:p=0.1 (repeatable)",
    )


def parse_limits(texts: list[str], *, off: bool = False) -> RateLimits:
    """Rate limits from ``--limit ROUTE=N|off`` options (over the documented ones, or none with ``off``)."""
    limits = RateLimits.off() if off else RateLimits()
    for text in texts:
        route, sep, value = text.partition("=")
        route = route.strip().lower()
        if not sep or route not in ROUTES:
            raise ValueError(f"--limit {text!r}: use ROUTE=N or ROUTE=off with ROUTE one of {', '.join(ROUTES)}")
        if value.strip().lower() in ("off", "none", "0"):
            limits = replace(limits, **{route: None})
            continue
        try:
            per_minute = int(value)
        except ValueError:
            raise ValueError(f"--limit {text!r}: {value!r} is not a whole number of requests per minute") from None
        if per_minute < 0:
            raise ValueError(f"--limit {text!r}: the limit cannot be negative")
        limits = replace(limits, **{route: per_minute})
    return limits


def parse_carrier(text: str, model: DeliveryModel) -> DeliveryModel:
    """Return ``model`` with one carrier changed by a ``--carrier NAME:FIELD=V,...`` option."""
    name, sep, settings = text.partition(":")
    name = name.strip().lower()
    carriers = {c.name: c for c in (*model.carriers, model.fallback)}
    if name not in carriers:
        raise ValueError(f"--carrier {text!r}: unknown carrier {name!r}; use one of {', '.join(carriers)}")
    if not sep or not settings.strip():
        raise ValueError(f"--carrier {text!r}: give FIELD=V pairs, e.g. {name}:undeliverable=0.1")
    changes: dict[str, float] = {}
    for pair in settings.split(","):
        key, eq, value = pair.partition("=")
        field_name = _CARRIER_FIELDS.get(key.strip().lower())
        if field_name is None or not eq:
            raise ValueError(f"--carrier {text!r}: {pair!r} is not one of {', '.join(_CARRIER_FIELDS)}=V")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"--carrier {text!r}: {value!r} is not a number") from None
        if number < 0 or (field_name in ("undeliverable", "expired", "rejected") and number > 1):
            raise ValueError(f"--carrier {text!r}: {key.strip()} must be {'0-1' if number > 1 else '>= 0'}")
        changes[field_name] = number
    carrier = replace(carriers[name], **changes)
    if carrier.undeliverable + carrier.expired + carrier.rejected > 1:
        raise ValueError(f"--carrier {text!r}: the failure probabilities add up to more than 1")
    if name == model.fallback.name:
        return replace(model, fallback=carrier)
    return replace(model, carriers=tuple(carrier if c.name == name else c for c in model.carriers))


def describe(config: SimulatorConfig) -> str:
    """One line per setting a user may have changed: limits and the delivery model's carriers."""
    limits = config.rate_limits
    per_minute = {route: getattr(limits, route) for route in ROUTES}
    shown = ", ".join(f"{route} {f'{n}/min' if n else 'off'}" for route, n in per_minute.items())
    lines = [f"  limits:    {shown}; DLR retries {config.callback_retries} x {config.callback_retry_delay:g} s"]
    if config.opt_out_replies:
        where = "MO URL" if config.accounts[0].mo_url else "SMPP receiver"
        lines.append(f"  replies:   {config.opt_out_replies:g} of numbers reply STOP or ឈប់ (to the {where})")
    for c in (*config.delivery.carriers, config.delivery.fallback):
        lines.append(
            f"  carrier:   {c.name:<9} undeliverable {c.undeliverable:g}, expired {c.expired:g}, "
            f"rejected {c.rejected:g}, median latency {c.median_latency:g} s"
        )
    return "\n".join(lines)


def _banner(url: str, account: Any, token: str, smpp: tuple[str, int] | None) -> str:
    """What the simulator prints once it answers: where to send and the demo account to use."""
    # the simulator's own demo account: showing its secret here is the point
    lines = [
        f"Plasgate simulator listening on {url}",
        f"  REST:      POST {url}/rest/send?private_key={account.private_key}  (header X-Secret: {account.secret})",
        f"             POST {url}/rest/batch-send?private_key=...   GET {url}/report?private_key=...",
        f"  HTTP API:  POST {url}/api/send  username={account.username} password={account.password}",
    ]
    if smpp is not None:
        lines.append(
            f"  SMPP:      {smpp[0]}:{smpp[1]}  system_id={account.username} "
            f"password={account.password}  (v3.4; bind transceiver, transmitter or receiver)"
        )
    lines += [
        f"  sender:    {account.senders[0]}",
        f"  admin:     GET {url}/_sim/records  (header {ADMIN_HEADER}: {token})",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


async def _serve(server: uvicorn.Server, sock: Any, on_started: Callable[[], None]) -> bool:
    """Serve on ``sock``; call ``on_started`` once the app (and its SMPP port) is up; False if it never was."""
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
        on_started()
    await task
    return server.started


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; print the URL and the demo credentials once it answers."""
    try:
        faults = tuple(parse_fault(text) for text in args.fault)
    except (ValueError, TypeError) as exc:
        print(f"plasgate-nb simulator: bad --fault: {exc}", file=sys.stderr)
        return 2
    try:
        limits = parse_limits(args.limit, off=args.no_rate_limits)
        delivery = DeliveryModel()
        for text in args.carrier:
            delivery = parse_carrier(text, delivery)
    except ValueError as exc:
        print(f"plasgate-nb simulator: {exc}", file=sys.stderr)
        return 2
    if args.callback_retries is not None and args.callback_retries < 0:
        print("plasgate-nb simulator: --callback-retries cannot be negative", file=sys.stderr)
        return 2
    if not 0.0 <= args.opt_out_replies <= 1.0:
        print(f"plasgate-nb simulator: --opt-out-replies is a share 0-1, not {args.opt_out_replies:g}", file=sys.stderr)
        return 2
    if args.mo_url is not None and not args.mo_url.startswith(("http://", "https://")):
        print("plasgate-nb simulator: --mo-url must be an http(s) URL", file=sys.stderr)
        return 2
    if args.smpp_port is not None and not 0 <= args.smpp_port <= 65535:
        print(f"plasgate-nb simulator: --smpp-port must be 0-65535, not {args.smpp_port}", file=sys.stderr)
        return 2
    config = SimulatorConfig(
        seed=args.seed,
        clock_speed=args.clock_speed,
        faults=faults,
        callback_retry_delay=args.retry_delay,
        rate_limits=limits,
        delivery=delivery,
        smpp=args.smpp_port is not None,
        smpp_port=args.smpp_port or 0,
        opt_out_replies=args.opt_out_replies,
    )
    if args.callback_retries is not None:
        config = replace(config, callback_retries=args.callback_retries)
    if args.balance is not None:
        config = replace(config, accounts=(replace(config.accounts[0], balance=args.balance),))
    if args.mo_url is not None:
        config = replace(config, accounts=(replace(config.accounts[0], mo_url=args.mo_url),))
    token = secrets.token_urlsafe(18)
    try:
        sock = bind_socket(args.host, args.port)
    except PlasgateError as exc:
        print(f"plasgate-nb simulator: {exc}", file=sys.stderr)
        return 2
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    app = create_app(config, token)
    sim = app.sim  # type: ignore[attr-defined]
    if sim.smpp is not None:
        sim.smpp.host = args.host  # SMPP listens where HTTP does

    def announce() -> None:
        """Print the banner (the SMPP port is known only once the app has started)."""
        smpp = (sim.smpp.host, sim.smpp.port) if sim.smpp is not None else None
        print(_banner(url, config.accounts[0], token, smpp), flush=True)
        print(describe(config), flush=True)

    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3))
    started = False
    try:
        with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
            started = runner.run(_serve(server, sock, announce))
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it handled once it has shut down
        started = started or server.started
    except SystemExit:  # uvicorn exits when the app's startup (binding the SMPP port) failed
        started = False
    finally:
        sock.close()
    if not started:
        print("plasgate-nb simulator: the server did not start (is the SMPP port free?)", file=sys.stderr)
        return 2
    print("Plasgate simulator stopped.", flush=True)
    return 0

"""``plasgate-nb send``: prepare, render and send a campaign from a CSV or Parquet file, exactly once.

Credentials come from the environment only (``PLASGATE_PRIVATE_KEY``, ``PLASGATE_SECRET``,
``PLASGATE_USERNAME``, ``PLASGATE_PASSWORD``, ``PLASGATE_SENDER``, ``PLASGATE_BASE_URL``). The exit
code tells a cron job whether the run is complete (:func:`exit_code`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..audience import prepare_audience
from ..campaign import Campaign, SendSummary
from ..compose import render_messages
from ..errors import ConfigError
from ..gateway import Gateway
from ..ledger import Ledger
from ..smpp import SmppConfig
from ._common import (
    EXIT_NOT_SENT,
    EXIT_OK,
    EXIT_RETRY_LATER,
    EXIT_TABLE,
    add_campaign_options,
    emit,
    read_frame,
    read_suppress,
    read_template,
)

EPILOG = f"""\
run it again at any time: rows already sent are never sent twice.

{EXIT_TABLE}
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the send options."""
    parser.add_argument("input", type=Path, help="customers as CSV or Parquet")
    parser.add_argument("--template", type=Path, required=True, help="Jinja template file (columns are variables)")
    parser.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="COLUMN",
        help="hide this column's values in the gateway's report (repeatable)",
    )
    add_campaign_options(parser)
    parser.add_argument("--phone", default="phone", help="phone column (default phone)")
    parser.add_argument("--key", default=None, help="unique id column (default: row number)")
    parser.add_argument("--suppress", type=Path, help="opt-out file (CSV with a phone column)")
    parser.add_argument("--gateway", default=None, metavar="URL", help="gateway base URL (else PLASGATE_BASE_URL)")
    parser.add_argument(
        "--transport",
        choices=["batch", "single", "http", "smpp"],
        default="batch",
        help="batch (REST batch-send, default), single (REST send), http (HTTP API) or smpp",
    )
    parser.add_argument(
        "--smpp",
        default=None,
        metavar="HOST:PORT",
        help="SMPP server for --transport smpp (login from PLASGATE_SMPP_SYSTEM_ID and PLASGATE_SMPP_PASSWORD)",
    )
    parser.add_argument(
        "--receipt-wait",
        type=float,
        default=30.0,
        help="smpp: seconds to stay bound for delivery receipts (default 30)",
    )
    parser.add_argument(
        "--callback-url",
        default=None,
        help="public URL of a running `plasgate-nb callbacks` receiver: asks for delivery reports",
    )
    parser.add_argument("--price", type=float, default=None, help="price per SMS part, for the cost estimate")
    parser.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    parser.add_argument("--resend-uncertain", action="store_true", help="also resend rows left uncertain")


def _smpp_config(args: argparse.Namespace) -> SmppConfig | None:
    """The SMPP session settings for ``--transport smpp`` (None for the HTTP transports)."""
    if args.transport != "smpp":
        return None
    host, _, port = (args.smpp or "").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("--transport smpp needs --smpp HOST:PORT (e.g. --smpp smpp.example.com:2775)")
    return SmppConfig(host=host, port=int(port))


def exit_code(summary: SendSummary) -> int:
    """0 when the run is complete, 3 when some rows need a look, 4 when some are only left to retry."""
    if summary.dry_run:
        return EXIT_OK
    if summary.rejected or summary.uncertain or summary.changed:
        return EXIT_NOT_SENT
    if summary.retry_later:
        return EXIT_RETRY_LATER
    return EXIT_OK


def _incomplete(summary: SendSummary) -> str:
    """The stderr line explaining a non-zero exit: what was not sent and what to do."""
    parts = []
    if summary.rejected:
        parts.append(f"{summary.rejected} rejected by the gateway")
    if summary.uncertain:
        parts.append(f"{summary.uncertain} uncertain (not resent; see --resend-uncertain)")
    if summary.changed:
        parts.append(f"{len(summary.changed)} changed since planned (not sent; revert them or use a new --campaign)")
    if summary.retry_later:
        parts.append(
            f"{summary.retry_later} left to retry (the gateway throttled them or turned them away unread; "
            "run the same command again later)"
        )
    return "incomplete: " + ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Send the campaign; the exit code says whether every row was accepted (see :func:`exit_code`)."""
    df = read_frame(args.input, key=args.key)
    suppress = read_suppress(args.suppress)
    template = read_template(args.template)
    audience = prepare_audience(df, phone=args.phone, suppress=suppress)
    rendered = render_messages(audience, template, mask=args.mask)
    gateway = Gateway.from_env(base_url=args.gateway)
    campaign = Campaign(
        args.campaign,
        gateway=gateway,
        ledger=Ledger(args.ledger),
        transport=args.transport,
        key=args.key,
        receiver=args.callback_url,
        price_per_segment=args.price,
        progress=not args.json,
        smpp=_smpp_config(args),
        receipt_timeout=args.receipt_wait,
    )
    summary = campaign.send(rendered, dry_run=args.dry_run, resend_uncertain=args.resend_uncertain)
    emit(args, summary.to_dict(), str(summary))
    code = exit_code(summary)
    if code != EXIT_OK:
        print(f"plasgate-nb send: {_incomplete(summary)} (exit {code})", file=sys.stderr, flush=True)
    return code

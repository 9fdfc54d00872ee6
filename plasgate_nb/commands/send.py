"""``plasgate-nb send``: prepare, render and send a campaign from a CSV or Parquet file, exactly once.

Credentials come from the environment only (``PLASGATE_PRIVATE_KEY``, ``PLASGATE_SECRET``,
``PLASGATE_USERNAME``, ``PLASGATE_PASSWORD``, ``PLASGATE_SENDER``, ``PLASGATE_BASE_URL``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ..audience import prepare_audience
from ..campaign import Campaign
from ..compose import render_messages
from ..errors import ConfigError
from ..gateway import Gateway
from ..ledger import Ledger
from ..smpp import SmppConfig
from ._common import add_campaign_options, emit, read_frame


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


def run(args: argparse.Namespace) -> int:
    """Send the campaign; exit 0 when nothing was rejected or left uncertain."""
    df = read_frame(args.input, key=args.key)
    suppress = None
    if args.suppress:
        suppress = pd.read_csv(args.suppress, dtype="string")["phone"]
    audience = prepare_audience(df, phone=args.phone, suppress=suppress)
    rendered = render_messages(audience, args.template, mask=args.mask)
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
    return 0 if args.dry_run or (summary.rejected == 0 and summary.uncertain == 0) else 3

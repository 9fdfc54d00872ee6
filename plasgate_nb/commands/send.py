"""``plasgate-nb send``: prepare, render and send a campaign from a CSV or Parquet file, exactly once.

Credentials come from the environment only (``PLASGATE_PRIVATE_KEY``, ``PLASGATE_SECRET``,
``PLASGATE_USERNAME``, ``PLASGATE_PASSWORD``, ``PLASGATE_SENDER``, ``PLASGATE_BASE_URL``). The exit
code tells a cron job whether the run is complete (:func:`exit_code`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .._keys import message_keys
from .._schedule import format_schedule_at
from ..audience import prepare_audience
from ..batch import validate_sender
from ..campaign import Campaign, SendSummary
from ..compose import validate_price
from ..errors import ConfigError
from ..gateway import Gateway, redact
from ..ledger import STATES, Ledger
from ..pacing import FrequencyCap, QuietHours
from ..smpp import SmppConfig
from ._common import (
    EXIT_NOT_SENT,
    EXIT_OK,
    EXIT_RETRY_LATER,
    EXIT_TABLE,
    add_campaign_options,
    add_template_options,
    check_columns,
    check_holdout,
    emit,
    ledger_file,
    read_frame,
    read_suppress,
    read_templates,
    render_templates,
)

# the reason the transport gives rows whose request never left (connect refused, DNS, connect timeout)
_NOT_CONNECTED = ("not sent: ConnectError", "not sent: ConnectTimeout")

EPILOG = f"""\
run it again at any time: rows already sent are never sent twice. Rows the gateway rejected or left
uncertain are not resent by a rerun (the exit code stays 3, see below) until you ask:

  --resend-rejected              resend every rejected row (after fixing the cause: credentials,
                                 balance, --sender)
  --resend-rejected C001,C002    resend only these keys (comma-separated; repeat the option for more)
  --resend-uncertain [KEYS]      the same for uncertain rows (they may have reached the gateway: a
                                 resend can deliver them twice)

Put a bare --resend-* after the input file (or give its keys), so it does not take the input as keys.

{EXIT_TABLE}
"""

_ALL = True  # a bare --resend-*: every row in that state


class _ResendKeys(argparse.Action):
    """``--resend-X`` alone: every row in that state; ``--resend-X K1,K2`` (repeatable): only those keys."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        """Merge this occurrence into the option's value: True (all) wins over any list of keys."""
        current = getattr(namespace, self.dest)
        if values is None or current is _ALL:
            setattr(namespace, self.dest, _ALL)
            return
        keys = [key.strip() for key in str(values).split(",") if key.strip()]
        if not keys:
            parser.error(f"{option_string} takes message keys separated by commas (or nothing: every row)")
        setattr(namespace, self.dest, [*(current or []), *keys])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the send options."""
    parser.add_argument("input", type=Path, help="customers as CSV, Excel (.xlsx) or Parquet")
    add_template_options(parser)
    parser.add_argument(
        "--mask",
        action="append",
        default=[],
        metavar="COLUMN",
        help="hide this column's values in the gateway's report (repeatable)",
    )
    add_campaign_options(parser)
    parser.add_argument("--phone", default="phone", metavar="COLUMN", help="phone column (default phone)")
    parser.add_argument("--key", default=None, metavar="COLUMN", help="unique id column (default: row number)")
    parser.add_argument("--suppress", type=Path, help="opt-out file (CSV with a phone column)")
    parser.add_argument("--gateway", default=None, metavar="URL", help="gateway base URL (else PLASGATE_BASE_URL)")
    parser.add_argument(
        "--sender",
        default=None,
        help="sender ID shown on phones (at most 11 characters, approved for your account; "
        "else PLASGATE_SENDER, else 'SMS Info')",
    )
    parser.add_argument(
        "--schedule-at",
        default=None,
        metavar="'YYYY-MM-DD HH:MM'",
        help="the gateway delivers at this future time: Phnom Penh local time (UTC+7), or ISO 8601 with an "
        "offset (2030-01-31T09:00+07:00); --transport batch only",
    )
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
    parser.add_argument(
        "--price", type=float, default=None, help="price per SMS part, for the cost estimate (default: no estimate)"
    )
    parser.add_argument(
        "--quiet-hours",
        default=None,
        metavar="HH:MM-HH:MM",
        help="send nothing in this daily window, Phnom Penh time (e.g. 21:00-08:00): batch sends are scheduled "
        "for its end, the other transports stop and exit 4 (run again after it); default off",
    )
    parser.add_argument(
        "--cap",
        default=None,
        metavar="N/WINDOW",
        help="frequency cap across the ledger's campaigns (e.g. 2/7D): leave out numbers that already had N "
        "accepted messages within WINDOW (7D, 24h, ...); default off",
    )
    parser.add_argument("--dry-run", action="store_true", help="show what would be sent; send nothing")
    for state, why in (
        ("rejected", "after fixing the cause"),
        ("uncertain", "they may have reached the gateway already"),
    ):
        parser.add_argument(
            f"--resend-{state}",
            action=_ResendKeys,
            nargs="?",
            default=False,
            metavar="KEYS",
            help=f"also resend rows left {state} ({why}): all of them, or only KEYS (comma-separated, repeatable)",
        )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="if another sender is sending this campaign, wait up to this long for it to finish (default 0)",
    )
    parser.add_argument(
        "--allow-repeat",
        action="store_true",
        help="send rows whose number and text another message of the campaign already carries (under another key)",
    )


def _smpp_config(args: argparse.Namespace) -> SmppConfig | None:
    """The SMPP session settings for ``--transport smpp`` (None for the HTTP transports)."""
    if args.transport != "smpp":
        return None
    host, _, port = (args.smpp or "").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError("--transport smpp needs --smpp HOST:PORT (e.g. --smpp smpp.example.com:2775)")
    return SmppConfig(host=host, port=int(port))


def _schedule_at(args: argparse.Namespace) -> datetime | None:
    """The ``--schedule-at`` time (a naive one is Phnom Penh time), checked to be in the future."""
    if args.schedule_at is None:
        return None
    if args.transport != "batch":
        raise ConfigError(f"--schedule-at works only with --transport batch (not {args.transport})")
    try:
        when = datetime.fromisoformat(args.schedule_at.strip())
    except ValueError:
        raise ConfigError(
            f"--schedule-at {args.schedule_at!r} is not a time: give 'YYYY-MM-DD HH:MM' (Phnom Penh time)"
        ) from None
    try:
        format_schedule_at(when)
    except ConfigError as exc:
        raise ConfigError(f"--schedule-at: {exc}") from None
    return when


def _gateway(args: argparse.Namespace) -> tuple[Gateway, SmppConfig | None]:
    """The gateway and SMPP settings, their credentials checked unless this is a dry run.

    Called before anything is read or written, so missing credentials (or a bad ``--schedule-at``) end
    the run before a progress bar shows or a row is planned.
    """
    _schedule_at(args)
    gateway = Gateway.from_env(base_url=args.gateway, sender=args.sender)
    try:
        validate_sender(gateway.sender)
    except ConfigError as exc:
        raise ConfigError(f"{'--sender' if args.sender is not None else 'PLASGATE_SENDER'}: {exc}") from None
    smpp = _smpp_config(args)  # reads and checks the SMPP login
    if not args.dry_run and args.transport != "smpp":
        gateway.require(args.transport)
    return gateway, smpp


def _standing(ledger: Ledger, campaign: str, keys: pd.Series) -> pd.DataFrame:
    """The ledger's ``state`` and ``reason`` of this input's rows in the campaign (the whole truth, not this run)."""
    rows = ledger.read_columns(campaign, ["state", "reason"])
    return rows[rows["message_key"].isin(set(keys))]


def _counts(standing: pd.DataFrame | None) -> dict[str, int]:
    """Rows per ledger state (every state, zero included)."""
    found = standing["state"].value_counts() if standing is not None else pd.Series(dtype="int64")
    return {state: int(found.get(state, 0)) for state in STATES}


def exit_code(summary: SendSummary, standing: pd.DataFrame | None = None) -> int:
    """0 when the campaign is complete, 3 when some rows need a look, 4 when some are only left to retry.

    ``standing`` (the ledger's states of the input's rows, :func:`_standing`) makes the code describe the
    campaign, not only this run: rows rejected or uncertain in an earlier run still exit 3. A dry run
    always exits 0.
    """
    if summary.dry_run:
        return EXIT_OK
    counts = _counts(standing)
    if summary.rejected or summary.uncertain or summary.changed or counts["rejected"] or counts["uncertain"]:
        return EXIT_NOT_SENT
    if summary.same_as:  # rows repeating another message under a new key: planned, deliberately not sent
        return EXIT_NOT_SENT
    if summary.retry_later or counts["planned"] - len(summary.same_as) or counts["submitting"]:
        return EXIT_RETRY_LATER
    return EXIT_OK


def _incomplete(summary: SendSummary, standing: pd.DataFrame | None = None) -> str:
    """The stderr line explaining a non-zero exit: what the campaign still lacks and what to do."""
    counts = _counts(standing)
    rejected = max(counts["rejected"], summary.rejected)
    uncertain = max(counts["uncertain"], summary.uncertain)
    retry = max(counts["planned"] - len(summary.same_as) + counts["submitting"], summary.retry_later)
    parts = []
    if rejected:
        parts.append(f"{rejected} rejected by the gateway (not resent: fix the cause, then add --resend-rejected)")
    if uncertain:
        parts.append(f"{uncertain} uncertain (may have reached the gateway; not resent: see --resend-uncertain)")
    if summary.changed:
        parts.append(f"{len(summary.changed)} changed since planned (not sent; revert them or use a new --campaign)")
    if summary.same_as:
        parts.append(
            f"{len(summary.same_as)} repeat the number and text of another message under a new key "
            "(not sent; see --allow-repeat)"
        )
    if retry:
        parts.append(
            f"{retry} left to retry (the gateway throttled them, turned them away unread or could not be "
            "reached; run the same command again later)"
        )
    return f"incomplete: campaign {summary.campaign!r} has " + ", ".join(parts)


def _unreachable(gateway: Gateway, standing: pd.DataFrame | None) -> str | None:
    """The line saying the gateway could not be reached, when rows are waiting because of that."""
    if standing is None:
        return None
    reasons = standing.loc[standing["state"] == "planned", "reason"].dropna().astype(str)
    refused = reasons[reasons.str.startswith(_NOT_CONNECTED)]
    if refused.empty:
        return None
    detail = refused.iloc[-1].removeprefix("not sent: ")
    return redact(
        f"could not connect to the gateway at {gateway.base_url} ({detail}); check --gateway or PLASGATE_BASE_URL"
    )


def _resend_warnings(ledger: Ledger, campaign: str, args: argparse.Namespace) -> list[str]:
    """Warn about keys given to ``--resend-*`` that are not in that state (they are left as they are)."""
    lines = []
    for state in ("rejected", "uncertain"):
        keys = getattr(args, f"resend_{state}")
        if not isinstance(keys, list):
            continue
        states = ledger.messages(campaign, columns=["state"]).set_index("message_key")["state"]
        wrong = [f"{key} ({states.get(key, 'not in the campaign')})" for key in keys if states.get(key) != state]
        if wrong:
            lines.append(f"--resend-{state}: not {state}, left as they are: {', '.join(wrong[:10])}")
    return lines


def _say(text: str) -> None:
    """One line on stderr, prefixed with the command."""
    print(f"plasgate-nb send: {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Send the campaign; the exit code says whether every row is accepted (see :func:`exit_code`)."""
    price = None if args.price is None else validate_price(args.price, name="--price")
    quiet, cap = QuietHours.parse(args.quiet_hours), FrequencyCap.parse(args.cap)  # checked before anything
    check_holdout(args.holdout, variants=args.variant)
    gateway, smpp = _gateway(args)
    df = read_frame(args.input, key=args.key, parse_dates=args.parse_dates)
    check_columns(df, args.input, key=args.key, phone=args.phone, mask=args.mask)
    suppress = read_suppress(args.suppress)
    templates = read_templates(args.template, by=args.template_by, variants=args.variant)
    audience = prepare_audience(df, phone=args.phone, suppress=suppress, consent=args.consent)
    seed = args.seed or args.campaign
    rendered = render_templates(audience, templates, mask=args.mask, holdout=args.holdout, key=args.key, seed=seed)
    path = ledger_file(args.ledger)
    if path is not None and not path.exists():
        _say(f"creating a new ledger {args.ledger}")
    ledger = Ledger(args.ledger)
    campaign = Campaign(
        args.campaign,
        gateway=gateway,
        ledger=ledger,
        transport=args.transport,
        key=args.key,
        receiver=args.callback_url,
        price_per_segment=price,
        progress=not args.json and sys.stderr.isatty(),  # no progress bars in a cron job's mail
        smpp=smpp,
        receipt_timeout=args.receipt_wait,
        quiet_hours=quiet,
        frequency_cap=cap,
    )
    if not args.dry_run:
        for line in _resend_warnings(ledger, args.campaign, args):
            _say(line)
    summary = campaign.send(
        rendered,
        dry_run=args.dry_run,
        resend_uncertain=args.resend_uncertain,
        resend_rejected=args.resend_rejected,
        schedule_at=_schedule_at(args),
        wait=args.wait,
        allow_repeat=args.allow_repeat,
    )
    standing = None
    if not args.dry_run:
        sendable = rendered[rendered["audience_status"] == "ok"]
        standing = _standing(ledger, args.campaign, message_keys(sendable, args.key))
    states = _counts(standing)
    data = summary.to_dict()
    text = str(summary)
    if standing is not None:
        data["campaign_states"] = states
        text += "\n  campaign now: " + ", ".join(f"{k} {v}" for k, v in states.items())
    emit(args, data, text)
    ledger.close()
    code = exit_code(summary, standing)
    if code != EXIT_OK:
        _say(f"{_incomplete(summary, standing)} (exit {code})")
        unreachable = _unreachable(gateway, standing)
        if unreachable:  # the last line: rows wait because the gateway could not be reached at all
            _say(unreachable)
    return code

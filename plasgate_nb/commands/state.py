"""``plasgate-nb status`` and ``plasgate-nb resume``: read and repair a campaign's ledger state."""

from __future__ import annotations

import argparse

from ._common import add_campaign_options, emit, existing_ledger


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options (shared by status and resume)."""
    add_campaign_options(parser)


def run(args: argparse.Namespace) -> int:
    """Print the campaign's counts per state (and, for resume, settle interrupted rows first).

    Never creates a ledger: a missing SQLite file or an unknown campaign exits 2 naming it.
    """
    ledger = existing_ledger(args.ledger, args.campaign)
    moved = ledger.resume(args.campaign) if args.command == "resume" else 0
    counts = ledger.summary(args.campaign)
    lines = [f"campaign {args.campaign!r}: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    if args.command == "resume":
        lines.insert(0, f"{moved} interrupted row(s) are now uncertain (not resent; see `send --resend-uncertain`)")
    emit(args, {"campaign": args.campaign, "resumed": moved, "states": counts}, "\n".join(lines))
    ledger.close()
    return 0

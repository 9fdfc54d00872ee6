"""``plasgate-nb collect`` and ``plasgate-nb report``: delivery results back into the input file."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audience import prepare_audience
from ..errors import ConfigError
from ..report import collect, delivery_summary, export_report
from ._common import add_campaign_options, check_columns, emit, existing_ledger, read_frame, write_frame


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options (shared by collect and report)."""
    parser.add_argument("input", type=Path, help="the customers file the campaign was sent from")
    add_campaign_options(parser)
    parser.add_argument("--key", default=None, metavar="COLUMN", help="the unique id column used when sending")
    parser.add_argument(
        "--phone", default="phone", help="phone column: adds msisdn, carrier and the audience verdict (default phone)"
    )
    parser.add_argument(
        "--consent", metavar="COLUMN", default=None, help="the consent column used when sending (as in send)"
    )
    parser.add_argument("--by", default=None, help="report: group delivery rates by this column (e.g. carrier)")
    parser.add_argument("--output", type=Path, required=True, help="CSV or Parquet file to write")


def run(args: argparse.Namespace) -> int:
    """Write the input enriched with send and delivery columns (and, for report, a chart and summary).

    Never creates a ledger: a missing SQLite file or an unknown campaign exits 2 naming it.
    """
    df = read_frame(args.input, key=args.key)
    check_columns(df, args.input, key=args.key)
    ledger = existing_ledger(args.ledger, args.campaign)
    if args.phone in df.columns:
        df = prepare_audience(df, phone=args.phone, consent=args.consent)
    collected = collect(df, (ledger, args.campaign), key=args.key)
    if args.command == "collect":
        write_frame(collected, args.output)
        files = [str(args.output)]
        summary = delivery_summary(collected)
    else:
        if args.by and args.by not in collected.columns:
            raise ConfigError(f"--by {args.by!r} is not a column; columns are {list(collected.columns)}")
        files = [str(p) for p in export_report(collected, args.output, by=args.by)]
        summary = delivery_summary(collected, by=args.by)
    emit(
        args,
        {"files": files, "summary": summary.reset_index().to_dict(orient="records")},
        summary.to_string() + "\nwrote " + ", ".join(files),
    )
    ledger.close()
    return 0

"""``plasgate-nb preview``: prepare and render a campaign and show messages, encodings, parts and cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audience import prepare_audience
from ..compose import estimate_cost, preview, render_messages
from ._common import check_columns, emit, read_frame, read_suppress, read_template


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the preview options."""
    parser.add_argument("input", type=Path, help="customers as CSV or Parquet")
    parser.add_argument("--template", type=Path, required=True, help="Jinja template file")
    parser.add_argument("--mask", action="append", default=[], metavar="COLUMN", help="column to mask (repeatable)")
    parser.add_argument("--phone", default="phone", metavar="COLUMN", help="phone column (default phone)")
    parser.add_argument("--suppress", type=Path, help="opt-out file (CSV with a phone column)")
    parser.add_argument("--rows", type=int, default=5, help="rows to show (default 5)")
    parser.add_argument(
        "--price", type=float, default=None, help="price per SMS part, for the cost estimate (default: no estimate)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    """Print the preview table and the cost estimate."""
    df = read_frame(args.input)
    check_columns(df, args.input, phone=args.phone, mask=args.mask)
    suppress = read_suppress(args.suppress)
    template = read_template(args.template)
    rendered = render_messages(prepare_audience(df, phone=args.phone, suppress=suppress), template, mask=args.mask)
    ok = rendered[rendered["audience_status"] == "ok"]
    table = preview(ok, n=args.rows)
    # the same price as `send --price`: none given, no cost (parts are still counted)
    cost = estimate_cost(rendered, price_per_segment=args.price or 0.0)
    cost_data = dict(cost.__dict__)
    cost_text = str(cost)
    if args.price is None:
        cost_data.update(price_per_segment=None, total=None)
        cost_text = f"{cost.messages} messages, {cost.segments} parts (no cost estimate: give --price)"
    statuses = rendered["audience_status"].value_counts().to_dict()
    emit(
        args,
        {"audience": statuses, "cost": cost_data, "preview": table.to_dict(orient="records")},
        f"audience: {statuses}\n{table.to_string()}\n{cost_text}",
    )
    return 0

"""``plasgate-nb preview``: prepare and render a campaign and show messages, encodings, parts and cost."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..audience import prepare_audience
from ..compose import estimate_cost, preview, validate_price
from ._common import (
    add_template_options,
    check_columns,
    emit,
    read_frame,
    read_suppress,
    read_templates,
    render_templates,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the preview options."""
    parser.add_argument("input", type=Path, help="customers as CSV, Excel (.xlsx) or Parquet")
    add_template_options(parser)
    parser.add_argument("--mask", action="append", default=[], metavar="COLUMN", help="column to mask (repeatable)")
    parser.add_argument("--phone", default="phone", metavar="COLUMN", help="phone column (default phone)")
    parser.add_argument("--suppress", type=Path, help="opt-out file (CSV with a phone column)")
    parser.add_argument(
        "--rows",
        type=int,
        default=None,
        help="show the first N rows (default: one per template or language, plus the longest message)",
    )
    parser.add_argument(
        "--price", type=float, default=None, help="price per SMS part, for the cost estimate (default: no estimate)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    """Print the preview table and the cost estimate."""
    price = None if args.price is None else validate_price(args.price, name="--price")
    df = read_frame(args.input, parse_dates=args.parse_dates)
    check_columns(df, args.input, phone=args.phone, mask=args.mask)
    suppress = read_suppress(args.suppress)
    templates = read_templates(args.template, by=args.template_by, variants=args.variant)
    audience = prepare_audience(df, phone=args.phone, suppress=suppress, consent=args.consent)
    # with --variant: a sample of each variant's text (send assigns them by --key and the campaign's seed)
    rendered = render_templates(audience, templates, mask=args.mask, holdout=args.holdout, seed=args.seed)
    ok = rendered[rendered["audience_status"] == "ok"]
    table = preview(ok, n=args.rows)
    # the same price as `send --price`: none given, no cost (parts are still counted)
    cost = estimate_cost(rendered, price_per_segment=price or 0.0)
    cost_data = dict(cost.__dict__)
    cost_text = str(cost)
    if price is None:
        cost_data.update(price_per_segment=None, total=None)
        cost_text = f"{cost.messages} messages, {cost.segments} parts (no cost estimate: give --price)"
    statuses = rendered["audience_status"].value_counts().to_dict()
    emit(
        args,
        {"audience": statuses, "cost": cost_data, "preview": table.to_dict(orient="records")},
        f"audience: {statuses}\n{table.to_string()}\n{cost_text}",
    )
    return 0

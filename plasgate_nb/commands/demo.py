"""``plasgate-nb demo``: run the demo campaign end to end on the embedded simulator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..demo import run_demo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the demo's options."""
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo_output"),
        help="folder for the ledger, charts and enriched CSV (default: demo_output)",
    )
    parser.add_argument("--wait", type=float, default=40.0, help="seconds to wait for delivery reports")
    parser.add_argument("--json", action="store_true", help="print the send summary as JSON at the end")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what it does."""
    result = run_demo(args.output, wait=args.wait, say=lambda text: print(text, flush=True))
    print(f"demo finished in {result.seconds:.1f} s; results in {result.output}/")
    if args.json:
        print(json.dumps(result.summary.to_dict()))
    return 0

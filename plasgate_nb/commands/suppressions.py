"""``plasgate-nb suppressions``: list, add to, remove from and export a ledger's suppression list."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from ..ledger import Ledger
from ._common import emit, ledger_file, read_suppress, write_frame

EPILOG = """\
numbers land on the list when a customer replies an opt-out keyword (STOP, UNSUBSCRIBE, ឈប់ ...) and
leave it when they reply START or UNSTOP; every later send leaves them out. Files for --add and
--remove are CSV or Parquet with a `phone` column, in any spelling (012 345 678, +855 12 345 678 ...).

  plasgate-nb suppressions --ledger spring.db                        # the list, oldest first
  plasgate-nb suppressions --ledger spring.db --add complaints.csv --reason "asked by phone"
  plasgate-nb suppressions --ledger spring.db --remove opted_back_in.csv
  plasgate-nb suppressions --ledger spring.db --export suppressed.csv
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options."""
    parser.add_argument("--ledger", default="plasgate_nb.db", help="ledger: an SQLite file path or a postgresql:// URL")
    parser.add_argument("--add", type=Path, metavar="FILE", help="suppress the numbers in FILE's `phone` column")
    parser.add_argument("--remove", type=Path, metavar="FILE", help="lift the numbers in FILE's `phone` column")
    parser.add_argument("--reason", default="added by hand", help="why (stored with numbers added by --add)")
    parser.add_argument("--export", type=Path, metavar="FILE", help="write the list to FILE (.csv or .parquet)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def run(args: argparse.Namespace) -> int:
    """Apply --remove, then --add, then print (and --export) the list."""
    added = removed = 0
    path = ledger_file(args.ledger)
    new = path is not None and not path.is_file()
    if new and args.add is None:
        raise ConfigError(f"--ledger file {args.ledger} not found (only --add creates a ledger)")
    with Ledger(args.ledger) as ledger:
        if args.remove is not None:
            numbers = read_suppress(args.remove)
            removed = ledger.unsuppress(numbers.dropna().tolist() if numbers is not None else [])
        if args.add is not None:
            numbers = read_suppress(args.add)
            added = ledger.suppress(numbers.dropna().tolist() if numbers is not None else [], reason=args.reason)
        listed = ledger.suppressions()
    if new:
        print(f"plasgate-nb suppressions: creating a new ledger {args.ledger}", file=sys.stderr)
    if args.export is not None:
        write_frame(listed.set_index("msisdn"), args.export)
    text = listed.to_string(index=False) if len(listed) else "the suppression list is empty"
    lines = [f"added {added}, removed {removed}"] if args.add or args.remove else []
    lines.append(f"{len(listed)} number(s) suppressed" + (f"\n{text}" if len(listed) else ""))
    if args.export is not None:
        lines.append(f"wrote {args.export}")
    data = {"added": added, "removed": removed, "count": len(listed), "numbers": listed["msisdn"].tolist()}
    emit(args, data, "\n".join(lines))
    return 0

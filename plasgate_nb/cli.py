"""The ``plasgate-nb`` command: a thin face whose subcommands live beside the code they drive."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from .commands._common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RETRY_LATER, EXIT_TABLE
from .errors import CampaignBusy, PlasgateError

__all__ = ["main"]

# subcommand -> (module exposing add_arguments(parser) and run(args) -> int, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("plasgate_nb.commands.demo", "run the demo campaign end to end on the embedded simulator"),
    "preview": ("plasgate_nb.commands.preview", "show rendered messages, encodings, SMS parts and cost"),
    "send": ("plasgate_nb.commands.send", "send a campaign from a CSV/Parquet file, exactly once"),
    "resume": ("plasgate_nb.commands.state", "mark rows an interrupted send left in flight as uncertain"),
    "status": ("plasgate_nb.commands.state", "show a campaign's messages per state"),
    "collect": ("plasgate_nb.commands.results", "write the input enriched with send and delivery results"),
    "report": ("plasgate_nb.commands.results", "write delivery results, a chart and rates by a column"),
    "simulator": ("plasgate_nb.simulator.cli", "run the Plasgate-compatible gateway simulator"),
    "callbacks": ("plasgate_nb.commands.callbacks", "run the delivery-report receiver for a ledger"),
    "suppressions": ("plasgate_nb.commands.suppressions", "list, add to, remove from or export the opt-out list"),
}

EPILOG = f"""\
a campaign from start to finish:
  plasgate-nb demo                                  # the whole product on the built-in simulator
  plasgate-nb simulator --port 8080 &               # a local gateway to rehearse against
  export PLASGATE_BASE_URL=http://127.0.0.1:8080 PLASGATE_PRIVATE_KEY=... PLASGATE_SECRET='...'
  plasgate-nb preview customers.csv --template offer.j2 --mask coupon --price 0.012
  plasgate-nb send customers.csv --template offer.j2 --mask coupon --key customer_id \\
      --campaign spring --ledger spring.db --price 0.012 --dry-run
  plasgate-nb send ... (the same without --dry-run; run it again: nothing is sent twice)
  plasgate-nb send ... --resend-rejected   (after fixing why rows were rejected; or KEY1,KEY2)
  plasgate-nb status --campaign spring --ledger spring.db
  plasgate-nb report customers.csv --key customer_id --campaign spring --ledger spring.db \\
      --by carrier --output spring_results.csv

credentials come from the environment only: PLASGATE_PRIVATE_KEY, PLASGATE_SECRET (REST),
PLASGATE_USERNAME, PLASGATE_PASSWORD (HTTP API), PLASGATE_SENDER, PLASGATE_BASE_URL.

{EXIT_TABLE}

`plasgate-nb COMMAND --help` explains each command.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="plasgate-nb",
        description="Run Plasgate SMS campaigns from the shell: preview, send exactly once, collect reports.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        face = importlib.import_module(module)
        child = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=getattr(face, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        face.add_arguments(child)
        child.set_defaults(_module=module)
    return parser


def _os_error(exc: OSError) -> str:
    """One line for a file or socket error: the file at fault and why."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code (the table in ``plasgate-nb --help``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(importlib.import_module(args._module).run(args) or EXIT_OK)
    except CampaignBusy as exc:  # another live sender holds the campaign: nothing was done, try again later
        print(f"plasgate-nb {args.command}: {exc} (exit {EXIT_RETRY_LATER})", file=sys.stderr)
        return EXIT_RETRY_LATER
    except PlasgateError as exc:
        print(f"plasgate-nb {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:  # a file or socket the commands did not check first: still the user's input
        print(f"plasgate-nb {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"plasgate-nb {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Helpers shared by the subcommands: reading input files, campaign options, exit codes, printing results.

Every user error found here (a missing or unreadable file, a missing column, Parquet without pyarrow)
is raised as :class:`~plasgate_nb.errors.ConfigError` naming the file, column or option at fault; the
command line prints it as one line and exits with :data:`EXIT_BAD_INPUT`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, LedgerError
from ..ledger import Ledger
from ..ledger._schema import resolve_url

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_BUG",
    "EXIT_INTERRUPTED",
    "EXIT_NOT_SENT",
    "EXIT_OK",
    "EXIT_RETRY_LATER",
    "EXIT_TABLE",
    "add_campaign_options",
    "check_columns",
    "emit",
    "existing_ledger",
    "ledger_file",
    "read_frame",
    "read_suppress",
    "read_template",
    "write_frame",
]

EXIT_OK = 0
EXIT_BUG = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_SENT = 3
EXIT_RETRY_LATER = 4
EXIT_INTERRUPTED = 130

EXIT_TABLE = f"""\
exit codes:
  {EXIT_OK}    done: every row of the input is accepted by the gateway (in this run or an
       earlier one) or deliberately skipped (invalid, opted out...), or a dry run
       (callbacks, simulator: stopped with Ctrl-C)
  {EXIT_BUG}    unexpected error (a bug: the traceback is printed; please report it)
  {EXIT_BAD_INPUT}    bad input or settings: a missing file or column, a template error, missing
       credentials, a missing --ledger file (status, resume, collect, report), a port
       in use (one line on stderr names the file, column or option)
  {EXIT_NOT_SENT}    send: the campaign still has rows rejected by the gateway or uncertain (now
       or in an earlier run), or rows changed since planned; stderr says how many.
       A rerun exits 3 again until they are resent (--resend-rejected,
       --resend-uncertain) or settled; look at them first (status, collect)
  {EXIT_RETRY_LATER}    send: rows are only left to retry (the gateway throttled them, turned them
       away unread, or could not be reached), nothing worse; run the same command
       again later
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)"""

PARQUET = (".parquet", ".pq")


def _need_file(path: Path, what: str) -> None:
    """Raise ConfigError unless ``path`` is an existing file (``what`` names it: 'input', '--template')."""
    if not path.exists():
        raise ConfigError(f"{what} file {path} not found")
    if not path.is_file():
        raise ConfigError(f"{what} {path} is not a file")


def _need_parquet(path: Path, doing: str) -> None:
    """Raise ConfigError when a Parquet engine is missing."""
    if importlib.util.find_spec("pyarrow") is None and importlib.util.find_spec("fastparquet") is None:
        raise ConfigError(f"{doing} Parquet file {path} needs pyarrow: `pip install pyarrow`, or use a .csv file")


def read_frame(path: Path, *, key: str | None = None, what: str = "input") -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension); ``key`` becomes a text column kept as written."""
    _need_file(path, what)
    try:
        if path.suffix.lower() in PARQUET:
            _need_parquet(path, "reading")
            return pd.read_parquet(path)
        dtype = {key: "string"} if key else None
        return pd.read_csv(path, dtype=dtype)
    except ImportError as exc:
        raise ConfigError(f"reading {what} file {path} needs a package that is not installed: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise ConfigError(f"{what} file {path} is empty") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot read {what} file {path}: {reason}") from exc


def read_template(path: Path) -> str:
    """Return the text of the ``--template`` file (UTF-8)."""
    _need_file(path, "--template")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--template file {path} is not UTF-8 text") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read --template file {path}: {exc.strerror or exc}") from exc


def read_suppress(path: Path | None, *, column: str = "phone") -> pd.Series | None:
    """Return the ``phone`` column of the ``--suppress`` opt-out file (None without one)."""
    if path is None:
        return None
    frame = read_frame(path, key=column, what="--suppress")
    if column not in frame.columns:
        raise ConfigError(
            f"--suppress file {path} has no {column!r} column (columns: {', '.join(map(str, frame.columns))})"
        )
    return frame[column].astype("string")


def write_frame(df: pd.DataFrame, path: Path) -> None:
    """Write a frame as CSV or Parquet by the file's extension."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() in PARQUET:
            _need_parquet(path, "writing")
            df.to_parquet(path)
        else:
            df.to_csv(path)
    except ImportError as exc:
        raise ConfigError(f"writing {path} needs a package that is not installed: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"cannot write --output file {path}: {exc.strerror or exc}") from exc


def ledger_file(value: str) -> Path | None:
    """The SQLite file a ``--ledger`` value names, or None for a database URL (PostgreSQL)."""
    try:
        url = resolve_url(value)
    except LedgerError as exc:
        raise ConfigError(f"--ledger {value}: {exc}") from exc
    return Path(url.database) if url.get_backend_name() == "sqlite" and url.database else None


def existing_ledger(value: str, campaign: str) -> Ledger:
    """Open the ``--ledger`` holding ``campaign`` without ever creating one.

    A missing SQLite file is a ConfigError naming it (reading a ledger that does not exist would create
    an empty one and report an empty campaign); an unknown campaign is a LedgerError. PostgreSQL URLs
    are opened as they are.
    """
    path = ledger_file(value)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"--ledger file {value} not found: give the --ledger the campaign was sent with "
            "(only `send` creates a ledger)"
        )
    ledger = Ledger(value)
    if ledger.campaign_token(campaign) is None:
        ledger.close()
        raise LedgerError(f"no campaign {campaign!r} in ledger {ledger!r}")
    return ledger


def check_columns(
    df: pd.DataFrame,
    path: Path,
    *,
    key: str | None = None,
    phone: str | None = None,
    mask: list[str] | tuple[str, ...] = (),
) -> None:
    """Raise ConfigError naming the option and the input's own columns when ``--key``, ``--phone`` or
    ``--mask`` names a column the input file does not have."""
    columns = ", ".join(map(str, df.columns))
    if key is not None and key not in df.columns:
        raise ConfigError(
            f"--key {key!r} is not a column of {path} (its columns: {columns}); "
            "name its unique id column with --key COLUMN"
        )
    if phone is not None and phone not in df.columns:
        raise ConfigError(
            f"input file {path} has no phone column {phone!r} (its columns: {columns}); "
            "name the column holding the phone numbers with --phone COLUMN"
        )
    unknown = [name for name in mask if name not in df.columns]
    if unknown:
        raise ConfigError(f"--mask {', '.join(map(repr, unknown))}: not a column of {path} (its columns: {columns})")


def add_campaign_options(parser: argparse.ArgumentParser) -> None:
    """The options naming a campaign and its ledger."""
    parser.add_argument("--campaign", required=True, help="campaign name (its ledger key)")
    parser.add_argument(
        "--ledger",
        default="plasgate_nb.db",
        help="ledger: an SQLite file path or a postgresql:// URL (default plasgate_nb.db)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as one JSON line with ``--json``, else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(data, default=str))
    else:
        print(text)
    sys.stdout.flush()

"""Helpers shared by the subcommands: reading input files, campaign options, exit codes, printing results.

Every user error found here (a missing or unreadable file, a missing column, Parquet without pyarrow,
``--template`` files that do not fit ``--template-by``)
is raised as :class:`~plasgate_nb.errors.ConfigError` naming the file, column or option at fault; the
command line prints it as one line and exits with :data:`EXIT_BAD_INPUT`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..compose import render_messages
from ..errors import ConfigError, LedgerError
from ..experiments import assign_variants
from ..io import read_customers
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
    "Templates",
    "add_campaign_options",
    "add_template_options",
    "check_columns",
    "check_holdout",
    "emit",
    "existing_ledger",
    "ledger_file",
    "read_frame",
    "read_suppress",
    "read_template",
    "read_templates",
    "render_templates",
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
       or in an earlier run), rows changed since planned, or rows repeating another
       message under a new key (--allow-repeat sends them); stderr says how many.
       A rerun exits 3 again until they are resent (--resend-rejected,
       --resend-uncertain) or settled; look at them first (status, collect)
  {EXIT_RETRY_LATER}    send: rows are only left to retry (the gateway throttled them, turned them
       away unread, or could not be reached), nothing worse; send, resume: another
       live sender holds the campaign (one line names its host and pid), nothing
       was done; run the same command again later
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


def read_frame(
    path: Path, *, key: str | None = None, what: str = "input", parse_dates: Sequence[str] = ()
) -> pd.DataFrame:
    """Read a CSV, Excel or Parquet file (by extension) with :func:`~plasgate_nb.read_customers`.

    Every CSV column is text as written (``key`` too: codes keep their leading zeros); only the
    ``parse_dates`` columns (``--parse-dates``) become dates.
    """
    _need_file(path, what)
    try:
        if path.suffix.lower() in PARQUET:
            _need_parquet(path, "reading")
        return read_customers(path, parse_dates=list(parse_dates) or None)
    except ConfigError:
        raise
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


@dataclass(frozen=True)
class Templates:
    """The ``--template`` files read: one template, or one per value of ``--template-by`` (and a default)."""

    template: str | dict[str, str]
    by: str | None = None
    default: str | None = None
    variants: bool = False  # one template per A/B variant (--variant), assigned by assign_variants


def add_template_options(parser: argparse.ArgumentParser) -> None:
    """The options choosing templates, consent and date columns (``preview`` and ``send``)."""
    parser.add_argument(
        "--template",
        action="append",
        default=[],
        metavar="[VALUE=]FILE",
        help="Jinja template file (columns are variables); with --template-by, one per value "
        "(--template km=offer_km.j2 --template en=offer_en.j2); a file without VALUE= is then the default",
    )
    parser.add_argument(
        "--template-by",
        metavar="COLUMN",
        default=None,
        help="column whose value picks each row's template (e.g. language)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="A/B test: one template per variant (--variant A=a.j2 --variant B=b.j2), instead of --template; "
        "each customer gets a variant from a hash of its --key and --seed, the same on every run",
    )
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="with --variant: this share of customers (e.g. 0.1) is held out: planned, never sent (the baseline)",
    )
    parser.add_argument(
        "--seed", default=None, help="with --variant: the assignment's seed (default: the campaign name)"
    )
    parser.add_argument(
        "--consent",
        metavar="COLUMN",
        default=None,
        help="column saying whether each customer agreed (true/1/yes; false/0/no/empty are not sent)",
    )
    parser.add_argument(
        "--parse-dates",
        action="append",
        default=[],
        metavar="COLUMN",
        help="read this column as dates (repeatable); every other column is read as text, as written",
    )


def read_templates(values: Sequence[str], *, by: str | None = None, variants: Sequence[str] = ()) -> Templates:
    """Read the ``--template`` files: ``FILE`` alone, or ``VALUE=FILE`` per value of ``--template-by``; or
    the ``--variant NAME=FILE`` files of an A/B test."""
    if variants:
        if values or by is not None:
            raise ConfigError("--variant gives the templates of an A/B test: drop --template and --template-by")
        named: dict[str, str] = {}
        for value in variants:
            name, sep, file = value.partition("=")
            if not (sep and name.strip() and file):
                raise ConfigError(f"--variant takes NAME=FILE (e.g. --variant A=offer_a.j2), not {value!r}")
            if name.strip() in named:
                raise ConfigError(f"--variant {name.strip()}=... is given twice")
            named[name.strip()] = read_template(Path(file))
        return Templates(named, by="variant", variants=True)
    if not values:
        raise ConfigError("give --template FILE (or --variant NAME=FILE for an A/B test)")
    keyed: dict[str, str] = {}
    plain: list[str] = []
    for value in values:  # every file is read first: a missing one is named before anything else
        name, sep, file = value.partition("=")
        if sep and name and file and not Path(value).is_file():
            if name in keyed:
                raise ConfigError(f"--template {name}=... is given twice")
            keyed[name] = read_template(Path(file))
        else:
            plain.append(read_template(Path(value)))
    if len(plain) > 1:
        raise ConfigError(
            "--template is given several times: name each one by its value (--template km=offer_km.j2) "
            "and say which column picks it (--template-by language)"
        )
    default = plain[0] if plain else None
    if not keyed:
        if by is not None:
            raise ConfigError(f"--template-by {by} needs one --template VALUE=FILE per value (e.g. km=offer_km.j2)")
        if default is None:  # pragma: no cover - argparse requires --template
            raise ConfigError("--template FILE is required")
        return Templates(default)
    if by is None:
        raise ConfigError(
            f"--template {next(iter(keyed))}=... needs --template-by COLUMN (e.g. --template-by language)"
        )
    return Templates(keyed, by=by, default=default)


def check_holdout(holdout: float, *, variants: Any) -> None:
    """Refuse a ``--holdout`` that is not a share in [0, 1), or one given without ``--variant``."""
    if not (0 <= holdout < 1):
        raise ConfigError(f"--holdout must be a share from 0 to below 1, not {holdout}")
    if holdout and not variants:
        raise ConfigError("--holdout goes with --variant")


def render_templates(
    df: pd.DataFrame,
    templates: Templates,
    *,
    mask: Sequence[str],
    holdout: float = 0.0,
    key: str | None = None,
    seed: str | None = None,
) -> pd.DataFrame:
    """Render ``df`` with the ``--template`` files (:func:`~plasgate_nb.render_messages`); with ``--variant``,
    assign the variants first (:func:`~plasgate_nb.assign_variants`, ``holdout`` share, ``seed``)."""
    check_holdout(holdout, variants=templates.variants)
    if templates.variants:
        if "variant" in df.columns:
            raise ConfigError("the input already has a 'variant' column: rename it to use --variant")
        names = list(templates.template) if isinstance(templates.template, dict) else []
        df = assign_variants(df, names, holdout=holdout, key=key, seed=seed or "plasgate")
    if templates.by is not None and templates.by not in df.columns:
        raise ConfigError(
            f"--template-by column {templates.by!r} is not in the input (columns: {', '.join(map(str, df.columns))})"
        )
    if templates.by is None:
        return render_messages(df, templates.template, mask=mask)
    return render_messages(df, templates.template, mask=mask, by=templates.by, default=templates.default)


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


def _jsonable(value: Any) -> Any:
    """``value`` with every missing or non-finite number (NaN, inf, NA, NaT) as None, numpy scalars as Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    """Print ``data`` as one line of valid JSON with ``--json`` (NaN and infinities as null), else ``text``."""
    if getattr(args, "json", False):
        print(json.dumps(_jsonable(data), default=str, allow_nan=False))
    else:
        print(text)
    sys.stdout.flush()

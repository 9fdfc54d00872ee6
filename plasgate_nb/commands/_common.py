"""Helpers shared by the subcommands: reading frames, campaign options, printing results."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError

__all__ = ["add_campaign_options", "emit", "read_frame", "write_frame"]


def read_frame(path: Path, *, key: str | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file (by extension); ``key`` becomes a text column kept as written."""
    if not path.is_file():
        raise ConfigError(f"input file {path} not found")
    if path.suffix.lower() in (".parquet", ".pq"):
        return pd.read_parquet(path)
    dtype = {key: "string"} if key else None
    return pd.read_csv(path, dtype=dtype)


def write_frame(df: pd.DataFrame, path: Path) -> None:
    """Write a frame as CSV or Parquet by the file's extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".parquet", ".pq"):
        df.to_parquet(path)
    else:
        df.to_csv(path)


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

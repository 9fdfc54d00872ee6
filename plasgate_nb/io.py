"""Read a customer export keeping text as text: codes, OTPs and phone numbers keep their leading zeros.

``pd.read_csv`` guesses types, so an ``otp`` of ``004821`` becomes the number 4821 and is sent as
``4821``. :func:`read_customers` reads every CSV column as text (empty cells are missing, nothing else
is), keeps Excel and Parquet text cells as text, and converts to dates only the columns you name.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / "c.csv"
>>> _ = path.write_text("phone,otp,joined\\n012 345 678,004821,2024-06-13\\n,000007,\\n")
>>> df = read_customers(path, parse_dates="joined")
>>> df["otp"].tolist(), df["phone"].isna().tolist(), str(df["joined"].dtype)
(['004821', '000007'], [False, True], 'datetime64[ns]')
"""

from __future__ import annotations

import importlib.util
import math
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError

__all__ = ["EXCEL", "PARQUET", "NumericTextWarning", "read_customers", "warn_numeric_text"]

PARQUET = (".parquet", ".pq")
EXCEL = (".xlsx", ".xlsm")
_SHOWN_ROWS = 5


class NumericTextWarning(UserWarning):
    """A column that must stay text (a masked code, a message key) holds numbers: leading zeros may be lost."""


def _names(parse_dates: str | Iterable[str] | None) -> list[str]:
    """Accept one column name or several."""
    if parse_dates is None:
        return []
    return [parse_dates] if isinstance(parse_dates, str) else list(parse_dates)


def _excel_text(value: Any) -> Any:
    """One Excel cell of a column holding text: numbers as text (no ``.0``), everything else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    return value


def _read_excel(path: Path) -> pd.DataFrame:
    """Read the first sheet of a workbook: text cells stay text, a column mixing text and numbers is text."""
    if importlib.util.find_spec("openpyxl") is None:
        raise ConfigError(f"reading Excel file {path} needs openpyxl: `pip install openpyxl`, or save it as CSV")
    frame = pd.read_excel(path, dtype=object, engine="openpyxl")
    out = {}
    for name in frame.columns:
        column = frame[name]
        present = column.dropna()
        if len(present) and present.map(lambda v: isinstance(v, str)).any():
            out[name] = pd.Series(column.map(_excel_text).where(column.notna()), index=frame.index, dtype=str)
        else:
            out[name] = pd.Series(column.infer_objects(), index=frame.index)
    return pd.DataFrame(out, index=frame.index)


def _to_dates(df: pd.DataFrame, names: list[str], path: Path) -> pd.DataFrame:
    """Convert the named columns to dates; an unknown column or an unreadable value is a ConfigError."""
    unknown = [name for name in names if name not in df.columns]
    if unknown:
        raise ConfigError(
            f"parse_dates names columns {path} does not have: {', '.join(map(repr, unknown))} "
            f"(columns: {', '.join(map(str, df.columns))})"
        )
    out = df.copy(deep=False)
    for name in names:
        try:
            with warnings.catch_warnings():  # a column in no single format is parsed value by value
                warnings.filterwarnings("ignore", "Could not infer format", UserWarning)
                out[name] = pd.to_datetime(df[name])
        except (ValueError, TypeError, OverflowError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"column {name!r} of {path} is not a date column: {reason}") from exc
    return out


def read_customers(path: str | os.PathLike[str], *, parse_dates: str | Iterable[str] | None = None) -> pd.DataFrame:
    """Read a CSV, Excel (``.xlsx``) or Parquet file of customers, keeping text as text.

    - CSV (any other extension, ``.csv.gz`` too; UTF-8 with or without a BOM): every column is text
      (``str`` dtype) exactly as written, so ``004821`` stays ``"004821"`` and
      ``012 345 678`` keeps its zero. Only empty cells are missing (``NA``, ``null`` and ``None`` are
      text: they can be names).
    - Excel (``.xlsx``, ``.xlsm``; needs openpyxl, a dependency): the first sheet; a column holding any
      text cell is text (its number cells written without ``.0``); number and date columns keep their
      types. A number cell has already lost its leading zeros in Excel: format such cells as Text.
    - Parquet (``.parquet``, ``.pq``): the stored types; string columns stay strings.

    ``parse_dates`` names the columns to convert to dates (the format is inferred from the first
    value). Raises :class:`~plasgate_nb.errors.ConfigError` for a column it does not have or a value
    that is not a date, and ``FileNotFoundError`` for a missing file.
    """
    path = Path(path)
    names = _names(parse_dates)
    suffix = path.suffix.lower()
    if suffix in PARQUET:
        df = pd.read_parquet(path)
    elif suffix in EXCEL:
        df = _read_excel(path)
    elif suffix == ".xls":
        raise ConfigError(f"{path} is an old .xls workbook: save it as .xlsx or CSV")
    else:
        df = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            sep="\t" if suffix == ".tsv" else ",",
        )
    return _to_dates(df, names, path) if names else df


def _rows(labels: list[Any]) -> str:
    """Name a few row labels and how many there are in all."""
    labels = [label.item() if isinstance(label, np.generic) else label for label in labels]
    shown = ", ".join(repr(label) for label in labels[:_SHOWN_ROWS])
    more = f" and {len(labels) - _SHOWN_ROWS} more" if len(labels) > _SHOWN_ROWS else ""
    return f"{len(labels)} row(s) ({shown}{more})"


def warn_numeric_text(df: pd.DataFrame, columns: Iterable[str], *, role: str, stacklevel: int = 2) -> None:
    """Warn with :class:`NumericTextWarning` for each of ``columns`` that holds numbers instead of text.

    ``role`` says what the column is for ("masked", "key"). The warning names the column and, when
    some values have fewer digits than the longest one, those rows: their leading zeros are likely gone.
    """
    for name in columns:
        if name not in df.columns:
            continue
        column = df[name]
        if isinstance(column, pd.DataFrame) or pd.api.types.is_bool_dtype(column):
            continue
        if not pd.api.types.is_numeric_dtype(column):
            continue
        present = column.dropna()
        whole = present[(present % 1 == 0) & (present >= 0)]
        digits = whole.astype("int64").astype(str).str.len() if len(whole) else whole
        short = digits[digits < digits.max()].index.tolist() if len(whole) else []
        detail = f"; {_rows(short)} have fewer digits than the longest value ({int(digits.max())})" if short else ""
        warnings.warn(
            f"{role} column {name!r} is numeric ({column.dtype}): leading zeros may already be lost: read it as "
            f"text (plasgate_nb.read_customers, or dtype=str){detail}",
            NumericTextWarning,
            stacklevel=stacklevel + 1,
        )

"""Message keys: each row's key as canonical text, from the frame's index or a chosen column, checked unique.

Shared by the campaign (planning and sending), the batch builder, the ledger and the report (joining the
ledger back into a frame), so all of them name the same rows the same way. A key is canonical whatever
the dtype that carried it: ``101``, ``101.0`` (a float from Excel), ``numpy.int64(101)``, pandas'
nullable ``Int64`` 101, ``"101"``, ``" 101 "`` and ``"101.0"`` are all the key ``"101"``; ``101.5``
stays ``"101.5"`` and ``"007"`` stays ``"007"`` (text is kept as written, but for surrounding
whitespace and an Excel ``.0``). A key holding a control character is refused.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from ._controls import describe, refused
from .errors import AudienceError

__all__ = [
    "DIGEST_LENGTH",
    "GROUP_KEY",
    "HOLDOUT",
    "canonical_key",
    "canonical_keys",
    "key_digest",
    "key_index",
    "message_keys",
]

HOLDOUT = "holdout"  # the A/B variant (and ledger state) of rows held out: planned, never sent
GROUP_KEY = "_group"  # the key in the dlr_url of grouped content (one text, many numbers): reserved
_SHOWN = 10
DIGEST_LENGTH = 32  # hex characters: 128 bits of SHA-256
_WHOLE_TEXT = re.compile(r"([+-]?[0-9]+)\.0+")  # "101.0": a whole number Excel wrote as a float
_INT64_SAFE = 2.0**53  # floats below this are whole numbers exactly representable as int64


def key_digest(key: str) -> str:
    """The digest of a message key that callback URLs carry in its place (32 lowercase hex characters).

    Any key (slashes, ``%``, ``?``, ``#``, spaces, Khmer, thousands of characters) gives the same short,
    URL-safe text; the ledger stores it with the row and finds the row by it. It can never be
    :data:`GROUP_KEY`.
    """
    return hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_LENGTH]


def _missing(value: Any) -> bool:
    """Tell whether a scalar is a missing value (None, NaN, NA, NaT)."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _text_key(text: str) -> str:
    """Canonical form of a text key: surrounding whitespace removed, an Excel ``.0`` dropped."""
    text = text.strip()
    if "." in text and (whole := _WHOLE_TEXT.fullmatch(text)) is not None:
        return whole.group(1)
    return text


def canonical_key(value: Any) -> str:
    """Return one message key as canonical text: ``101``, ``101.0``, ``"101"`` and ``np.int64(101)`` give ``"101"``.

    Raises :class:`AudienceError` for a missing value (None, NaN, NA) or an empty key. Control
    characters are checked by :func:`canonical_keys` and :func:`key_index`, which name the rows.
    """
    if isinstance(value, str):
        key = _text_key(value)
    elif _missing(value):
        raise AudienceError(f"a message key is missing ({value!r})")
    elif isinstance(value, bool | np.bool_):
        key = str(bool(value))
    elif isinstance(value, int | np.integer):
        key = str(int(value))
    elif isinstance(value, float | np.floating):
        number = float(value)
        key = str(int(number)) if math.isfinite(number) and number.is_integer() else str(value)
    elif isinstance(value, Decimal):
        key = str(int(value)) if value.is_finite() and value == value.to_integral_value() else str(value)
    else:
        key = _text_key(str(value))
    if not key:
        raise AudienceError(f"a message key is empty ({value!r})")
    return key


def _float_keys(values: np.ndarray) -> list[str]:
    """Canonical keys of a float array (no missing values): whole numbers without ``.0``."""
    whole = np.isfinite(values) & (np.trunc(values) == values) & (np.abs(values) < _INT64_SAFE)
    if whole.all():
        return values.astype(np.int64).astype(str).tolist()
    return [canonical_key(v) for v in values.tolist()]


def canonical_keys(values: pd.Series | pd.Index | Iterable[Any], *, labels: pd.Index | None = None) -> list[str]:
    """Return canonical keys (see :func:`canonical_key`) for many values, vectorized by dtype.

    Raises :class:`AudienceError` for missing or empty keys and for keys holding a control character,
    naming the rows by ``labels`` (default: their positions).
    """
    if not isinstance(values, pd.Series | pd.Index):
        values = pd.Series(list(values), dtype=object)
    dtype = values.dtype
    missing = np.asarray(pd.isna(values), dtype=bool)
    if missing.any():
        raise AudienceError(f"message keys are missing in rows {_rows(np.flatnonzero(missing), labels)}")
    if pd.api.types.is_bool_dtype(dtype):
        keys = [str(bool(v)) for v in values.tolist()]
    elif pd.api.types.is_integer_dtype(dtype):
        keys = values.astype(str).tolist()
    elif pd.api.types.is_float_dtype(dtype):
        keys = _float_keys(values.to_numpy(dtype=np.float64))
    else:
        keys = _canonical_list(values.tolist())
    empty = [i for i, k in enumerate(keys) if not k] if not all(keys) else []
    if empty:
        raise AudienceError(f"message keys are empty in rows {_rows(empty, labels)}")
    bad = refused(keys)
    if bad:
        shown = ", ".join(f"{keys[i]!r} ({describe(keys[i])})" for i in bad[:_SHOWN])
        raise AudienceError(f"message keys hold control characters in rows {_rows(bad, labels)}: {shown}")
    return keys


def _rows(positions: Iterable[int], labels: pd.Index | None) -> list[Any]:
    """Name (at most 10) rows by label, or by position without labels."""
    shown = list(positions)[:_SHOWN]
    return shown if labels is None else [labels[i] for i in shown]


def _canonical_list(values: list[Any]) -> list[str]:
    """Canonical keys of a list of objects (fast when they are already canonical text); may hold empty keys."""
    try:
        joined = "".join(values)
    except TypeError:  # not all text
        return [_text_key(v) if isinstance(v, str) else canonical_key(v) for v in values]
    if joined.isalnum():  # letters and digits only: already canonical (empty keys are checked by the caller)
        return values
    stripped = [v.strip() for v in values]
    if "." in joined:
        stripped = [_text_key(v) for v in stripped]
    return stripped


def _text_index(values: pd.Index | pd.Series, labels: pd.Index) -> pd.Index:
    """``values`` as canonical text in an object Index: its hash table and element access are the fastest
    pandas has (an index of pyarrow strings builds a slower one, and every comparison converts back)."""
    return pd.Index(np.asarray(canonical_keys(values, labels=labels), dtype=object), dtype=object)


def message_keys(df: pd.DataFrame, key: str | None = None) -> pd.Series:
    """Return each row's message key as canonical text: the frame's index, or column ``key``; must be unique."""
    return pd.Series(key_index(df, key), index=df.index, name=key)


def key_index(df: pd.DataFrame, key: str | None = None) -> pd.Index:
    """Each row's message key as a canonical text :class:`pandas.Index` (its hash table built), checked unique.

    The errors of :func:`message_keys`: a missing key column, missing or empty keys, keys holding a
    control character, and duplicates (``101`` and ``"101.0"`` are the same key), each naming rows.
    Lookups on the returned index reuse the table built to check uniqueness.
    """
    if key is None:
        values: pd.Index | pd.Series = df.index
        where = "the frame's index"
    else:
        if key not in df.columns:
            raise AudienceError(f"key column {key!r} not found; columns are {list(df.columns)}")
        values = df[key]
        where = f"key column {key!r}"
    empty = np.asarray(pd.isna(values), dtype=bool)
    if empty.any():
        rows = df.index[empty].tolist()[:_SHOWN]
        raise AudienceError(f"{where} is empty in rows {rows}")
    try:
        keys = _text_index(values, df.index)
    except AudienceError as exc:
        raise AudienceError(f"{where}: {exc}") from None
    if not keys.is_unique:
        series = pd.Series(keys, index=df.index)
        dup = series[series.duplicated(keep=False)]
        shown = sorted(set(dup.tolist()))[:_SHOWN]
        raise AudienceError(
            f"{where} has duplicate values {shown} (rows {dup.index.tolist()[:_SHOWN]}); "
            "message keys must be unique (101, 101.0 and '101' are one key): pick a unique column with key="
        )
    return keys

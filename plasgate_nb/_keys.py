"""Message keys: each row's key as text, from the frame's index or a chosen column, checked unique.

Shared by the campaign (planning and sending) and the report (joining the ledger back into a frame),
so both name the same rows the same way.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from .errors import AudienceError

__all__ = ["DIGEST_LENGTH", "GROUP_KEY", "HOLDOUT", "key_digest", "key_index", "message_keys"]

HOLDOUT = "holdout"  # the A/B variant (and ledger state) of rows held out: planned, never sent
GROUP_KEY = "_group"  # the key in the dlr_url of grouped content (one text, many numbers): reserved
_SHOWN = 10
DIGEST_LENGTH = 32  # hex characters: 128 bits of SHA-256


def key_digest(key: str) -> str:
    """The digest of a message key that callback URLs carry in its place (32 lowercase hex characters).

    Any key (slashes, ``%``, ``?``, ``#``, spaces, Khmer, thousands of characters) gives the same short,
    URL-safe text; the ledger stores it with the row and finds the row by it. It can never be
    :data:`GROUP_KEY`.
    """
    return hashlib.sha256(str(key).encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_LENGTH]


def _text_index(values: pd.Index | pd.Series) -> pd.Index:
    """``values`` as text in an object Index: its hash table and element access are the fastest pandas has
    (an index of pyarrow strings builds a slower one, and every comparison converts back)."""
    text = values if isinstance(values.dtype, pd.StringDtype) else values.astype(str)
    return pd.Index(text.to_numpy(dtype=object), dtype=object)


def message_keys(df: pd.DataFrame, key: str | None = None) -> pd.Series:
    """Return each row's message key as text: the frame's index, or column ``key``; must be unique."""
    return pd.Series(key_index(df, key), index=df.index, name=key)


def key_index(df: pd.DataFrame, key: str | None = None) -> pd.Index:
    """Each row's message key as a text :class:`pandas.Index` (its hash table built), checked unique.

    The errors of :func:`message_keys`; lookups on the returned index reuse the table built to check
    uniqueness.
    """
    if key is None:
        keys = _text_index(df.index)
        where = "the frame's index"
    else:
        if key not in df.columns:
            raise AudienceError(f"key column {key!r} not found; columns are {list(df.columns)}")
        if df[key].isna().any():
            rows = df.index[df[key].isna()].tolist()[:_SHOWN]
            raise AudienceError(f"key column {key!r} is empty in rows {rows}")
        keys = _text_index(df[key])
        where = f"key column {key!r}"
    keys = keys.rename(None)
    if not keys.is_unique:
        series = pd.Series(keys, index=df.index)
        dup = series[series.duplicated(keep=False)]
        shown = sorted(set(dup.tolist()))[:_SHOWN]
        raise AudienceError(
            f"{where} has duplicate values {shown} (rows {dup.index.tolist()[:_SHOWN]}); "
            "message keys must be unique: pick a unique column with key="
        )
    return keys

"""Small helpers of the ledger: validating rows to plan, message keys, repeats, settings and error texts."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from .._controls import describe as describe_char
from .._controls import refused
from .._keys import canonical_keys, key_digest
from .._masking import content_digest
from ..errors import AudienceError, LedgerError

logger = logging.getLogger("plasgate_nb")

_SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential", "auth")


def scrub(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Drop credential-like keys (recursively) from campaign settings before storing them."""
    clean: dict[str, Any] = {}
    for name, value in settings.items():
        if any(word in str(name).lower() for word in _SECRET_WORDS):
            logger.warning("not storing campaign setting %r: it looks like a credential", name)
            continue
        clean[str(name)] = scrub(value) if isinstance(value, Mapping) else value
    return clean


def describe(exc: sa.exc.SQLAlchemyError) -> str:
    """A one-line description of a database error, without SQL parameters."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first[:200]}"


def as_utc(value: datetime) -> datetime:
    """Stored datetimes come back naive from SQLite (they are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def keys_of(keys: Iterable[Any]) -> list[str]:
    """Message keys as unique canonical strings (``101``, ``101.0`` and ``"101"`` are one), in the given order."""
    if isinstance(keys, str):
        keys = [keys]
    try:
        return list(dict.fromkeys(canonical_keys(list(keys))))
    except AudienceError as exc:
        raise LedgerError(str(exc)) from None


PLAN_COLUMNS = ("message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "key_digest")
TAKEN_STATES = frozenset({"submitting", "accepted", "uncertain"})  # sent, or maybe sent: a repeat is not resent
REPEAT_REASON = "same number and text as message"


def repeat_reason(earlier: str) -> str:
    """The ``reason`` stored on a row not sent because message ``earlier`` carries its number and text."""
    return f"{REPEAT_REASON} {earlier!r}: not sent again (send with allow_repeat=True to send it)"


PLAN_CHUNK = 20_000  # rows turned into Python values at a time while planning


class PlanRows:
    """The rows to plan, validated; their stored columns are made :data:`PLAN_CHUNK` rows at a time.

    ``keys`` holds every canonical key (:func:`~plasgate_nb._keys.canonical_keys`); the other columns of
    :data:`PLAN_COLUMNS` (content hashed, not kept) come from :meth:`columns` for the positions asked,
    so a million rows never become a million tuples of Python strings at once. ``msisdns`` and
    ``digests`` give whole columns, for comparing with a campaign's stored rows.
    """

    def __init__(self, rows: pd.DataFrame) -> None:
        """Validate ``rows`` (see :func:`plan_rows`)."""
        if not isinstance(rows, pd.DataFrame):
            raise LedgerError("plan() needs a DataFrame")
        missing = [c for c in ("message_key", "msisdn", "content") if c not in rows.columns]
        if missing:
            raise LedgerError(f"plan() rows lack columns {missing}")
        try:
            keys = canonical_keys(rows["message_key"])
        except AudienceError as exc:
            raise LedgerError(f"plan() rows: {exc}") from None
        if len(set(keys)) != len(keys):
            dupes = pd.Series(keys).loc[lambda s: s.duplicated()].unique().tolist()
            raise LedgerError(f"duplicate message keys: {dupes[:10]}")
        self.rows, self.keys = rows, keys
        self._msisdns: list[str] | None = None
        self._digests: list[str] | None = None
        self._validate()

    def __len__(self) -> int:
        return len(self.keys)

    def _column(self, name: str, at: slice | np.ndarray) -> list[Any]:
        """The values of column ``name`` at ``at`` with every kind of missing value as None."""
        if name not in self.rows.columns:
            return [None] * len(self.keys[at] if isinstance(at, slice) else at)
        values = self.rows[name].iloc[at]
        if not values.hasnans:
            return values.tolist()
        return [None if v is None or (isinstance(v, float) and v != v) or v is pd.NA else v for v in values.tolist()]

    def _validate(self) -> None:
        """Refuse rows without a number or text, and keys, numbers and texts holding control characters."""
        bad: list[str] = []
        refused_at: dict[str, list[int]] = {"numbers": [], "texts": [], "report texts": []}
        found: dict[int, str] = {}
        for start in range(0, len(self.keys), PLAN_CHUNK):
            part = slice(start, start + PLAN_CHUNK)
            keys, msisdns, contents = self.keys[part], self._column("msisdn", part), self._column("content", part)
            bad.extend(
                k for k, m, c in zip(keys, msisdns, contents, strict=True) if m is None or not isinstance(c, str)
            )
            if bad:
                continue
            msisdns = [m if isinstance(m, str) else str(m) for m in msisdns]
            reports = [r if isinstance(r, str) else "" for r in self._column("content_report", part)]
            for what, values in (("numbers", msisdns), ("texts", contents), ("report texts", reports)):
                for i in refused(values):
                    refused_at[what].append(start + i)
                    found.setdefault(start + i, values[i])
        if bad:
            raise LedgerError(f"rows without a number or text content: {bad[:10]}")
        for what, positions in refused_at.items():
            if positions:
                shown = ", ".join(f"{self.keys[i]!r} ({describe_char(found[i])})" for i in positions[:10])
                more = f" and {len(positions) - 10} more" if len(positions) > 10 else ""
                raise LedgerError(f"{what} hold control characters in rows {shown}{more}; nothing was planned")

    @property
    def msisdns(self) -> list[str]:
        """Every row's number, as text."""
        if self._msisdns is None:
            self._msisdns = [m if isinstance(m, str) else str(m) for m in self._column("msisdn", slice(None))]
        return self._msisdns

    @property
    def digests(self) -> list[str]:
        """Every row's content digest (:func:`~plasgate_nb._masking.content_digest`)."""
        if self._digests is None:
            self._digests = [
                d
                for start in range(0, len(self.keys), PLAN_CHUNK)
                for d in self.hashes(slice(start, start + PLAN_CHUNK))
            ]
        return self._digests

    def numbers_unique(self) -> bool:
        """Whether no number comes twice (vectorized: no Python string per row)."""
        numbers = self.rows["msisdn"]
        if isinstance(numbers.dtype, pd.StringDtype):
            return not numbers.duplicated().any()
        return len(set(self.msisdns)) == len(self.keys)

    def hashes(self, at: slice | np.ndarray) -> list[str]:
        """The content digests of the rows at ``at``."""
        if self._digests is not None:
            return self._digests[at] if isinstance(at, slice) else [self._digests[i] for i in at]
        return [content_digest(c) for c in self._column("content", at)]

    def numbers(self, at: slice | np.ndarray) -> list[str]:
        """The numbers of the rows at ``at``, as text."""
        return [m if isinstance(m, str) else str(m) for m in self._column("msisdn", at)]

    def columns(self, at: slice | np.ndarray) -> list[list[Any]]:
        """The stored columns (ordered as :data:`PLAN_COLUMNS`) of the rows at ``at`` (a slice or positions)."""
        keys = self.keys[at] if isinstance(at, slice) else [self.keys[i] for i in at]
        return [
            keys,
            self.numbers(at),
            self.hashes(at),
            self._column("content_report", at),
            self._column("encoding", at),
            [None if v is None else int(v) for v in self._column("segments", at)],
            [key_digest(k) for k in keys],
        ]

    def parts(self, positions: Sequence[int]) -> Iterator[list[list[Any]]]:
        """The stored columns of the rows at ``positions``, :data:`PLAN_CHUNK` rows at a time."""
        whole = isinstance(positions, range) and positions.step == 1
        for start in range(0, len(positions), PLAN_CHUNK):
            if whole:
                first = positions.start + start
                yield self.columns(slice(first, min(first + PLAN_CHUNK, positions.stop)))
            else:
                yield self.columns(np.asarray(positions[start : start + PLAN_CHUNK], dtype=np.intp))


def plan_rows(rows: pd.DataFrame) -> PlanRows:
    """Validate the rows to plan and return them as :class:`PlanRows` (their stored columns made on demand).

    Keys are canonical (:func:`~plasgate_nb._keys.canonical_keys`); keys, numbers and texts holding a
    control character (texts may hold tab, newline, carriage return and form feed) raise LedgerError
    naming the rows, before anything is written.
    """
    return PlanRows(rows)


def _refuse_controls(keys: list[str], values: list[str], what: str) -> None:
    """Raise LedgerError naming the rows whose ``values`` hold a refused control character."""
    bad = refused(values)
    if bad:
        shown = ", ".join(f"{keys[i]!r} ({describe_char(values[i])})" for i in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise LedgerError(f"{what} hold control characters in rows {shown}{more}; nothing was planned")


def repeats(
    keys: Sequence[str],
    msisdns: Sequence[str],
    digests: Sequence[str],
    candidates: Sequence[int],
    known: Mapping[str, tuple[Any, ...]],
) -> dict[str, str]:
    """Map the key of each row that repeats an earlier message to that message's key.

    ``candidates`` are the positions of the rows still to send, in frame order; ``known`` maps the
    campaign's stored keys to ``(msisdn, digest, state, ...)``. A candidate repeats a stored message
    submitted, accepted or uncertain under another key with the same number and text digest, or an
    earlier candidate with the same number and digest.
    """
    if not candidates:
        return {}
    numbers = set(msisdns) if len(candidates) == len(msisdns) else {msisdns[i] for i in candidates}
    taken: dict[tuple[str, str], str] = {}
    for key, (msisdn, digest, state, *_) in known.items():
        if state in TAKEN_STATES and msisdn in numbers:
            taken.setdefault((msisdn, digest), key)
    if not taken and len(numbers) == len(candidates):  # every number once, none sent before: no repeat
        return {}
    out: dict[str, str] = {}
    for i in candidates:
        pair = (msisdns[i], digests[i])
        earlier = taken.setdefault(pair, keys[i])
        if earlier != keys[i]:
            out[keys[i]] = earlier
    return out

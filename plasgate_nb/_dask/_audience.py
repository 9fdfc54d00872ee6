"""``prepare_audience`` on a Dask DataFrame: partition by partition, exactly the pandas result.

Every row's verdict (number, carrier, consent, opt-out lists) depends on that row alone, so each
partition runs the pandas code. Two things span partitions and are settled at call time, by one pass
over the frame that keeps little in memory (and a second, reading labels, when numbers repeat across
partitions):

- **consent**: a value that is neither yes nor no raises :class:`AudienceError` naming the first such
  values and rows of the whole frame, as pandas does (each partition reports at most five of each);
- **duplicates**: the first ``ok`` row of a number wins, first in partition order then row order. Each
  partition dedupes its own rows and reports its ``ok`` numbers (as int64, with the row's partition
  and position); a groupby over them (``split_out``: spread over the workers) keeps the numbers held
  by more than one partition with their first position, and only those come back to the client.
  When there are some, a second pass over the frame reads the index labels of those first rows. That
  table, a few dozen bytes per number found in several partitions (never per row: a number repeated
  a million times is one entry), goes to the workers once; the returned frame marks the later rows
  ``duplicate`` from it.

Positions are only meaningful if every pass splits the frame the same way. All passes map over the
same frame (never ``ddf.partitions[i]``: once fewer Parquet columns are read Dask fuses files into
fewer partitions, and ``partitions[i]`` still names a file), and each partition checks its length
against the call-time pass, raising :class:`AudienceError` rather than marking the wrong rows.

The opt-out list and the ledger's suppression list are read and normalized once on the client and
shipped to the workers as one object. The returned frame is lazy; computing it runs the pandas code
on each partition again (the call-time pass keeps only the numbers, not the rows).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..audience import (
    _assign,
    _check_column,
    _consent_error,
    _flag,
    _listed,
    _mark_duplicates,
    _odd_consent,
    _Plan,
    _plan,
    _suppressed_numbers,
    _warn_consent_like,
)
from ..errors import AudienceError

__all__ = ["prepare_dask_audience"]

log = logging.getLogger("plasgate_nb")

_POSITION_BITS = 32  # a row's key: partition number << 32 | position in the partition


def prepare_dask_audience(
    ddf: dd.DataFrame,
    *,
    phone: str,
    region: str,
    suppress: Iterable[Any] | pd.Series | None,
    consent: str | None,
    ledger: Any,
) -> dd.DataFrame:
    """The Dask side of :func:`~plasgate_nb.prepare_audience`: a lazy frame, equal to pandas' once computed."""
    meta = ddf._meta
    _check_column(meta, phone, "phone")
    if consent is not None:
        _check_column(meta, consent, "consent")
    plan = _plan(region)
    if consent is None:
        _warn_consent_like(meta.columns)
    if isinstance(suppress, dd.Series | dd.DataFrame):
        suppress = suppress.compute()  # an opt-out list is small next to the audience: read it once
    lists = (
        _suppressed_numbers(suppress, plan) if suppress is not None else None,
        _listed(ledger) if ledger is not None else None,
    )
    shipped = _ship(lists)
    options = {"phone": phone, "region": plan.region, "consent": consent}

    keys_meta = pd.DataFrame({"number": pd.Series(dtype=_number_dtype(plan)), "key": pd.Series(dtype="int64")})
    keys = ddf.map_partitions(_ok_keys, shipped, **options, meta=keys_meta, enforce_metadata=False)
    # 16 bytes a row: the task-based shuffle beats p2p here (5.6 s against 10.1 s for 1M rows, 10 partitions)
    found = keys.groupby("number")["key"].agg(["min", "count"], split_out=True, shuffle_method="tasks")
    repeated = found[found["count"] > 1]["min"]
    report_meta = pd.DataFrame(
        {"rows": pd.Series(dtype="int64"), "odd": pd.Series(dtype=object), "odd_rows": pd.Series(dtype=object)}
    ).assign(odd_count=pd.Series(dtype="int64"))
    report = ddf.map_partitions(_report, consent=consent, meta=report_meta)
    repeated_keys, reports = dask.compute(repeated, report)  # one read of the frame for both
    if consent is not None:
        _raise_odd_consent(consent, reports)
    lengths = reports["rows"].to_numpy()
    log.debug("audience on %d partitions: %d numbers sit in several partitions", len(lengths), len(repeated_keys))
    firsts = _first_rows(ddf, repeated_keys, lengths)

    out_meta = _assign(meta, *(np.empty(0, dtype=object) for _ in range(4)))
    return ddf.map_partitions(_prepare_partition, shipped, _ship((lengths, firsts)), **options, meta=out_meta)


def _ship(value: Any) -> Any:
    """Wrap a client-side object so each worker receives it once (not hashed, not embedded per task)."""
    return dask.delayed(value, pure=False, traverse=False)


def _number_dtype(plan: _Plan) -> str:
    """int64 when every msisdn of the plan fits one (KH: 12 digits), else text."""
    return "int64" if len(plan.cc) + plan.max_len <= 18 else "str"


def _numbers(msisdn: np.ndarray, plan: _Plan) -> np.ndarray:
    """Msisdns (ASCII digit strings) as the dedupe keys: int64, or the text itself for very long plans."""
    if _number_dtype(plan) != "int64":
        return msisdn.astype(str)
    return pc.cast(pa.array(msisdn, type=pa.string()), pa.int64()).to_numpy(zero_copy_only=False)


def _flags(
    part: pd.DataFrame,
    lists: tuple[set[str] | None, pd.DataFrame | None],
    *,
    phone: str,
    region: str,
    consent: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One partition's verdicts before any dedupe (odd consent values count as no consent: checked at call time)."""
    suppressed, listed = lists
    return _flag(
        part, phone=phone, plan=_plan(region), consent=consent, suppressed=suppressed, listed=listed, strict=False
    )


def _ok_keys(
    part: pd.DataFrame,
    lists: tuple[set[str] | None, pd.DataFrame | None],
    *,
    phone: str,
    region: str,
    consent: str | None,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The partition's ``ok`` numbers (one row each after the in-partition dedupe) and their row keys."""
    msisdn, _, status, reason = _flags(part, lists, phone=phone, region=region, consent=consent)
    _mark_duplicates(part.index, msisdn, status, reason)
    ok = np.flatnonzero(status == "ok")
    number = partition_info["number"] if partition_info else 0
    return pd.DataFrame(
        {
            "number": _numbers(msisdn[ok], _plan(region)),
            "key": (np.int64(number) << _POSITION_BITS) | ok.astype(np.int64),
        }
    )


def _report(part: pd.DataFrame, *, consent: str | None) -> pd.DataFrame:
    """One row about a partition: its length, and its first five odd consent values and their rows, and how many."""
    odd, rows, count = _odd_consent(part, consent) if consent is not None else ([], [], 0)
    return pd.DataFrame(
        {
            "rows": np.asarray([len(part)], dtype=np.int64),
            "odd": [odd],
            "odd_rows": [rows],
            "odd_count": np.asarray([count], dtype=np.int64),
        }
    )


def _same_partitions(part: pd.DataFrame, number: int, lengths: np.ndarray) -> None:
    """AudienceError unless partition ``number`` has the length the call-time pass saw (dedupe keys are positions)."""
    if number >= len(lengths) or len(part) != lengths[number]:
        raise AudienceError(
            f"partition {number} of the audience has {len(part)} rows, not what prepare_audience read at call time "
            f"({len(lengths)} partitions): Dask split the frame differently (e.g. Parquet files fused once fewer "
            "columns are read). Compute the prepared frame on its own, or persist() the input before prepare_audience"
        )


def _raise_odd_consent(consent: str, found: pd.DataFrame) -> None:
    """Raise the pandas path's AudienceError from the partitions' reports, if any partition found odd values."""
    count = int(found["odd_count"].sum())
    if not count:
        return
    odd: list[Any] = []
    for values in found["odd"]:
        odd.extend(value for value in values if not any(value == seen for seen in odd))
    rows = [label for labels in found["odd_rows"] for label in labels]
    raise _consent_error(consent, odd, rows, count)


def _first_rows(ddf: dd.DataFrame, keys: pd.Series, lengths: np.ndarray) -> pd.DataFrame | None:
    """For numbers held by several partitions: the first row's partition and index label (None: no such number).

    The labels are read by a pass over the same frame (not ``ddf.partitions[q]``, which may number the
    partitions otherwise once Dask fuses them), taking only the rows asked for in each partition.
    """
    if keys.empty:
        return None
    parts = (keys.to_numpy() >> _POSITION_BITS).astype(np.int64)
    positions = (keys.to_numpy() & ((1 << _POSITION_BITS) - 1)).astype(np.int64)
    order = np.lexsort((positions, parts))
    held, starts = np.unique(parts[order], return_index=True)
    numbers = np.split(keys.index.to_numpy()[order], starts[1:])
    wanted = dict(zip(held.tolist(), zip(numbers, np.split(positions[order], starts[1:]), strict=True), strict=True))
    meta = pd.DataFrame({"label": pd.Series(dtype=object)}, index=pd.Index(keys.index[:0]))
    found = ddf.map_partitions(_labels_at, _ship((wanted, lengths)), meta=meta, enforce_metadata=False).compute()
    label = found["label"].reindex(keys.index)
    return pd.DataFrame({"part": parts, "label": label.to_numpy()}, index=pd.Index(keys.index.to_numpy()))


def _labels_at(
    part: pd.DataFrame,
    asked: tuple[dict[int, tuple[np.ndarray, np.ndarray]], np.ndarray],
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The index labels (plain Python values) at the asked positions of one partition, indexed by number."""
    wanted, lengths = asked
    number = partition_info["number"] if partition_info else 0
    _same_partitions(part, number, lengths)
    numbers, positions = wanted.get(number, (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)))
    labels = np.asarray([*part.index[positions].tolist(), None], dtype=object)[:-1]
    return pd.DataFrame({"label": labels}, index=pd.Index(numbers))


def _prepare_partition(
    part: pd.DataFrame,
    lists: tuple[set[str] | None, pd.DataFrame | None],
    dedupe: tuple[np.ndarray, pd.DataFrame | None],
    *,
    phone: str,
    region: str,
    consent: str | None,
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """One partition of the result: the pandas verdicts; rows whose number came first in an earlier partition are
    duplicates of that row, then the partition's own first rows win over its later ones."""
    lengths, firsts = dedupe
    number = partition_info["number"] if partition_info else 0
    _same_partitions(part, number, lengths)
    msisdn, carrier, status, reason = _flags(part, lists, phone=phone, region=region, consent=consent)
    if firsts is not None:
        ok = np.flatnonzero(status == "ok")
        at = firsts.index.get_indexer(_numbers(msisdn[ok], _plan(region)))
        held = at >= 0
        earlier = firsts["part"].to_numpy()[at[held]] != number
        rows, first = ok[held][earlier], at[held][earlier]
        if len(rows):
            status[rows] = "duplicate"
            reason[rows] = [f"same number as row {label}" for label in firsts["label"].to_numpy()[first]]
    _mark_duplicates(part.index, msisdn, status, reason)  # numbers whose first row is in this partition
    return _assign(part, msisdn, carrier, status, reason)

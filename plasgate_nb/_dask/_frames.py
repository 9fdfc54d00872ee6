"""``render_messages``, ``estimate_cost`` and ``preview`` on a Dask DataFrame, partition by partition.

Each runs the pandas code on one partition at a time; the results equal the pandas ones on the
computed frame. Template errors that do not depend on the data (syntax, a mask or variable that is not
a column, ``by=`` naming no column) are raised at call time: the pandas code renders the empty ``meta``
frame first, which also gives the result's dtypes. Errors of one row (a filter failing on a value, a
``by`` value without a template) are raised when that partition is computed, naming its row.

Warnings: :class:`~plasgate_nb.io.NumericTextWarning` depends on dtypes only and is raised at call
time. :class:`~plasgate_nb.LongMessageWarning` and :class:`~plasgate_nb.EmptyMessageWarning` depend
on the rendered text, which exists only on the workers: there they are logged (logger ``plasgate_nb``,
level WARNING, in the worker's log) instead of raised, since a warning raised on a worker never
reaches the notebook. Count them from the frame: ``(out["segments"] > 5).sum().compute()``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd

from ..compose import (
    CostEstimate,
    MessagePreview,
    Template,
    _checked_mask,
    _frame_warnings,
    _render_frame,
    _require,
    _sample,
    _source,
    estimate_cost,
    preview,
    validate_price,
)
from ..errors import OptionError
from ..io import warn_numeric_text

__all__ = ["estimate_dask_cost", "preview_dask", "render_dask_messages"]

logger = logging.getLogger("plasgate_nb")


def _read_paths(template: Template | Mapping[Any, Template], default: Any) -> tuple[Any, Any]:
    """Read template files on the client (a worker may not see the notebook's files); text passes as is."""
    if isinstance(template, Mapping):
        template = {
            key: _source(value, name=key) if isinstance(value, os.PathLike) else value
            for key, value in template.items()
        }
    elif isinstance(template, os.PathLike):
        template = _source(template)
    if isinstance(default, os.PathLike):
        default = _source(default, name="default")
    return template, default


def render_dask_messages(
    ddf: dd.DataFrame,
    template: Template | Mapping[Any, Template],
    *,
    mask: Iterable[str] | str,
    column: str,
    max_parts: int | None,
    by: str | None,
    default: Any,
) -> dd.DataFrame:
    """The Dask side of :func:`~plasgate_nb.render_messages`: a lazy frame with the message columns."""
    meta = ddf._meta
    masked = _checked_mask(meta, mask)
    warn_numeric_text(meta, sorted(masked), role="masked", stacklevel=3)  # points at the caller
    template, default = _read_paths(template, default)
    out_meta, _ = _render_frame(meta, template, masked=masked, column=column, by=by, default=default)
    if isinstance(template, Mapping):
        labels = [*template, *([] if default is None else ["default"])]
        text_keys = all(isinstance(key, str) for key in labels)
        out_meta["template"] = out_meta["template"].astype("str" if text_keys else object)
    return ddf.map_partitions(
        _render_partition,
        template,
        masked=sorted(masked),
        column=column,
        max_parts=max_parts,
        by=by,
        default=default,
        dtypes=out_meta.dtypes.to_dict(),
        meta=out_meta,
    )


def _render_partition(
    part: pd.DataFrame,
    template: Template | Mapping[Any, Template],
    *,
    masked: list[str],
    column: str,
    max_parts: int | None,
    by: str | None,
    default: Any,
    dtypes: dict[str, Any],
    partition_info: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Render one partition; its long and blank messages are logged on the worker (see the module docstring)."""
    out, rendered = _render_frame(part, template, masked=set(masked), column=column, by=by, default=default)
    where = f"partition {partition_info['number']}" if partition_info else "a partition"
    for category, message in _frame_warnings(part.index, rendered.segments, rendered.blank, max_parts=max_parts):
        logger.warning("%s of the Dask frame: %s: %s", where, category.__name__, message)
    if "template" in dtypes and out["template"].dtype != dtypes["template"]:
        out["template"] = out["template"].astype(dtypes["template"])
    return out


def estimate_dask_cost(ddf: dd.DataFrame, *, price_per_segment: float, currency: str, column: str) -> CostEstimate:
    """The Dask side of :func:`~plasgate_nb.estimate_cost`: each partition's estimate, summed (computes the frame)."""
    price = validate_price(price_per_segment)
    _require(ddf._meta, [column, "encoding", "segments"])
    parts = dask.compute(
        *(
            dask.delayed(estimate_cost)(part, price_per_segment=price, currency=currency, column=column)
            for part in ddf.to_delayed()
        )
    )
    by_encoding: dict[str, dict[str, int]] = {}
    for estimate in parts:
        for encoding, counts in estimate.by_encoding.items():
            total = by_encoding.setdefault(encoding, {"messages": 0, "segments": 0})
            total["messages"] += counts["messages"]
            total["segments"] += counts["segments"]
    segments = sum(estimate.segments for estimate in parts)
    return CostEstimate(
        messages=sum(estimate.messages for estimate in parts),
        segments=segments,
        price_per_segment=price,
        currency=currency,
        total=round(segments * price, 6),
        by_encoding=dict(sorted(by_encoding.items())),
        skipped=sum(estimate.skipped for estimate in parts),
    )


def preview_dask(ddf: dd.DataFrame, n: int | None, *, by: str | Sequence[str] | None, column: str) -> MessagePreview:
    """The Dask side of :func:`~plasgate_nb.preview`: the same rows as pandas would show, read partition by partition.

    The sample (first row of each group, plus the longest message) is taken in each partition, then
    again over those few rows; ``n`` reads partitions in order until it has ``n`` rows.
    """
    meta = ddf._meta
    preview(meta, 0, by=by, column=column)  # the pandas checks (rendered columns, by=) before any work
    if n is not None:
        if n < 0:
            raise OptionError(f"n must be a number of rows >= 0, not {n!r}")
        rows = [meta]
        got = 0
        for number in range(ddf.npartitions):
            if got >= n:
                break
            part = ddf.partitions[number].compute().head(n - got)
            rows.append(part)
            got += len(part)
        return preview(_concat(rows, meta), n, by=by, column=column)
    samples = dask.compute(*(dask.delayed(_sample)(part, by, column) for part in ddf.to_delayed()))
    return preview(_concat(list(samples), meta), None, by=by, column=column)


def _concat(frames: list[pd.DataFrame], meta: pd.DataFrame) -> pd.DataFrame:
    """Concatenate the non-empty frames (the empty ``meta`` when there are none)."""
    full = [frame for frame in frames if len(frame)]
    return pd.concat(full) if full else meta

"""Message composition: render a template per row, mask chosen columns, count parts, preview, cost.

>>> import pandas as pd
>>> df = pd.DataFrame({"first_name": ["Dara", "Sophea"], "coupon": ["K7Q2", "M9X4"]})
>>> out = render_messages(df, "Hi {{ first_name }}, code {{ coupon }}", mask=["coupon"])
>>> out.loc[0, "content"], out.loc[0, "content_report"]
('Hi Dara, code #ma#K7Q2#ma#', 'Hi Dara, code ******')
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd

from ._masking import UnbalancedMarkers
from ._render import render_frame
from ._template import compile_template
from .errors import ConfigError, TemplateError

__all__ = [
    "CostEstimate",
    "EmptyMessageWarning",
    "LongMessageWarning",
    "estimate_cost",
    "preview",
    "render_messages",
]

logger = logging.getLogger("plasgate_nb")

_SHOWN_ROWS = 5


class LongMessageWarning(UserWarning):
    """Some messages need more parts than the configured limit (Jasmin truncates beyond 5)."""


class EmptyMessageWarning(UserWarning):
    """Some rows render to empty (or blank) text; the sending stage refuses them."""


def _label(label: Any) -> Any:
    """A row label as plain Python (``101``, not ``np.int64(101)``)."""
    return label.item() if isinstance(label, np.generic) else label


def _rows(labels: Iterable[Any]) -> str:
    """Name a few row labels and how many there are in all."""
    labels = [_label(label) for label in labels]
    shown = ", ".join(repr(label) for label in labels[:_SHOWN_ROWS])
    more = f" and {len(labels) - _SHOWN_ROWS} more" if len(labels) > _SHOWN_ROWS else ""
    return f"{len(labels)} row(s): {shown}{more}"


def _mask_names(mask: Iterable[str] | str) -> set[str]:
    """Accept one column name or several."""
    return {mask} if isinstance(mask, str) else set(mask)


def _undefined_name(error: Exception) -> str | None:
    """The variable name in a Jinja 'is undefined' error, if that is what it is."""
    if isinstance(error, jinja2.UndefinedError):
        message = str(error)
        if message.startswith("'") and message.endswith("' is undefined"):
            return message[1 : -len("' is undefined")]
    return None


def render_messages(
    df: pd.DataFrame,
    template: str | os.PathLike[str],
    *,
    mask: Iterable[str] | str = (),
    column: str = "content",
    max_parts: int | None = 5,
) -> pd.DataFrame:
    """Render ``template`` for every row of ``df`` into a copy with the message columns added.

    ``template`` is Jinja text (a path-like is read as UTF-8), rendered in a sandbox where every
    column is a variable. Missing values (NaN, None, NA, NaT) render as empty text and behave as
    undefined for ``|default(...)``; whole floats render without ``.0``; dates render as
    ``YYYY-MM-DD`` unless the template formats them. Outputs using a column of ``mask`` are wrapped
    in ``#ma#`` markers. Added columns: ``column`` (the text sent), ``<column>_report`` (masked areas
    as ``******``), ``encoding``, ``units`` and ``segments``. Warns with :class:`LongMessageWarning`
    above ``max_parts`` parts (None: never) and :class:`EmptyMessageWarning` for blank messages.

    Raises :class:`TemplateError` for a syntax error (naming the line), a mask name that is not a
    column, a variable that is not a column, or a row that fails to render (naming the row label).
    """
    source = Path(template).read_text(encoding="utf-8") if isinstance(template, os.PathLike) else template
    if not isinstance(source, str):
        raise TemplateError(f"template must be text or a path, not {type(template).__name__}")
    masked = _mask_names(mask)
    unknown = sorted(masked - set(df.columns))
    if unknown:
        raise TemplateError(f"mask names columns the frame does not have: {', '.join(map(repr, unknown))}")
    compiled = compile_template(source, mask=masked)
    missing = sorted(compiled.names - set(df.columns) - set(compiled.environment.globals))
    rendered, failure = (None, None)
    try:
        rendered, failure = render_frame(compiled, df)
    except UnbalancedMarkers as exc:
        raise TemplateError(str(exc)) from exc
    if failure is not None:
        label = _label(df.index[failure.position])
        name = _undefined_name(failure.error)
        if name is not None and name in missing:
            raise TemplateError(
                f"template variable {name!r} is not a column of the frame (first failing row: {label!r})"
            ) from failure.error
        raise TemplateError(f"template failed on row {label!r}: {failure.error}") from failure.error
    if missing:
        names = ", ".join(map(repr, missing))
        raise TemplateError(f"template variables are not columns of the frame: {names}")
    if rendered is None:  # render_frame returns a result or a failure
        raise TemplateError("template produced no result")
    out = df.copy(deep=False)
    out[column] = pd.Series(rendered.content, index=df.index, dtype="str")
    out[f"{column}_report"] = pd.Series(rendered.report, index=df.index, dtype="str")
    out["encoding"] = pd.Series(np.where(rendered.gsm, "GSM-7", "UCS-2"), index=df.index, dtype="str")
    out["units"] = pd.Series(rendered.units, index=df.index, dtype="int64")
    out["segments"] = pd.Series(rendered.segments, index=df.index, dtype="int64")
    _warn(df.index, rendered.segments, rendered.blank, max_parts=max_parts)
    logger.debug("rendered %d messages (%d parts)", len(out), int(rendered.segments.sum()))
    return out


def _warn(index: pd.Index, segments: np.ndarray, blank: np.ndarray, *, max_parts: int | None) -> None:
    """Warn about messages over the part limit and blank messages, naming rows."""
    if max_parts is not None:
        long_rows = np.flatnonzero(segments > max_parts)
        if len(long_rows):
            warnings.warn(
                f"{_rows(index[long_rows])} need more than {max_parts} parts "
                f"(up to {int(segments.max())}); the gateway may truncate them",
                LongMessageWarning,
                stacklevel=3,
            )
    blank_rows = np.flatnonzero(blank)
    if len(blank_rows):
        warnings.warn(
            f"{_rows(index[blank_rows])} render to empty text and will not be sent",
            EmptyMessageWarning,
            stacklevel=3,
        )


@dataclass(frozen=True)
class CostEstimate:
    """What a rendered campaign costs: messages, parts, per encoding, and the total price."""

    messages: int
    segments: int
    price_per_segment: float
    currency: str
    total: float
    by_encoding: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: int = 0

    def __str__(self) -> str:
        """One line a person can read."""
        return (
            f"{self.messages} messages, {self.segments} parts, "
            f"{self.total:.4f} {self.currency} at {self.price_per_segment} per part"
            + (f" ({self.skipped} rows skipped)" if self.skipped else "")
        )


def _require(df: pd.DataFrame, names: Iterable[str]) -> None:
    """Raise TemplateError unless ``df`` went through render_messages."""
    absent = [name for name in names if name not in df.columns]
    if absent:
        raise TemplateError(f"the frame has no {', '.join(absent)} column(s): run render_messages() first")


def estimate_cost(
    df: pd.DataFrame,
    *,
    price_per_segment: float,
    currency: str = "USD",
    column: str = "content",
) -> CostEstimate:
    """Estimate the price of sending a rendered frame: every part is billed ``price_per_segment``.

    Rows with empty content, and rows whose ``audience_status`` (when present) is not ``ok``, are
    not sent and not counted (``skipped``).
    """
    if not isinstance(price_per_segment, int | float) or price_per_segment < 0:
        raise ConfigError(f"price_per_segment must be a non-negative number, not {price_per_segment!r}")
    _require(df, [column, "encoding", "segments"])
    sent = df[column].fillna("").astype(str).str.len() > 0
    if "audience_status" in df.columns:
        sent &= df["audience_status"] == "ok"
    kept = df.loc[sent, ["encoding", "segments"]]
    by_encoding = {
        str(encoding): {"messages": len(group), "segments": int(group["segments"].sum())}
        for encoding, group in kept.groupby("encoding", sort=True)
    }
    segments = int(kept["segments"].sum())
    return CostEstimate(
        messages=len(kept),
        segments=segments,
        price_per_segment=float(price_per_segment),
        currency=currency,
        total=round(segments * float(price_per_segment), 6),
        by_encoding=by_encoding,
        skipped=int(len(df) - len(kept)),
    )


def preview(df: pd.DataFrame, n: int = 5, *, column: str = "content") -> pd.DataFrame:
    """Show the first ``n`` rendered rows: sent text, report view, encoding, units and parts."""
    report = f"{column}_report"
    _require(df, [column, report, "encoding", "units", "segments"])
    shown = [name for name in ("msisdn",) if name in df.columns]
    return df.head(n)[[*shown, column, report, "encoding", "units", "segments"]].copy()

"""Message composition: render a template per row, mask chosen columns, count parts, preview, cost.

>>> import pandas as pd
>>> df = pd.DataFrame({"first_name": ["Dara", "Sophea"], "coupon": ["K7Q2", "M9X4"]})
>>> out = render_messages(df, "Hi {{ first_name }}, code {{ coupon }}", mask=["coupon"])
>>> out.loc[0, "content"], out.loc[0, "content_report"]
('Hi Dara, code #ma#K7Q2#ma#', 'Hi Dara, code ******')
"""

from __future__ import annotations

import html
import logging
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import jinja2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._columns import gather, repeat, scalar
from ._dask import is_dask_frame
from ._keys import HOLDOUT
from ._masking import REPORT_MASK, UnbalancedMarkers
from ._render import Rendered, render_frame
from ._template import CompiledTemplate, compile_template
from .errors import ConfigError, OptionError, TemplateError
from .io import NumericTextWarning, warn_numeric_text
from .segments import MASK_MARKER

__all__ = [
    "CostEstimate",
    "EmptyMessageWarning",
    "LongMessageWarning",
    "MessagePreview",
    "NumericTextWarning",
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


Template = str | os.PathLike[str]
"""A template: Jinja text, or a path to a UTF-8 file holding it."""


def _source(template: Any, *, name: Any = None) -> str:
    """The text of a template (a path-like is read as UTF-8)."""
    where = f"template {name!r}" if name is not None else "template"
    if isinstance(template, os.PathLike):
        try:
            return Path(template).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TemplateError(f"cannot read {where} file {template}: {exc}") from exc
    if not isinstance(template, str):
        raise TemplateError(f"{where} must be text or a path, not {type(template).__name__}")
    return template


def _render_one(compiled: CompiledTemplate, df: pd.DataFrame, *, name: Any = None) -> Rendered:
    """Render one compiled template over every row of ``df``; failures name the row (and the template)."""
    where = f"template {name!r}: " if name is not None else ""
    missing = sorted(compiled.names - set(df.columns) - set(compiled.environment.globals))
    try:
        rendered, failure = render_frame(compiled, df)
    except UnbalancedMarkers as exc:
        raise TemplateError(f"{where}{exc}") from exc
    if failure is not None:
        label = _label(df.index[failure.position])
        variable = _undefined_name(failure.error)
        if variable is not None and variable in missing:
            raise TemplateError(
                f"{where}template variable {variable!r} is not a column of the frame (first failing row: {label!r})"
            ) from failure.error
        raise TemplateError(f"{where}template failed on row {label!r}: {failure.error}") from failure.error
    if missing:
        names = ", ".join(map(repr, missing))
        raise TemplateError(f"{where}template variables are not columns of the frame: {names}")
    if rendered is None:  # render_frame returns a result or a failure
        raise TemplateError(f"{where}template produced no result")
    return rendered


def _choose(df: pd.DataFrame, keys: list[Any], by: str, has_default: bool) -> np.ndarray:
    """Per row, the position in ``keys`` of the template for its ``by`` value (``len(keys)``: the default;
    ``len(keys) + 1``: the A/B holdout, which gets no message unless the templates name it)."""
    codes, uniques = pd.factorize(df[by], use_na_sentinel=True)
    lookup = {key: i for i, key in enumerate(keys)}
    fallback = len(keys)
    lookup.setdefault(HOLDOUT, fallback + 1)
    chosen = []
    for value in np.asarray(uniques, dtype=object).tolist():
        try:
            chosen.append(lookup.get(value, fallback))
        except TypeError:  # an unhashable cell never names a template
            chosen.append(fallback)
    per_value = np.asarray([*chosen, fallback], dtype=np.int64)  # code -1 (missing) takes the default
    assigned = per_value[np.asarray(codes, dtype=np.int64)]
    if not has_default and (assigned == fallback).any():
        unmatched = np.flatnonzero(assigned == fallback)
        values = pd.unique(pd.Series(np.asarray(df[by], dtype=object)[unmatched], dtype=object))
        shown = ", ".join("no value" if _is_na(v) else repr(_label(v)) for v in values[:_SHOWN_ROWS])
        raise TemplateError(
            f"no template for {by} {shown} in {_rows(df.index[unmatched])}: add one to the templates "
            f"(keys: {', '.join(map(repr, keys))}) or give default="
        )
    return assigned


def _is_na(value: Any) -> bool:
    """Whether a scalar is a missing value."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _render_by(
    df: pd.DataFrame,
    templates: Mapping[Any, Template],
    *,
    by: str | None,
    default: Any,
    masked: set[str],
) -> tuple[Rendered, np.ndarray]:
    """Render each row with the template for its ``by`` value; returns the rows and each row's template key."""
    if by is None:
        raise TemplateError("several templates need by=<column> (the column whose value picks each row's template)")
    if by not in df.columns:
        raise TemplateError(f"by names a column the frame does not have: {by!r} (columns: {list(df.columns)})")
    if not templates:
        raise TemplateError("templates is empty: give at least one {value: template}")
    keys = list(templates)
    compiled = [compile_template(_source(templates[key], name=key), mask=masked) for key in keys]
    labels: list[Any] = list(keys)
    assigned = _choose(df, keys, by, default is not None)
    if default is not None and not isinstance(default, os.PathLike) and _is_key(default, keys):
        assigned[assigned == len(keys)] = keys.index(default)  # the default is one of the templates
    elif default is not None:
        compiled.append(compile_template(_source(default, name="default"), mask=masked))
        labels.append("default")
    n = len(df)
    content: list[Any] = []
    report: list[Any] = []
    placed: list[np.ndarray] = []
    gsm, blank = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    units, segments = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    for i, template in enumerate(compiled):
        positions = np.flatnonzero(assigned == i)
        used = [name for name in df.columns if name in template.names]
        rows = df[used] if len(used) < len(df.columns) else df  # take only the columns the template uses
        part = _render_one(template, rows if len(positions) == n else rows.iloc[positions], name=labels[i])
        content.append(part.content)
        report.append(part.report)
        placed.append(positions)
        gsm[positions], units[positions] = part.gsm, part.units
        segments[positions], blank[positions] = part.segments, part.blank
    held = np.flatnonzero(assigned == len(keys) + 1)  # holdout rows: planned, never sent, no text
    content.append(repeat("", len(held)))
    report.append(repeat("", len(held)))
    placed.append(held)
    if len(labels) == len(keys):
        labels.append("default")  # keeps the holdout's label at len(keys) + 1
    labels.append(HOLDOUT)
    chosen = np.asarray(labels, dtype=object)[assigned]
    texts = gather(content, placed, n), gather(report, placed, n)
    return Rendered(*texts, gsm, units, segments, blank), chosen


def _is_key(value: Any, keys: list[Any]) -> bool:
    """Whether ``value`` is one of the template keys."""
    try:
        return value in keys
    except (TypeError, ValueError):
        return False


def render_messages(
    df: pd.DataFrame,
    template: Template | Mapping[Any, Template],
    *,
    mask: Iterable[str] | str = (),
    column: str = "content",
    max_parts: int | None = 5,
    by: str | None = None,
    default: Any = None,
) -> pd.DataFrame:
    """Render ``template`` for every row of ``df`` into a copy with the message columns added.

    ``template`` is Jinja text (a path-like is read as UTF-8), rendered in a sandbox where every
    column is a variable. Missing values (NaN, None, NA, NaT) render as empty text and behave as
    undefined for ``|default(...)``; whole floats render without ``.0``; dates render as
    ``YYYY-MM-DD`` unless the template formats them. Outputs using a column of ``mask`` are wrapped
    in ``#ma#`` markers. Added columns: ``column`` (the text sent), ``<column>_report`` (masked areas
    as ``******``), ``encoding``, ``units`` and ``segments``. Warns with :class:`LongMessageWarning`
    above ``max_parts`` parts (None: never), :class:`EmptyMessageWarning` for blank messages and
    :class:`~plasgate_nb.io.NumericTextWarning` for a masked column holding numbers.

    One template per group: ``template`` may map values of the column ``by`` to templates
    (``{"km": tpl_km, "en": tpl_en}, by="language"``); each row renders with the template for its
    value, and a ``template`` column records the key used. A value without a template (or a missing
    value) takes ``default`` (a key of the mapping, or a template of its own, recorded as
    ``"default"``); without ``default`` it raises :class:`TemplateError` naming the values and rows.

    Raises :class:`TemplateError` for a syntax error (naming the line), a mask name that is not a
    column, a variable that is not a column, or a row that fails to render (naming the row label and,
    with several templates, the template's key).

    ``df`` may be a Dask DataFrame: the result is a lazy Dask frame rendered partition by partition;
    long and blank messages are logged on the workers instead of warned (:mod:`plasgate_nb._dask._frames`).
    """
    if is_dask_frame(df):  # partition by partition: plasgate_nb._dask._frames
        from ._dask._frames import render_dask_messages

        return render_dask_messages(df, template, mask=mask, column=column, max_parts=max_parts, by=by, default=default)
    masked = _checked_mask(df, mask)
    warn_numeric_text(df, sorted(masked), role="masked", stacklevel=2)
    out, rendered = _render_frame(df, template, masked=masked, column=column, by=by, default=default)
    _warn(df.index, rendered.segments, rendered.blank, max_parts=max_parts)
    logger.debug("rendered %d messages (%d parts)", len(out), int(rendered.segments.sum()))
    return out


def _checked_mask(df: pd.DataFrame, mask: Iterable[str] | str) -> set[str]:
    """The masked column names; TemplateError for names that are not columns of ``df``."""
    masked = _mask_names(mask)
    unknown = sorted(masked - set(df.columns))
    if unknown:
        raise TemplateError(f"mask names columns the frame does not have: {', '.join(map(repr, unknown))}")
    return masked


def _render_frame(
    df: pd.DataFrame,
    template: Template | Mapping[Any, Template],
    *,
    masked: set[str],
    column: str,
    by: str | None,
    default: Any,
) -> tuple[pd.DataFrame, Rendered]:
    """Render every row of ``df`` into a shallow copy with the message columns (no warnings)."""
    chosen = None
    if isinstance(template, Mapping):
        rendered, chosen = _render_by(df, template, by=by, default=default, masked=masked)
    else:
        if by is not None or default is not None:
            raise TemplateError("by= and default= go with several templates: pass {value: template, ...}")
        rendered = _render_one(compile_template(_source(template), mask=masked), df)
    out = df.copy(deep=False)
    out[column] = pd.Series(rendered.content, index=df.index, dtype="str")
    out[f"{column}_report"] = pd.Series(rendered.report, index=df.index, dtype="str")
    encoding = pc.if_else(pa.array(rendered.gsm, pa.bool_()), scalar("GSM-7"), scalar("UCS-2"))
    out["encoding"] = pd.Series(encoding, index=df.index, dtype="str")
    out["units"] = pd.Series(rendered.units, index=df.index, dtype="int64")
    out["segments"] = pd.Series(rendered.segments, index=df.index, dtype="int64")
    if chosen is not None:
        text_keys = all(isinstance(key, str) for key in chosen.tolist())
        out["template"] = pd.Series(chosen, index=df.index, dtype="str" if text_keys else object)
    return out, rendered


def _warn(index: pd.Index, segments: np.ndarray, blank: np.ndarray, *, max_parts: int | None) -> None:
    """Warn about messages over the part limit and blank messages, naming rows."""
    for category, message in _frame_warnings(index, segments, blank, max_parts=max_parts):
        warnings.warn(message, category, stacklevel=3)


def _frame_warnings(
    index: pd.Index, segments: np.ndarray, blank: np.ndarray, *, max_parts: int | None
) -> list[tuple[type[UserWarning], str]]:
    """The warnings a rendered frame deserves (messages over the part limit, blank messages), naming rows."""
    found: list[tuple[type[UserWarning], str]] = []
    if max_parts is not None:
        long_rows = np.flatnonzero(segments > max_parts)
        if len(long_rows):
            found.append(
                (
                    LongMessageWarning,
                    f"{_rows(index[long_rows])} need more than {max_parts} parts "
                    f"(up to {int(segments.max())}); the gateway may truncate them",
                )
            )
    blank_rows = np.flatnonzero(blank)
    if len(blank_rows):
        found.append((EmptyMessageWarning, f"{_rows(index[blank_rows])} render to empty text and will not be sent"))
    return found


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


def validate_price(value: Any, *, name: str = "price_per_segment") -> float:
    """Return ``value`` as a float if it is a finite number >= 0, else raise ConfigError naming ``name``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number >= 0 (e.g. 0.012), not {value!r}")
    price = float(value)
    if not math.isfinite(price) or price < 0:
        raise ConfigError(f"{name} must be a finite number >= 0 (e.g. 0.012), not {value!r}")
    return price


def estimate_cost(
    df: pd.DataFrame,
    *,
    price_per_segment: float,
    currency: str = "USD",
    column: str = "content",
) -> CostEstimate:
    """Estimate the price of sending a rendered frame: every part is billed ``price_per_segment``.

    Rows with empty content, and rows whose ``audience_status`` (when present) is not ``ok``, are
    not sent and not counted (``skipped``). A price that is not a finite number >= 0 (NaN, inf,
    negative) raises ConfigError. On a Dask DataFrame it computes the frame, one partition at a time.
    """
    if is_dask_frame(df):  # one pass over the partitions: plasgate_nb._dask._frames
        from ._dask._frames import estimate_dask_cost

        return estimate_dask_cost(df, price_per_segment=price_per_segment, currency=currency, column=column)
    price_per_segment = validate_price(price_per_segment)
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


class MessagePreview(pd.DataFrame):
    """A preview table that shows whole messages: never truncated, masked areas highlighted in Jupyter.

    It is a DataFrame (select, filter, ``to_dict`` as usual; what you derive from it is a plain
    DataFrame); only its display differs: no ``...`` in long texts, messages wrapped in their cells, and
    each ``#ma#...#ma#`` area of the sent text and each ``******`` of the report view highlighted.
    """

    _metadata: ClassVar[list[str]] = ["message_column"]
    message_column: str

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame

    def __repr__(self) -> str:
        """The text table, with whole messages and every column."""
        return self.to_string()

    def _repr_html_(self) -> str:
        """The HTML table for Jupyter: whole messages, wrapped, masked areas highlighted."""
        column = getattr(self, "message_column", "content")
        shown = pd.DataFrame(
            {name: [_cell_html(name, value, column) for value in self[name].tolist()] for name in self.columns},
            index=pd.Index([html.escape(str(_label(label))) for label in self.index], name=self.index.name),
        )
        with pd.option_context("display.max_colwidth", None, "display.max_rows", None):
            return shown.to_html(escape=False, na_rep="")


_MARK = '<mark title="{title}" style="background:#ffe58a">{text}</mark>'
_MASKED_AREA = re.compile(re.escape(MASK_MARKER) + ".*?" + re.escape(MASK_MARKER), re.DOTALL)


def _cell_html(name: str, value: Any, column: str) -> str:
    """One preview cell as HTML: messages wrapped and their masked areas marked, other values escaped."""
    if value is None or (not isinstance(value, str) and _is_na(value)):
        return ""
    text = html.escape(str(value), quote=False)
    if name not in (column, f"{column}_report"):
        return text
    if name == column:
        text = _MASKED_AREA.sub(lambda m: _MARK.format(title="masked: ****** in the gateway's report", text=m[0]), text)
    else:
        text = text.replace(REPORT_MASK, _MARK.format(title="a masked area", text=REPORT_MASK))
    return f'<div style="white-space:pre-wrap;text-align:left;min-width:22em">{text}</div>'


def _sample(df: pd.DataFrame, by: str | Sequence[str] | None, column: str) -> pd.DataFrame:
    """The first row of each group (``by``, else ``template``, else ``language``) plus the longest message."""
    pool = df
    if "audience_status" in df.columns and (df["audience_status"] == "ok").any():
        pool = df[df["audience_status"] == "ok"]
    sent = pool[column].fillna("").astype(str).str.len() > 0
    if sent.any():
        pool = pool[sent.to_numpy()]
    if by is None:
        by = [name for name in ("template", "language") if name in df.columns][:1]
    groups = [by] if isinstance(by, str) else list(by)
    if groups:
        positions = np.flatnonzero(~pool.reset_index(drop=True).duplicated(subset=groups, keep="first").to_numpy())
    else:
        positions = np.arange(min(len(pool), _SHOWN_ROWS))
    if len(pool):
        # the most parts, then the most units (units of GSM-7 and UCS-2 texts are not comparable alone)
        longest = int(np.lexsort((-np.arange(len(pool)), pool["units"].to_numpy(), pool["segments"].to_numpy()))[-1])
        if longest not in positions:
            positions = np.append(positions, longest)
    return pool.iloc[positions]


def preview(
    df: pd.DataFrame,
    n: int | None = None,
    *,
    by: str | Sequence[str] | None = None,
    column: str = "content",
) -> MessagePreview:
    """Show whole rendered messages: sent text, report view, encoding, units and parts.

    By default a sample: the first row to be sent of each template (the ``template`` column, else
    each ``language``, or the groups of ``by``), plus the longest message; ``n`` shows the first
    ``n`` rows instead. Rows whose ``audience_status`` is not ``ok``, and blank messages, are left
    out of the sample when other rows remain. The result is a :class:`MessagePreview`: a DataFrame
    whose display never truncates the messages and highlights their masked areas. On a Dask DataFrame
    the same rows are found partition by partition, only those coming back (``n``: the first partitions).
    """
    if is_dask_frame(df):  # the same sample, gathered partition by partition: plasgate_nb._dask._frames
        from ._dask._frames import preview_dask

        return preview_dask(df, n, by=by, column=column)
    report = f"{column}_report"
    _require(df, [column, report, "encoding", "units", "segments"])
    if by is not None:
        missing = [name for name in ([by] if isinstance(by, str) else by) if name not in df.columns]
        if missing:
            raise OptionError(f"by names columns the frame does not have: {', '.join(map(repr, missing))}")
    rows = df.head(n) if n is not None else _sample(df, by, column)
    groups = [by] if isinstance(by, str) else list(by or ())
    shown = [name for name in ("msisdn", *groups, "template", "language") if name in df.columns]
    shown = list(dict.fromkeys(shown))
    out = MessagePreview(rows[[*shown, column, report, "encoding", "units", "segments"]].copy())
    out.message_column = column
    return out

"""The vectorized renderer: each template piece once per distinct value, rows assembled in Arrow.

Rows of a campaign repeat a lot (cities, dates, names) and a personalized message is a handful of
independent pieces. Each piece is rendered (and measured: GSM-7 or not, units) once per distinct
combination of the columns it uses; a plain ``{{ name }}`` over an Arrow text column (and, on ASCII
text, ``{{ name|upper }}`` or ``|lower``) is used as it is (see :mod:`plasgate_nb._columns`). Rows
are assembled by Arrow's element-wise concatenation, and their encoding, units and parts are summed
from the pieces with numpy. Rows where data holds a ``#`` next to a masked area, and templates with
literal ``#ma#`` in their text, go through the exact per-text path of :func:`plasgate_nb._masking.finish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._columns import TEXT, Measures, Part, TextColumn, arrow_text, greedy_parts, join, measure, scalar, take_texts
from ._controls import describe, refused
from ._masking import REPORT_MASK, S_CLOSE, S_OPEN, SENTINELS, finish, mask_views
from ._template import CompiledTemplate, Piece, missing, to_template_value, to_text
from .segments import MASK_MARKER, PART_LIMIT, SINGLE_LIMIT, count_segments

__all__ = ["RenderFailure", "Rendered", "render_frame"]

_GSM_SINGLE, _GSM_PART = SINGLE_LIMIT["GSM-7"], PART_LIMIT["GSM-7"]
_UCS_SINGLE, _UCS_PART = SINGLE_LIMIT["UCS-2"], PART_LIMIT["UCS-2"]


@dataclass
class RenderFailure:
    """The first row (by position) where a piece failed to render, and why."""

    position: int
    error: Exception


@dataclass
class Rendered:
    """Rendered rows: sent text and report view (Arrow text), GSM-7 flag, units, parts, blank flag."""

    content: pa.Array | pa.ChunkedArray
    report: pa.Array | pa.ChunkedArray
    gsm: np.ndarray
    units: np.ndarray
    segments: np.ndarray
    blank: np.ndarray


class _Columns:
    """Factorized columns of the frame, converted lazily for templates and for text."""

    def __init__(self, df: pd.DataFrame) -> None:
        self._df = df
        self._codes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._values: dict[str, list[Any]] = {}
        self._texts: dict[str, list[str]] = {}
        self._arrow: dict[str, pa.Array | None] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._df.columns

    def factorized(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes (-1 for missing) and distinct values of a column, in order of appearance."""
        if name not in self._codes:
            codes, uniques = pd.factorize(self._df[name], use_na_sentinel=True)
            self._codes[name] = (np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object))
        return self._codes[name]

    def arrow(self, name: str) -> pa.Array | None:
        """The column as Arrow text when it is Arrow-backed text (see :func:`arrow_text`), else None."""
        if name not in self._arrow:
            self._arrow[name] = arrow_text(self._df[name])
        return self._arrow[name]

    def values(self, name: str) -> list[Any]:
        """Template values of the distinct entries, with the missing value last (code -1)."""
        if name not in self._values:
            uniques = self.factorized(name)[1]
            self._values[name] = [*(to_template_value(u) for u in uniques), missing(name)]
        return self._values[name]

    def texts(self, name: str) -> list[str]:
        """Rendered text of the distinct entries, with empty text last (code -1)."""
        if name not in self._texts:
            uniques = self.factorized(name)[1]
            listed = uniques.tolist()
            if all(type(u) is str for u in listed) and not any(s in "".join(listed) for s in SENTINELS):
                self._texts[name] = [*listed, ""]
            else:
                self._texts[name] = [to_text(v) for v in self.values(name)]
        return self._texts[name]


@dataclass
class _PieceViews:
    """One piece, evaluated per distinct input: row codes (None when constant) and per-entry views."""

    codes: np.ndarray | None
    raw_texts: list[str] | None  # None: a masked column, wrapped on demand
    content: list[str]
    report: list[str]
    handset: list[str]
    _arrays: dict[int, pa.Array] = field(default_factory=dict, repr=False)

    @property
    def raw(self) -> list[str]:
        """The piece as rendered, with sentinels around masked areas."""
        if self.raw_texts is None:
            self.raw_texts = [S_OPEN + t + S_CLOSE if t else "" for t in self.handset]
        return self.raw_texts

    def arrow(self, view: str, rows: np.ndarray | None = None) -> list[Part]:
        """The ``content``, ``report``, ``raw`` or ``handset`` view of each row (or of ``rows``)."""
        texts: list[str] = getattr(self, view)
        if self.codes is None:
            return [scalar(texts[0])]
        if rows is not None:
            return [take_texts(texts, self.codes[rows])]
        if id(texts) not in self._arrays:  # views sharing one list share one array
            self._arrays[id(texts)] = take_texts(texts, self.codes)
        return [self._arrays[id(texts)]]

    def refused(self) -> int | None:
        """The first row holding a refused control character (checked once per distinct value)."""
        bad = refused(self.handset)
        if not bad:
            return None
        return 0 if self.codes is None else int(np.flatnonzero(np.isin(self.codes, bad))[0])

    def measures(self, n: int, *, blank: bool = True) -> Measures:
        """Per row: the measures of each distinct value, taken by the row codes (a constant: one value)."""
        del blank  # measured per distinct value: cheap either way
        return tuple(_take(values, self.codes) for values in measure(self.handset))  # type: ignore[return-value]


_Views = _PieceViews | TextColumn


def _combine(columns: _Columns, names: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes of each row's distinct combination of ``names`` and the first row of each combination."""
    combined = np.zeros(n, dtype=np.int64)
    for name in names:
        codes, uniques = columns.factorized(name)
        combined, _ = pd.factorize(combined * (len(uniques) + 1) + (codes + 1))
        combined = np.asarray(combined, dtype=np.int64)
    count = int(combined.max()) + 1 if n else 0
    first = np.empty(count, dtype=np.int64)
    first[combined[::-1]] = np.arange(n - 1, -1, -1, dtype=np.int64)
    return combined, first


def _evaluate(piece: Piece, columns: _Columns, n: int) -> tuple[np.ndarray | None, list[str], RenderFailure | None]:
    """Render a Jinja piece once per distinct combination of the columns it uses."""
    template = piece.template
    if template is None:  # text pieces never get here
        raise TypeError("a Jinja piece needs a compiled template")
    names = [name for name in piece.names if name in columns]
    if not names:
        if not n:  # no row ever renders it
            return None, [""], None
        try:
            return None, [template.render()], None
        except Exception as exc:  # every template failure is reported with its row
            return None, [""], RenderFailure(0, exc)
    combined, first = _combine(columns, names, n)
    row_codes = [columns.factorized(name)[0] for name in names]
    values = [columns.values(name) for name in names]
    render = template.render
    out: list[str] = []
    for row in first.tolist():
        context = {name: vals[codes[row]] for name, vals, codes in zip(names, values, row_codes, strict=True)}
        try:
            out.append(render(context))
        except Exception as exc:  # every template failure is reported with its row
            return combined, out, RenderFailure(row, exc)
    return combined, out, None


def _views(piece: Piece, columns: _Columns, n: int) -> tuple[_Views, RenderFailure | None]:
    """Evaluate a piece and derive its sent, report and handset views."""
    if piece.kind == "text":
        text = piece.text
        return _PieceViews(None, [text], *map(list, zip(mask_views(text), strict=True))), None
    if piece.kind == "column" and piece.names[0] in columns:
        values = columns.arrow(piece.names[0])
        column = TextColumn(values, masked=piece.masked).cased(piece.filters) if values is not None else None
        if column is not None:
            return column, None
    if piece.kind == "column" and piece.names[0] in columns and not piece.filters:
        codes = columns.factorized(piece.names[0])[0]
        texts = columns.texts(piece.names[0])
        if not piece.masked:
            return _PieceViews(codes, texts, texts, texts, texts), None
        content = [f"{MASK_MARKER}{t}{MASK_MARKER}" if t else "" for t in texts]
        report = [REPORT_MASK if t else "" for t in texts]
        return _PieceViews(codes, None, content, report, texts), None
    codes, raw, failure = _evaluate(piece, columns, n)
    if not piece.sentinels:
        return _PieceViews(codes, raw, raw, raw, raw), failure
    views = [mask_views(r) for r in raw]
    content, report, handset = ([v[i] for v in views] for i in range(3))
    return _PieceViews(codes, raw, content, report, handset), failure


def _control_failure(piece: Piece, views: _Views, n: int) -> RenderFailure | None:
    """The first row whose piece holds a refused control character."""
    position = views.refused() if n else None
    if position is None:
        return None
    (part,) = views.arrow("handset", np.asarray([position], dtype=np.int64))
    text = part.as_py() if isinstance(part, pa.Scalar) else part[0].as_py()
    source = f" (from {', '.join(map(repr, piece.names))})" if piece.names else " (in the template text)"
    return RenderFailure(
        position,
        ValueError(
            f"the message holds {describe(text)}{source}; only tab, newline, carriage return and form feed may be sent"
        ),
    )


def _take(values: np.ndarray, codes: np.ndarray | None) -> Any:
    """Per-row values of a per-entry array (a constant piece: its one value, numpy broadcasts it)."""
    return values[0] if codes is None else values[codes]


def _assemble(evaluated: list[_Views], view: str, n: int, rows: np.ndarray | None = None) -> pa.Array:
    """Join one view of every piece, for every row (or for ``rows``)."""
    count = n if rows is None else len(rows)
    joined = join([part for v in evaluated for part in v.arrow(view, rows)], count)
    return joined.combine_chunks() if isinstance(joined, pa.ChunkedArray) else joined


def render_frame(compiled: CompiledTemplate, df: pd.DataFrame) -> tuple[Rendered | None, RenderFailure | None]:
    """Render every row of ``df``; returns the result, or the first failure by row position."""
    n = len(df)
    columns = _Columns(df)
    evaluated: list[_Views] = []
    failures: list[RenderFailure] = []
    for piece in compiled.pieces:
        views, failure = _views(piece, columns, n)
        evaluated.append(views)
        if failure is None:
            failure = _control_failure(piece, views, n)
        if failure is not None:
            failures.append(failure)
    if failures:
        return None, min(failures, key=lambda f: f.position)
    if compiled.toggles:
        return _render_exact(_assemble(evaluated, "raw", n)), None
    content = _assemble(evaluated, "content", n)
    report = _assemble(evaluated, "report", n)
    gsm = np.ones(n, dtype=bool)
    gsm_units, ucs_units = np.zeros(n, np.int64), np.zeros(n, np.int64)
    ext, astral, blank, hashy = np.zeros(n, bool), np.zeros(n, bool), np.ones(n, bool), np.zeros(n, bool)
    for views in sorted(evaluated, key=lambda v: isinstance(v, TextColumn)):  # constants first: blank is cheap
        m_gsm, m_gu, m_uu, m_ext, m_astral, m_blank, m_hashy = views.measures(n, blank=bool(blank.any()))
        gsm &= m_gsm
        gsm_units += m_gu
        ucs_units += m_uu
        ext |= m_ext
        astral |= m_astral
        blank &= m_blank
        hashy |= m_hashy
    units = np.where(gsm, gsm_units, ucs_units)
    single = np.where(gsm, _GSM_SINGLE, _UCS_SINGLE)
    part = np.where(gsm, _GSM_PART, _UCS_PART)
    segments = np.where(units <= single, 1, -(-units // part))
    long = (units > single) & np.where(gsm, ext, astral)  # a double-cost character may sit on a cut
    redo: list[int] = []
    if hashy.any():  # data holds '#': rebuild those rows exactly when a '#ma' could touch a marker
        rows = np.flatnonzero(hashy)
        raw = _assemble(evaluated, "raw", n, rows).to_pylist()
        redo = [int(i) for i, text in zip(rows.tolist(), raw, strict=True) if "#ma" in text]
        if redo:
            where = np.zeros(n, dtype=bool)
            where[redo] = True
            finished = [finish(text) for i, text in zip(rows.tolist(), raw, strict=True) if where[i]]
            content = pc.replace_with_mask(content, pa.array(where), pa.array([f[0] for f in finished], TEXT))
            report = pc.replace_with_mask(report, pa.array(where), pa.array([f[1] for f in finished], TEXT))
            long[redo] = False
    for i, text in zip(redo, content.take(np.asarray(redo, dtype=np.int64)).to_pylist(), strict=True):
        counted = count_segments(text)  # finished anew: measured anew
        gsm[i], units[i], segments[i] = counted.encoding == "GSM-7", counted.units, counted.segments
    if long.any():
        rows = np.flatnonzero(long)
        handset = _assemble(evaluated, "handset", n, None if len(rows) == n else rows)  # what count_segments counts
        segments[rows] = greedy_parts(handset, gsm[rows])
    return Rendered(content, report, gsm, units, segments.astype(np.int64), blank), None


def _render_exact(raw: pa.Array) -> Rendered:
    """The exact path for templates with literal markers: finish and count each distinct text."""
    encoded = raw.dictionary_encode()
    codes = np.asarray(encoded.indices.to_numpy(), dtype=np.int64)
    finished = [finish(text) for text in encoded.dictionary.to_pylist()]
    counts = [count_segments(sent) for sent, _ in finished]
    sent = pa.array([f[0] for f in finished], TEXT).take(codes)
    report = pa.array([f[1] for f in finished], TEXT).take(codes)
    gsm = np.asarray([c.encoding == "GSM-7" for c in counts], dtype=bool)[codes]
    units = np.asarray([c.units for c in counts], dtype=np.int64)[codes]
    segments = np.asarray([c.segments for c in counts], dtype=np.int64)[codes]
    blank = np.asarray([not s.replace(MASK_MARKER, "").strip() for s, _ in finished], dtype=bool)[codes]
    return Rendered(sent, report, gsm, units, segments, blank)

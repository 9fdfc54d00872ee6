"""The vectorized renderer: each template piece once per distinct value, rows assembled by joining.

Rows of a campaign repeat a lot (cities, dates, names) and a personalized message is a handful of
independent pieces. Each piece is rendered (and measured: GSM-7 or not, units) once per distinct
combination of the columns it uses; rows are then assembled by indexing and joining strings, and
their encoding, units and parts are summed from the pieces with numpy. Rows where data holds a ``#``
next to a masked area, and templates with literal ``#ma#`` in their text, go through the exact
per-text path of :func:`plasgate_nb._masking.finish`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._controls import describe, refused
from ._masking import REPORT_MASK, S_CLOSE, S_OPEN, SENTINELS, finish, mask_views
from ._template import CompiledTemplate, Piece, missing, to_template_value, to_text
from .segments import DELETE_GSM_BASIC, GSM_EXTENSION_CHARS, MASK_MARKER, PART_LIMIT, SINGLE_LIMIT, count_segments

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
    """Rendered rows: sent text, report view, GSM-7 flag, units, parts, blank flag."""

    content: list[str]
    report: list[str]
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

    def __contains__(self, name: str) -> bool:
        return name in self._df.columns

    def factorized(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes (-1 for missing) and distinct values of a column, in order of appearance."""
        if name not in self._codes:
            codes, uniques = pd.factorize(self._df[name], use_na_sentinel=True)
            self._codes[name] = (np.asarray(codes, dtype=np.int64), np.asarray(uniques, dtype=object))
        return self._codes[name]

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

    @property
    def raw(self) -> list[str]:
        """The piece as rendered, with sentinels around masked areas."""
        if self.raw_texts is None:
            self.raw_texts = [S_OPEN + t + S_CLOSE if t else "" for t in self.handset]
        return self.raw_texts


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


def _views(piece: Piece, columns: _Columns, n: int) -> tuple[_PieceViews, RenderFailure | None]:
    """Evaluate a piece and derive its sent, report and handset views."""
    if piece.kind == "text":
        text = piece.text
        return _PieceViews(None, [text], *map(list, zip(mask_views(text), strict=True))), None
    if piece.kind == "column" and piece.names[0] in columns:
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


def _control_failure(piece: Piece, views: _PieceViews, n: int) -> RenderFailure | None:
    """The first row whose piece holds a refused control character (checked once per distinct value)."""
    bad = refused(views.handset)
    if not bad or not n:
        return None
    position = 0 if views.codes is None else int(np.flatnonzero(np.isin(views.codes, bad))[0])
    text = views.handset[0 if views.codes is None else views.codes[position]]
    source = f" (from {', '.join(map(repr, piece.names))})" if piece.names else " (in the template text)"
    return RenderFailure(
        position,
        ValueError(
            f"the message holds {describe(text)}{source}; only tab, newline, carriage return and form feed may be sent"
        ),
    )


def _measure(texts: list[str]) -> tuple[np.ndarray, ...]:
    """Per text: GSM-7?, GSM units, UCS-2 units, GSM double-cost chars?, astral chars?, blank?, has '#'?"""
    count = len(texts)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=count)
    joined = "\n".join(texts)
    hashy = np.zeros(count, dtype=bool)
    if "#" in joined:
        hashy = np.fromiter(("#" in t for t in texts), dtype=bool, count=count)
    blank = (lengths == 0) | np.fromiter(map(str.isspace, texts), dtype=bool, count=count)
    if not joined.translate(DELETE_GSM_BASIC):  # the common case: plain GSM-7, one septet per character
        no = np.zeros(count, dtype=bool)
        return np.ones(count, dtype=bool), lengths, lengths, no, no, blank, hashy
    gsm, gsm_units, ucs_units = np.ones(count, bool), lengths.copy(), lengths.copy()
    ext, astral = np.zeros(count, bool), np.zeros(count, bool)
    for i, text in enumerate(texts):
        rest = text.translate(DELETE_GSM_BASIC)
        if not rest:
            continue
        if all(ch in GSM_EXTENSION_CHARS for ch in rest):
            gsm_units[i] += len(rest)
            ext[i] = True
        else:
            gsm[i] = False
            if not text.isascii():
                ucs_units[i] = len(text.encode("utf-16-le")) // 2
                astral[i] = ucs_units[i] != len(text)
    return gsm, gsm_units, ucs_units, ext, astral, blank, hashy


def _take(values: np.ndarray, codes: np.ndarray | None, n: int) -> np.ndarray:
    """Per-row values of a per-entry array (constant pieces broadcast)."""
    return np.full(n, values[0]) if codes is None else values[codes]


def _joiner(count: int) -> Any:
    """A compiled function building one f-string per row out of ``count`` per-row sequences."""
    args = [f"x{i}" for i in range(count)]
    body = "".join("{" + a + "}" for a in args)
    source = f'def join(columns):\n    return [f"{body}" for {", ".join(args)}, in zip(*columns)]\n'
    namespace: dict[str, Any] = {}
    exec(compile(source, "<plasgate_nb join>", "exec"), namespace)  # only generated names, no data
    return namespace["join"]


def _join(parts: list[list[str]], codes: list[np.ndarray | None], n: int) -> list[str]:
    """Assemble each row by joining its pieces (constant pieces are folded, not repeated)."""
    columns: list[list[str]] = []
    prefix = ""  # constants are folded into their neighbours
    for texts, row_codes in zip(parts, codes, strict=True):
        if row_codes is None:
            if columns:
                columns.append([texts[0]] * n)
            else:
                prefix += texts[0]
        else:
            columns.append(np.asarray(texts, dtype=object)[row_codes].tolist())
    if not columns:
        return [prefix] * n
    if prefix:
        columns.insert(0, [prefix] * n)
    return _joiner(len(columns))(columns)


def render_frame(compiled: CompiledTemplate, df: pd.DataFrame) -> tuple[Rendered | None, RenderFailure | None]:
    """Render every row of ``df``; returns the result, or the first failure by row position."""
    n = len(df)
    columns = _Columns(df)
    evaluated: list[_PieceViews] = []
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
    codes = [v.codes for v in evaluated]
    if compiled.toggles:
        return _render_exact(_join([v.raw for v in evaluated], codes, n)), None
    content = _join([v.content for v in evaluated], codes, n)
    report = _join([v.report for v in evaluated], codes, n)
    gsm = np.ones(n, dtype=bool)
    gsm_units, ucs_units = np.zeros(n, np.int64), np.zeros(n, np.int64)
    ext, astral, blank, hashy = np.zeros(n, bool), np.zeros(n, bool), np.ones(n, bool), np.zeros(n, bool)
    for views in evaluated:
        m_gsm, m_gu, m_uu, m_ext, m_astral, m_blank, m_hashy = _measure(views.handset)
        gsm &= _take(m_gsm, views.codes, n)
        gsm_units += _take(m_gu, views.codes, n)
        ucs_units += _take(m_uu, views.codes, n)
        ext |= _take(m_ext, views.codes, n)
        astral |= _take(m_astral, views.codes, n)
        blank &= _take(m_blank, views.codes, n)
        hashy |= _take(m_hashy, views.codes, n)
    units = np.where(gsm, gsm_units, ucs_units)
    single = np.where(gsm, _GSM_SINGLE, _UCS_SINGLE)
    part = np.where(gsm, _GSM_PART, _UCS_PART)
    segments = np.where(units <= single, 1, -(-units // part))
    exact = np.flatnonzero((units > single) & np.where(gsm, ext, astral))
    if hashy.any():  # data holds '#': rebuild those rows exactly when a '#ma' could touch a marker
        rows = np.flatnonzero(hashy)
        raw = _join([v.raw for v in evaluated], [None if c is None else c[rows] for c in codes], len(rows))
        redo = [(int(i), text) for i, text in zip(rows, raw, strict=True) if "#ma" in text]
        for i, text in redo:
            content[i], report[i] = finish(text)
        exact = np.union1d(exact, np.asarray([i for i, _ in redo], dtype=np.int64))
    for i in exact.tolist():
        counted = count_segments(content[i])
        gsm[i], units[i], segments[i] = counted.encoding == "GSM-7", counted.units, counted.segments
    return Rendered(content, report, gsm, units, segments.astype(np.int64), blank), None


def _render_exact(raw: list[str]) -> Rendered:
    """The exact path for templates with literal markers: finish and count each distinct text."""
    codes, uniques = pd.factorize(pd.Series(raw, dtype=object))
    finished = [finish(text) for text in uniques]
    counts = [count_segments(sent) for sent, _ in finished]
    sent = np.asarray([f[0] for f in finished], dtype=object)[codes]
    report = np.asarray([f[1] for f in finished], dtype=object)[codes]
    gsm = np.asarray([c.encoding == "GSM-7" for c in counts], dtype=bool)[codes]
    units = np.asarray([c.units for c in counts], dtype=np.int64)[codes]
    segments = np.asarray([c.segments for c in counts], dtype=np.int64)[codes]
    blank = np.asarray([not s.replace(MASK_MARKER, "").strip() for s, _ in finished], dtype=bool)[codes]
    return Rendered(sent.tolist(), report.tolist(), gsm, units, segments, blank)

"""Text columns as Arrow arrays: rendered, measured and joined per row without a Python string per row.

A plain ``{{ name }}`` over a text column backed by Arrow (pandas' ``str`` dtype) renders each row's
value as it is: missing values as empty text, sentinel characters removed. Here such a column stays
an Arrow array end to end: its masked views are built with Arrow compute (``|upper`` and ``|lower``
too, on ASCII text where Arrow's casing is Python's), and one histogram of its UTF-8 bytes tells
whether it can hold a refused control character, a ``#``, or anything outside the GSM 03.38 basic
table; only then do RE2 passes find the rows, and only rows outside the basic table are measured in
Python, once per distinct value. Rows are assembled by :func:`join` (Arrow's element-wise
concatenation), and :func:`greedy_parts` counts the parts of long texts with double-cost characters
for all rows at once, so a million messages never exist as a million Python strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ._controls import TEXT_ALLOWED
from ._masking import REPORT_MASK, S_CLOSE, S_OPEN, SENTINELS
from .segments import DELETE_GSM_BASIC, GSM_EXTENSION_CHARS, MASK_MARKER, PART_LIMIT

__all__ = [
    "TEXT",
    "TextColumn",
    "arrow_text",
    "gather",
    "greedy_parts",
    "join",
    "measure",
    "repeat",
    "scalar",
    "take_texts",
]

TEXT = pa.large_string()
"""The Arrow type of every text built here (pandas' ``str`` dtype stores large strings)."""

Part = pa.Array | pa.ChunkedArray | pa.Scalar
"""A per-row piece of text: an array, or a scalar shared by every row."""

Measures = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per text: GSM-7?, GSM units, UCS-2 units, GSM double-cost chars?, astral chars?, blank?, has '#'?"""


def _char_class(chars: Sequence[str], *, negate: bool = False) -> str:
    """An RE2 character class of exactly ``chars`` (every one escaped as a code point)."""
    return "[" + ("^" if negate else "") + "".join(f"\\x{{{ord(ch):x}}}" for ch in chars) + "]"


_BASIC = frozenset(chr(code) for code in DELETE_GSM_BASIC)
_NOT_BASIC = frozenset(chr(code) for code in range(0x80)) - _BASIC
_NOT_GSM_BASIC = _char_class(sorted(_BASIC), negate=True)
_SENTINEL = _char_class(SENTINELS)
_REFUSED = r"[\x{0}-\x{8}\x{b}\x{e}-\x{1f}\x{7f}-\x{9f}]"  # see _controls: Cc but tab, LF, CR, FF


@cache
def _blank_pattern() -> str:
    """A pattern matching texts that are empty or all whitespace, as ``str.isspace`` understands it."""
    spaces = [chr(code) for code in range(0x10000) if chr(code).isspace()]
    return r"\A" + _char_class(spaces) + r"*\z"


def scalar(text: str) -> pa.Scalar:
    """An Arrow text scalar."""
    return pa.scalar(text, TEXT)


def repeat(text: str, count: int) -> pa.Array:
    """An Arrow array holding ``text`` ``count`` times."""
    return pa.repeat(scalar(text), count)


def _numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean or integer Arrow array as numpy (no nulls here)."""
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool if pa.types.is_boolean(array.type) else np.int64)


def arrow_text(series: pd.Series) -> pa.Array | None:
    """The values of a text column as an Arrow array, missing values as empty text.

    None unless the column is Arrow-backed text (then the values are used as they are, without a
    Python object per row); other columns take the per-distinct-value path.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        if not str(dtype.storage).startswith("pyarrow"):
            return None
    elif not (
        isinstance(dtype, pd.ArrowDtype)
        and (pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype))
    ):
        return None
    values = pa.array(series.array)
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.cast(TEXT)
    return pc.fill_null(values, scalar("")) if values.null_count else values


def measure(texts: list[str]) -> Measures:
    """Measure each text (GSM-7?, units in both encodings, double-cost or astral chars, blank, '#')."""
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


def _byte_counts(values: pa.Array) -> np.ndarray:
    """How many times each byte value occurs in the UTF-8 data of ``values`` (one pass, no Python per row)."""
    offsets_buffer, data_buffer = values.buffers()[1:3]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    if data_buffer is None or not len(offsets) or offsets[-1] == offsets[0]:
        return np.zeros(256, dtype=np.int64)
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0] : offsets[-1]]
    return np.bincount(data, minlength=256)


_ASCII_NOT_GSM_BASIC = np.asarray([code < 0x80 and chr(code) in _NOT_BASIC for code in range(256)])
_ASCII_REFUSED = np.asarray([(code < 0x20 or code == 0x7F) and chr(code) not in TEXT_ALLOWED for code in range(256)])
_C1_LEAD = 0xC2  # U+0080..U+009F (C1 controls) start with this byte in UTF-8
_SENTINEL_LEAD = 0xEE  # U+E000..U+E002 start with this byte in UTF-8
_NON_ASCII = np.arange(256) >= 0x80


class TextColumn:
    """A plain ``{{ name }}`` over an Arrow text column: per-row views and measures, masked or not."""

    def __init__(self, text: pa.Array, *, masked: bool) -> None:
        counts = _byte_counts(text)
        if counts[_SENTINEL_LEAD] and pc.any(pc.match_substring_regex(text, _SENTINEL)).as_py():
            text = pc.replace_substring_regex(text, _SENTINEL, "")  # data never carries sentinels
            counts = _byte_counts(text)
        self.text = text  # what the handset shows: no nulls, no sentinels
        self.masked = masked
        self._counts = counts
        self.ascii = not self._counts[_NON_ASCII].any()
        self._lengths: np.ndarray | None = None

    def cased(self, filters: Sequence[str]) -> TextColumn | None:
        """This column through case filters (``upper``, ``lower``); None when that would not be exact.

        Arrow's ASCII casing equals Python's on ASCII text only (``"ß".upper()`` is ``"SS"``).
        """
        if not filters:
            return self
        if not self.ascii:
            return None
        text = self.text
        for name in filters:
            text = {"upper": pc.ascii_upper, "lower": pc.ascii_lower}[name](text)
        return TextColumn(text, masked=self.masked)

    @property
    def lengths(self) -> np.ndarray:
        """Characters per row (code points: what ``len`` counts)."""
        if self._lengths is None:
            if self.ascii:
                offsets = np.frombuffer(self.text.buffers()[1], dtype=np.int64)
                self._lengths = np.diff(offsets[self.text.offset : self.text.offset + len(self.text) + 1])
            else:
                self._lengths = _numpy(pc.utf8_length(self.text))
        return self._lengths

    def arrow(self, view: str, rows: np.ndarray | None = None) -> list[Part]:
        """The ``content``, ``report``, ``raw`` (sentinels) or ``handset`` view of each row (or of ``rows``)."""
        text = self.text if rows is None else self.text.take(rows)
        if not self.masked or view == "handset":
            return [text]
        lengths = self.lengths if rows is None else self.lengths[rows]
        left, right = (S_OPEN, S_CLOSE) if view == "raw" else (MASK_MARKER, MASK_MARKER)
        if lengths.all():  # every row has a value: constant markers, folded into their neighbours
            return [scalar(REPORT_MASK)] if view == "report" else [scalar(left), text, scalar(right)]
        empty = pa.array(lengths == 0)  # an empty masked value adds no area
        if view == "report":
            return [pc.if_else(empty, scalar(""), scalar(REPORT_MASK))]
        return [pc.if_else(empty, scalar(""), join([scalar(left), text, scalar(right)], len(text)))]

    def refused(self) -> int | None:
        """The first row holding a refused control character, if any."""
        if not self._counts[_ASCII_REFUSED].any() and not self._counts[_C1_LEAD]:
            return None
        bad = pc.match_substring_regex(self.text, _REFUSED)
        if not pc.any(bad).as_py():
            return None
        return int(np.flatnonzero(_numpy(bad))[0])

    def measures(self, n: int, *, blank: bool = True) -> Measures:
        """Per row: the measures of :func:`measure`, vectorized; Python only for non-basic rows.

        With ``blank=False`` the blank flags are not computed (all false).
        """
        text, counts = self.text, self._counts
        lengths = self.lengths
        hashy = _numpy(pc.match_substring(text, "#")) if counts[ord("#")] else np.zeros(n, bool)
        blanks = np.zeros(n, bool)
        if blank:
            blanks = _numpy(pc.match_substring_regex(text, _blank_pattern()))
        if self.ascii and not counts[_ASCII_NOT_GSM_BASIC].any():  # GSM-7, one septet per character
            return np.ones(n, bool), lengths, lengths, np.zeros(n, bool), np.zeros(n, bool), blanks, hashy
        gsm, gsm_units, ucs_units = np.ones(n, bool), lengths.copy(), lengths.copy()
        ext, astral = np.zeros(n, bool), np.zeros(n, bool)
        other = pc.match_substring_regex(text, _NOT_GSM_BASIC)
        if pc.any(other).as_py():
            rows = np.flatnonzero(_numpy(other))
            encoded = text.take(rows).dictionary_encode()
            codes = _numpy(encoded.indices)
            measured = measure(encoded.dictionary.to_pylist())
            for target, per_value in zip((gsm, gsm_units, ucs_units, ext, astral), measured[:5], strict=True):
                target[rows] = per_value[codes]
        return gsm, gsm_units, ucs_units, ext, astral, blanks, hashy


def join(parts: list[Part], count: int) -> pa.Array | pa.ChunkedArray:
    """Concatenate per-row parts (arrays, or scalars shared by every row) into ``count`` texts."""
    folded: list[Part] = []
    for part in parts:  # adjacent constants are folded into one
        if isinstance(part, pa.Scalar) and folded and isinstance(folded[-1], pa.Scalar):
            folded[-1] = scalar(folded[-1].as_py() + part.as_py())
        else:
            folded.append(part)
    if all(isinstance(part, pa.Scalar) for part in folded):
        return repeat("".join(part.as_py() for part in folded), count)
    if len(folded) == 1:
        return folded[0]
    return pc.binary_join_element_wise(*folded, scalar(""))


def gather(parts: list[pa.Array | pa.ChunkedArray], positions: list[np.ndarray], n: int) -> pa.ChunkedArray:
    """Put the texts of ``parts`` (each for its ``positions``) back in row order."""
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.concatenate([*positions, np.zeros(0, np.int64)])] = np.arange(n, dtype=np.int64)
    chunks = [chunk for part in parts for chunk in (part.chunks if isinstance(part, pa.ChunkedArray) else [part])]
    return pa.chunked_array(chunks, type=TEXT).take(inverse)


def take_texts(texts: list[str], codes: np.ndarray) -> pa.Array:
    """Per-row texts from per-entry ``texts`` (a code of -1 takes the last entry)."""
    indices = np.where(codes < 0, codes + len(texts), codes)
    return pa.array(texts, TEXT).take(indices)


_ESCAPED = np.zeros(max(map(ord, GSM_EXTENSION_CHARS)) + 2, dtype=bool)  # by code point; the last one: any other
_ESCAPED[[ord(ch) for ch in GSM_EXTENSION_CHARS]] = True


def greedy_parts(texts: pa.Array, gsm: np.ndarray, *, batch_chars: int = 1 << 21) -> np.ndarray:
    """Count the parts of long texts with double-cost characters, all texts at once.

    Each text (markers already removed) is split greedily as :func:`plasgate_nb.segments.split_parts`
    does: a part takes characters while they fit in 153 septets (GSM-7, ``gsm`` true; escapes cost 2)
    or 67 UTF-16 units (astral characters cost 2), so no escape or surrogate pair is ever split. Texts
    go in batches of about ``batch_chars`` characters, read from the Arrow data without a Python
    string per text.
    """
    count = len(texts)
    lengths = _numpy(pc.utf8_length(texts)) if count else np.zeros(0, dtype=np.int64)
    before = np.concatenate([[0], np.cumsum(lengths)])
    parts = np.ones(count, dtype=np.int64)
    start = 0
    while start < count:
        stop = max(int(np.searchsorted(before, before[start] + batch_chars, side="right")) - 1, start + 1)
        parts[start:stop] = _greedy(texts.slice(start, stop - start), lengths[start:stop], gsm[start:stop])
        start = stop
    return parts


def _greedy(texts: pa.Array, lengths: np.ndarray, gsm: np.ndarray) -> np.ndarray:
    """Greedy part counts of a batch: one increasing cumulative cost, one ``searchsorted`` per part."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[texts.offset : texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    joined = str(memoryview(data)[offsets[0] : offsets[-1]], "utf-8") if data is not None else ""
    points = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    escaped = _ESCAPED[np.minimum(points, len(_ESCAPED) - 1)]
    double = np.where(np.repeat(gsm, lengths), escaped, points > 0xFFFF)
    cost = np.zeros(len(points) + 1, dtype=np.int64)  # cost[i]: the cost of the characters before i
    np.cumsum(double, out=cost[1:])
    cost[1:] += np.arange(1, len(points) + 1)
    limit = np.where(gsm, PART_LIMIT["GSM-7"], PART_LIMIT["UCS-2"])
    parts = np.ones(len(lengths), dtype=np.int64)
    at = starts.copy()
    active = np.flatnonzero(cost[ends] - cost[starts] > limit)  # texts that need another cut
    while len(active):
        cut = np.searchsorted(cost, cost[at[active]] + limit[active], side="right") - 1
        at[active] = cut
        parts[active] += 1
        active = active[cost[ends[active]] - cost[cut] > limit[active]]
    return parts

"""GSM 03.38 / UCS-2 encoding detection, segment counting and splitting (DESIGN.md section 4).

Shared by composition (cost preview), the SMPP client and the simulator (billing), so that all three
agree on what a message costs. Masking markers (``#ma#``) are removed before anything is counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

__all__ = [
    "DELETE_GSM_BASIC",
    "GSM7",
    "GSM_EXTENSION_CHARS",
    "MASK_MARKER",
    "PART_LIMIT",
    "SINGLE_LIMIT",
    "UCS2",
    "SegmentCount",
    "count_segments",
    "decode_gsm7",
    "encode_gsm7",
    "is_gsm7",
    "split_parts",
    "strip_markers",
]

MASK_MARKER = "#ma#"
GSM7: Literal["GSM-7"] = "GSM-7"
UCS2: Literal["UCS-2"] = "UCS-2"

# GSM 03.38 basic character set, in code order (0x1B, the escape, is left out: it is not text).
_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs two septets (ESC + code).
_EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_BASIC_CODE = {ch: code for code, ch in enumerate(_BASIC) if ch != "\x1b"}
_CODE_BASIC = {code: ch for ch, code in _BASIC_CODE.items()}
_CODE_EXTENSION = {code: ch for ch, code in _EXTENSION.items()}
# str.translate table deleting every basic-table character: what remains is extension or non-GSM text
DELETE_GSM_BASIC = str.maketrans("", "", "".join(_BASIC_CODE))
GSM_EXTENSION_CHARS = frozenset(_EXTENSION)

SINGLE_LIMIT = {GSM7: 160, UCS2: 70}
PART_LIMIT = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True, slots=True)
class SegmentCount:
    """How a text travels: its encoding, its length in units (septets or UTF-16 code units), its parts."""

    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int


def strip_markers(text: str) -> str:
    """Return ``text`` without ``#ma#`` masking markers (what the handset shows)."""
    return text.replace(MASK_MARKER, "") if MASK_MARKER in text else text


def is_gsm7(text: str) -> bool:
    """Tell whether every character of ``text`` is in the GSM 03.38 basic or extension table."""
    rest = text.translate(DELETE_GSM_BASIC)
    return not rest or all(ch in GSM_EXTENSION_CHARS for ch in rest)


def _utf16_units(text: str) -> int:
    """Count UTF-16 code units: characters outside the BMP take two."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _unit_costs(text: str, encoding: str) -> list[int]:
    """Return the cost in units of each character (2 for escapes and astral characters)."""
    if encoding == GSM7:
        return [2 if ch in GSM_EXTENSION_CHARS else 1 for ch in text]
    return [2 if ord(ch) > 0xFFFF else 1 for ch in text]


def _greedy_parts(costs: list[int], limit: int) -> list[tuple[int, int]]:
    """Split character costs greedily into (start, end) ranges of at most ``limit`` units each."""
    parts: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, cost in enumerate(costs):
        if used + cost > limit:
            parts.append((start, i))
            start, used = i, 0
        used += cost
    parts.append((start, len(costs)))
    return parts


@lru_cache(maxsize=65536)
def _count(text: str) -> SegmentCount:
    """Count a marker-free text (cached: campaigns repeat texts a lot)."""
    rest = text.translate(DELETE_GSM_BASIC)
    if not rest:
        encoding, units, double = GSM7, len(text), False
    elif all(ch in GSM_EXTENSION_CHARS for ch in rest):
        encoding, units, double = GSM7, len(text) + len(rest), True
    else:
        encoding = UCS2
        units = _utf16_units(text)
        double = units != len(text)
    if units <= SINGLE_LIMIT[encoding]:
        return SegmentCount(encoding, units, 1)
    if not double:
        return SegmentCount(encoding, units, math.ceil(units / PART_LIMIT[encoding]))
    parts = _greedy_parts(_unit_costs(text, encoding), PART_LIMIT[encoding])
    return SegmentCount(encoding, units, len(parts))


def count_segments(text: str) -> SegmentCount:
    """Count the encoding, units and SMS parts of ``text`` after removing ``#ma#`` markers.

    GSM-7 when every character is in the GSM 03.38 tables (extension characters cost two septets),
    else UCS-2 (UTF-16 code units). One part holds 160 septets or 70 units; a longer message is
    split in parts of 153 or 67, never splitting an escape pair or a surrogate pair. An empty text
    still travels as one (empty) part.

    >>> count_segments("Hello")
    SegmentCount(encoding='GSM-7', units=5, segments=1)
    >>> count_segments("សួស្តី").encoding
    'UCS-2'
    """
    return _count(strip_markers(text))


def split_parts(text: str) -> list[str]:
    """Split ``text`` (markers removed) into the parts it travels in; one part when it fits."""
    text = strip_markers(text)
    count = _count(text)
    if count.segments == 1:
        return [text]
    costs = _unit_costs(text, count.encoding)
    return [text[a:b] for a, b in _greedy_parts(costs, PART_LIMIT[count.encoding])]


def encode_gsm7(text: str) -> bytes:
    """Encode ``text`` as unpacked GSM 03.38 septets (one per octet, escapes as 0x1B + code).

    Raises ``ValueError`` naming the first character outside the GSM 03.38 tables.
    """
    out = bytearray()
    for ch in text:
        code = _BASIC_CODE.get(ch)
        if code is not None:
            out.append(code)
        elif ch in _EXTENSION:
            out += bytes((0x1B, _EXTENSION[ch]))
        else:
            raise ValueError(f"character {ch!r} is not in the GSM 03.38 alphabet")
    return bytes(out)


def decode_gsm7(data: bytes) -> str:
    """Decode unpacked GSM 03.38 septets back to text (unknown codes become ``?``)."""
    out: list[str] = []
    escape = False
    for byte in data:
        if escape:
            out.append(_CODE_EXTENSION.get(byte, "?"))
            escape = False
        elif byte == 0x1B:
            escape = True
        else:
            out.append(_CODE_BASIC.get(byte, "?"))
    return "".join(out)

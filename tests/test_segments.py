"""Tests for plasgate_nb.segments: a table of hand-checked vectors and hypothesis properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plasgate_nb.segments import (
    MASK_MARKER,
    SegmentCount,
    count_segments,
    decode_gsm7,
    encode_gsm7,
    is_gsm7,
    split_parts,
    strip_markers,
)

KHMER = "សួស្តី"  # 6 code points, all in the BMP

# (text, encoding, units, segments), each worked out by hand from GSM 03.38 and the 160/153, 70/67 rule.
VECTORS = [
    ("", "GSM-7", 0, 1),  # an empty text still travels as one (empty) part
    ("Hello", "GSM-7", 5, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),  # 153 * 2 exactly
    ("a" * 307, "GSM-7", 307, 3),
    ("a" * 459, "GSM-7", 459, 3),
    ("a" * 152 + "{" + "a" * 152, "GSM-7", 306, 3),  # the escape pair cannot straddle parts 1 and 2
    ("a" * 306 + "€", "GSM-7", 308, 3),
    ("a" * 158 + "€", "GSM-7", 160, 1),
    ("a" * 159 + "€", "GSM-7", 161, 2),
    ("a" * 153 + "{", "GSM-7", 155, 1),  # 155 septets still fit one message
    ("€", "GSM-7", 2, 1),  # euro costs two septets
    ("€" * 80, "GSM-7", 160, 1),
    ("€" * 81, "GSM-7", 162, 2),  # 76 euros fill a part (152 septets)
    ("\f", "GSM-7", 2, 1),  # form feed is in the extension table
    ("^{}\\[~]|", "GSM-7", 16, 1),
    ("@£$¥èéùìòÇ", "GSM-7", 10, 1),
    ("ÄÖÑÜ§¿äöñüà", "GSM-7", 11, 1),
    ("ΔΦΓΛΩΠΨΣΘΞ", "GSM-7", 10, 1),
    ("a\nb\rc", "GSM-7", 5, 1),
    ("ç", "UCS-2", 1, 1),  # only the capital Ç is in the basic table
    ("ω", "UCS-2", 1, 1),
    ("`", "UCS-2", 1, 1),  # the one printable ASCII character outside GSM 03.38
    ("\u00a0", "UCS-2", 1, 1),
    ("“quoted”", "UCS-2", 8, 1),  # curly quotes force UCS-2
    ("It’s", "UCS-2", 4, 1),
    (KHMER, "UCS-2", 6, 1),
    ("ស" * 70, "UCS-2", 70, 1),
    ("ស" * 71, "UCS-2", 71, 2),
    ("ស" * 134, "UCS-2", 134, 2),
    ("ស" * 135, "UCS-2", 135, 3),
    ("a" * 70 + "ស", "UCS-2", 71, 2),
    ("😀", "UCS-2", 2, 1),  # a surrogate pair: two UTF-16 units
    ("a" * 66 + "😀", "UCS-2", 68, 1),
    ("a" * 66 + "😀" + "aaa", "UCS-2", 71, 2),  # the pair moves whole to part 2
    ("a" * 69 + "😀", "UCS-2", 71, 2),
    ("😀" * 35, "UCS-2", 70, 1),
    ("😀" * 36, "UCS-2", 72, 2),
    ("ស" * 69 + "😀", "UCS-2", 71, 2),
    ("Hello 😀", "UCS-2", 8, 1),
    ("#ma#1234#ma#", "GSM-7", 4, 1),  # markers are not counted
    ("Code #ma#12#ma# ok", "GSM-7", 10, 1),
    ("a" * 160 + "#ma##ma#", "GSM-7", 160, 1),
    ("#ma#" + "ស" * 70 + "#ma#", "UCS-2", 70, 1),
]


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), VECTORS)
def test_count_segments_vectors(text: str, encoding: str, units: int, segments: int) -> None:
    assert count_segments(text) == SegmentCount(encoding, units, segments)  # type: ignore[arg-type]
    parts = split_parts(text)
    assert len(parts) == segments
    assert "".join(parts) == strip_markers(text)


def test_the_straddling_escape_splits_where_expected() -> None:
    parts = split_parts("a" * 152 + "{" + "a" * 152)
    assert [len(p) for p in parts] == [152, 152, 1]
    assert parts[1].startswith("{")


def test_surrogate_pair_moves_whole() -> None:
    parts = split_parts("a" * 66 + "😀" + "aaa")
    assert parts == ["a" * 66, "😀aaa"]


def test_gsm7_round_trip_and_unknown_character() -> None:
    text = "Hi €{x} @home\f"
    assert decode_gsm7(encode_gsm7(text)) == text
    assert len(encode_gsm7(text)) == count_segments(text).units
    with pytest.raises(ValueError, match="ស"):
        encode_gsm7("aស")


ALPHABET = st.sampled_from([*"abcXYZ019 @£$\n\r_Ω!?", *"^{}\\[~]|€\f", *"çω`“”’", *KHMER, "😀", "🇰🇭", MASK_MARKER])
texts = st.lists(ALPHABET, max_size=400).map("".join)


def _units(part: str, encoding: str) -> int:
    """Units of one part in the message's encoding, computed independently of segments.py."""
    if encoding == "GSM-7":
        return len(encode_gsm7(part))
    return len(part.encode("utf-16-le")) // 2


@settings(max_examples=300, deadline=None)
@given(texts)
def test_split_parts_properties(text: str) -> None:
    count = count_segments(text)
    plain = strip_markers(text)
    parts = split_parts(text)
    assert "".join(parts) == plain
    assert count.segments == len(parts)
    assert count.units == sum(_units(p, count.encoding) for p in parts)
    single, part_limit = (160, 153) if count.encoding == "GSM-7" else (70, 67)
    limit = single if len(parts) == 1 else part_limit
    assert all(_units(p, count.encoding) <= limit for p in parts)
    if len(parts) > 1:
        assert count.units > single
        assert all(p for p in parts)
    try:
        encode_gsm7(plain)
    except ValueError:
        assert count.encoding == "UCS-2"
        assert not is_gsm7(plain)
    else:
        assert count.encoding == "GSM-7"
        assert is_gsm7(plain)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_parts_are_greedy(text: str) -> None:
    """No part could have taken the first character of the next one."""
    count = count_segments(text)
    parts = split_parts(text)
    if len(parts) == 1:
        return
    limit = 153 if count.encoding == "GSM-7" else 67
    for part, following in itertools.pairwise(parts):
        assert _units(part + following[0], count.encoding) > limit

"""Turn one text into the submit_sm parts it travels in: encoding, data_coding, concatenation.

GSM-7 texts go as unpacked septets with data_coding 0 (as Jasmin expects), anything else as UCS-2
(UTF-16-BE) with data_coding 8. A long text is split by ``plasgate_nb.segments.split_parts`` (never
inside an escape or surrogate pair) and each part carries either a UDH (esm_class 0x40, IE 0x00 with
an 8-bit reference) or the sar_* TLVs; all parts of one message share the reference. Only the last
part asks for a delivery receipt, as python-smpplib does and Jasmin shows: the receipt then refers
to the last part's message id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import OptionError
from ..segments import (
    DELETE_GSM_BASIC,
    GSM7,
    count_segments,
    decode_gsm7,
    encode_gsm7,
    split_parts,
    strip_markers,
)
from . import pdu as _pdu

__all__ = [
    "Concat",
    "Part",
    "build_parts",
    "decode_short_message",
    "decode_text",
    "fast_decode_gsm7",
    "fast_encode_gsm7",
]

Concat = Literal["udh", "sar"]
# one-character tables of the GSM 03.38 basic set, taken from segments' codec (0x1B: the escape)
_SEPTET_CHAR = {code: decode_gsm7(bytes((code,))) for code in range(128) if code != 0x1B}
_TO_SEPTET = {ord(ch): code for code, ch in _SEPTET_CHAR.items()}
_FROM_SEPTET = {code: ord(ch) for code, ch in _SEPTET_CHAR.items()}
ESM_UDHI = 0x40
DC_GSM7 = 0
DC_UCS2 = 8


@dataclass(frozen=True, slots=True)
class Part:
    """One submit_sm worth of a message: payload octets, esm_class, data_coding and raw TLVs."""

    short_message: bytes
    esm_class: int
    data_coding: int
    tlvs: bytes
    registered_delivery: int


def fast_encode_gsm7(text: str) -> bytes:
    """``encode_gsm7`` with a C-speed path for texts of basic-table characters only."""
    if not text.translate(DELETE_GSM_BASIC):
        return text.translate(_TO_SEPTET).encode("latin-1")
    return encode_gsm7(text)


def fast_decode_gsm7(data: bytes) -> str:
    """``decode_gsm7`` with a C-speed path for septets without escapes."""
    if 0x1B not in data and max(data, default=0) < 0x80:
        return data.decode("latin-1").translate(_FROM_SEPTET)
    return decode_gsm7(data)


def build_parts(text: str, *, concat: Concat = "udh", reference: int = 0, registered_delivery: int = 1) -> list[Part]:
    """Split ``text`` (markers removed) into submit_sm parts sharing ``reference``.

    ``concat="udh"`` puts a 6-octet UDH in each part (reference taken modulo 256); ``"sar"`` uses
    sar_msg_ref_num / sar_total_segments / sar_segment_seqnum TLVs (reference modulo 65536).
    ``registered_delivery`` is set on the last part only.
    """
    if concat not in ("udh", "sar"):
        raise OptionError(f"concat must be 'udh' or 'sar', not {concat!r}")
    count = count_segments(text)
    gsm = count.encoding == GSM7
    data_coding = DC_GSM7 if gsm else DC_UCS2
    chunks = [strip_markers(text)] if count.segments == 1 else split_parts(text)
    payloads = [fast_encode_gsm7(c) if gsm else c.encode("utf-16-be") for c in chunks]
    total = len(payloads)
    if total == 1:
        return [Part(payloads[0], 0, data_coding, b"", registered_delivery)]
    if total > 255:
        raise OptionError(f"message needs {total} parts; SMPP concatenation allows at most 255")
    parts: list[Part] = []
    for seq, payload in enumerate(payloads, start=1):
        rd = registered_delivery if seq == total else 0
        if concat == "udh":
            udh = bytes((0x05, 0x00, 0x03, reference % 256, total, seq))
            parts.append(Part(udh + payload, ESM_UDHI, data_coding, b"", rd))
        else:
            tlvs = (
                _pdu.encode_tlv(_pdu.TAG_SAR_MSG_REF_NUM, reference % 65536, size=2)
                + _pdu.encode_tlv(_pdu.TAG_SAR_TOTAL_SEGMENTS, total)
                + _pdu.encode_tlv(_pdu.TAG_SAR_SEGMENT_SEQNUM, seq)
            )
            parts.append(Part(payload, 0, data_coding, tlvs, rd))
    return parts


@dataclass(frozen=True, slots=True)
class Decoded:
    """A received short_message: its text and, when concatenated, (reference, total, sequence)."""

    text: str
    concat: tuple[int, int, int] | None


def decode_short_message(message: _pdu.Pdu) -> Decoded:
    """Decode the text of a submit_sm / deliver_sm, stripping a UDH and reading UDH or sar_ TLVs."""
    data: bytes = message.get("short_message", b"")
    if not data and _pdu.TAG_MESSAGE_PAYLOAD in message.tlvs:
        data = message.tlvs[_pdu.TAG_MESSAGE_PAYLOAD]
    sar: tuple[int, int, int] | None = None
    if _pdu.TAG_SAR_MSG_REF_NUM in message.tlvs:
        sar = (
            message.tlv_int(_pdu.TAG_SAR_MSG_REF_NUM) or 0,
            message.tlv_int(_pdu.TAG_SAR_TOTAL_SEGMENTS) or 1,
            message.tlv_int(_pdu.TAG_SAR_SEGMENT_SEQNUM) or 1,
        )
    return Decoded(*decode_text(data, message.get("esm_class", 0), message.get("data_coding", 0), sar))


def decode_text(
    data: bytes, esm_class: int, data_coding: int, sar: tuple[int, int, int] | None = None
) -> tuple[str, tuple[int, int, int] | None]:
    """Decode short_message octets: (text, concat), concat from a UDH or else from ``sar`` (the TLVs)."""
    concat = None
    if esm_class & ESM_UDHI and data:
        header = data[1 : 1 + data[0]]
        data = data[1 + data[0] :]
        pos = 0
        while pos + 2 <= len(header):
            iei, size = header[pos], header[pos + 1]
            value = header[pos + 2 : pos + 2 + size]
            if iei == 0x00 and size == 3:
                concat = (value[0], value[1], value[2])
            elif iei == 0x08 and size == 4:
                concat = (int.from_bytes(value[:2], "big"), value[2], value[3])
            pos += 2 + size
    else:
        concat = sar
    if data_coding == DC_UCS2:
        text = data.decode("utf-16-be", errors="replace")
    elif data_coding == DC_GSM7:
        text = fast_decode_gsm7(data)
    else:
        text = data.decode("latin-1")
    return text, concat

"""Parse a mobile-originated message (a handset's reply) as Jasmin's deliverSmHttpThrower posts it.

Recorded in ``reference/jasmin/http_api.md`` section 5: a form POST with ``id, from, to,
origin-connector, content, binary, priority, coding``. ``content`` is the short message's raw octets
(UTF-16BE for a UCS-2 reply), ``binary`` the same octets in hex, and ``coding`` the data_coding as one
raw byte (``%00``, ``%08``). The text is decoded from those octets by their coding, the way the SMPP
receiver decodes a deliver_sm, so replies reach the ledger alike whichever way they came.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from typing import Any

from .errors import CallbackError
from .smpp.message import DC_GSM7, DC_UCS2, fast_decode_gsm7

__all__ = ["MAX_MO_TEXT", "parse_mo"]

MAX_MO_TEXT = 4000  # octets of one reply's content (the ledger keeps up to 1600 characters)
_ADDRESS = re.compile(r"^\+?[A-Za-z0-9 ]{1,32}$")
_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


def _coding(value: str | None) -> int:
    """The data_coding: Jasmin sends it as one raw byte; digits are accepted as well."""
    if value is None or value == "":
        return DC_GSM7
    if value.isdigit() and len(value) <= 3:
        coding = int(value)
    elif len(value) == 1:
        coding = ord(value)
    else:
        raise CallbackError("field 'coding' is not a data coding")
    if not 0 <= coding <= 255:
        raise CallbackError("field 'coding' is not a data coding")
    return coding


def _octets(fields: Mapping[str, str]) -> bytes:
    """The reply's short message octets: from ``binary`` (hex) when given, else from ``content``."""
    binary = fields.get("binary")
    if binary:
        if len(binary) > 2 * MAX_MO_TEXT:
            raise CallbackError("field 'binary' is too long")
        try:
            return binascii.unhexlify(binary)
        except (binascii.Error, ValueError) as exc:
            raise CallbackError("field 'binary' is not hexadecimal") from exc
    content = fields.get("content")
    if content is None:
        raise CallbackError("missing field 'content'")
    if len(content) > MAX_MO_TEXT:
        raise CallbackError("field 'content' is too long")
    return content.encode("latin-1", "replace")  # the form decoder gave each raw octet as one character


def _text(octets: bytes, coding: int) -> str:
    """Decode octets as the SMPP receiver does: UCS-2 (8), GSM 03.38 (0), else Latin-1."""
    if coding == DC_UCS2:
        return octets.decode("utf-16-be", errors="replace")
    if coding == DC_GSM7:
        return fast_decode_gsm7(octets)
    return octets.decode("latin-1")


def _address(fields: Mapping[str, str], name: str) -> str:
    """A required address field (a number or a short code)."""
    value = (fields.get(name) or "").strip()
    if not value:
        raise CallbackError(f"missing field {name!r}")
    if not _ADDRESS.match(value):
        raise CallbackError(f"field {name!r} is not an address")
    return value.lstrip("+")


def parse_mo(fields: Mapping[str, str]) -> dict[str, Any]:
    """Turn an MO POST's fields into a reply dict for ``Ledger.record_replies``; CallbackError if malformed.

    The dict has ``msisdn`` (the handset), ``to`` (the address it wrote to), ``text`` and
    ``data_coding``, like the replies an SMPP session hands over.
    """
    message_id = fields.get("id")
    if message_id is not None and message_id != "" and not _ID.match(message_id):
        raise CallbackError("field 'id' is not a message id")
    coding = _coding(fields.get("coding"))
    return {
        "msisdn": _address(fields, "from"),
        "to": _address(fields, "to"),
        "text": _text(_octets(fields), coding),
        "data_coding": coding,
    }

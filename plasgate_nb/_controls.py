"""Characters refused in message texts and keys, found in a million texts at the speed of one pass.

A message text (and a key, a number, a report text: one rule everywhere) may hold tab, newline, carriage
return and form feed: newline and carriage return are GSM 03.38 characters, form feed is in its
extension table, and a tab (which makes the message UCS-2) is legitimate content. Every other control
character (Unicode category Cc: C0 ``\\x00``-``\\x1f``, DEL ``\\x7f``, C1 ``\\x80``-``\\x9f``) is refused,
and so are lone surrogates (text that is not Unicode): NUL cannot be stored in PostgreSQL, and the
others are invisible on a handset, cut texts short in C programs on the way (the SMSC's C strings) and
are never meant.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["TEXT_ALLOWED", "describe", "refused"]

TEXT_ALLOWED = "\t\n\r\f"
"""The control characters a text may hold."""

_C0 = {*range(0x20), 0x7F}
_KEEP = bytes(b for b in range(256) if b not in _C0 or chr(b) in TEXT_ALLOWED)  # every byte but refused C0/DEL
_C1_UTF8 = re.compile(rb"\xc2[\x80-\x9f]")  # U+0080..U+009F in UTF-8 (a lead byte 0xc2 is never a continuation)


def _holds_refused(text: str) -> bool:
    """Tell whether ``text`` holds a refused control character or a lone surrogate."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not Unicode text
        return True
    if data.translate(None, _KEEP):  # what is left after deleting every byte kept: refused C0 controls or DEL
        return True
    return not text.isascii() and _C1_UTF8.search(data) is not None


def refused(texts: Sequence[str]) -> list[int]:
    """Return the positions of ``texts`` holding a refused character, in order.

    One pass over all the texts joined answers the common case (none); only then is each text looked at.
    """
    if not _holds_refused("".join(texts)):
        return []
    return [i for i, text in enumerate(texts) if _holds_refused(text)]


def describe(text: str) -> str:
    """Name the first refused character of ``text`` (``control character U+0000``), for an error message."""
    for ch in text:
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return f"lone surrogate U+{code:04X}"
        if (code in _C0 or 0x80 <= code <= 0x9F) and ch not in TEXT_ALLOWED:
            return f"control character U+{code:04X}"
    return "no refused character"

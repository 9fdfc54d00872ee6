"""Masked areas while rendering: private sentinels, neutralizing data, the sent and the report views.

While a template renders, masked outputs are wrapped in private-use sentinels (never the literal
``#ma#``), and ``#ma#`` written in the template text becomes a toggle sentinel. Data can carry neither:
sentinel characters are removed from every value, and a literal ``#ma#`` that data produces in the
finished text is neutralized to ``#ma_#``. Only then do sentinels become real ``#ma#`` markers, so a
value can never open or close a masked area.
"""

from __future__ import annotations

import hashlib
import re

from .segments import MASK_MARKER

__all__ = [
    "MASKED_AREA",
    "NEUTRAL",
    "REPORT_MASK",
    "SENTINELS",
    "S_CLOSE",
    "S_OPEN",
    "S_TOGGLE",
    "UnbalancedMarkers",
    "content_digest",
    "finish",
    "mask_views",
    "report_view",
    "strip_sentinels",
]

S_OPEN = "\ue000"  # start of a masked output (from mask=)
S_CLOSE = "\ue001"  # end of a masked output
S_TOGGLE = "\ue002"  # a literal #ma# written in the template text
SENTINELS = S_OPEN + S_CLOSE + S_TOGGLE
NEUTRAL = "#ma_#"  # what a literal #ma# coming from data becomes
REPORT_MASK = "******"  # how the gateway's transaction report shows a masked area

MASKED_AREA = re.compile(r"#ma#.*?#ma#", re.S)  # a masked area of a finished text, markers included

_DELETE_SENTINELS = str.maketrans("", "", SENTINELS)
_REPORT_RE = re.compile(f"{S_OPEN}[^{S_CLOSE}]*{S_CLOSE}")
_SPLIT_RE = re.compile(f"([{SENTINELS}])")


class UnbalancedMarkers(ValueError):
    """The template text opens a ``#ma#`` area it never closes (an odd number of literal markers)."""


def report_view(text: str) -> str:
    """Return a finished text as the gateway's report shows it: each masked area as ``******``."""
    return MASKED_AREA.sub(REPORT_MASK, text) if MASK_MARKER in text else text


def content_digest(text: str) -> str:
    """Return the SHA-256 (hex) the ledger keeps of a finished text: of its report view, never of masked values.

    A digest of the unmasked text would give the masked values away to anyone holding the ledger (a
    six-digit OTP is found by trying a million texts); the report view is stored in clear anyway, so
    this digest tells nothing more. A text without markers hashes as itself.
    """
    return hashlib.sha256(report_view(text).encode("utf-8")).hexdigest()


def strip_sentinels(text: str) -> str:
    """Remove sentinel characters (data must never carry them)."""
    return text.translate(_DELETE_SENTINELS) if not text.isascii() else text


def mask_views(raw: str) -> tuple[str, str, str]:
    """Return (sent, report, handset) views of a piece holding only open/close sentinels.

    The caller guarantees the data inside carries no ``#ma`` (see :func:`finish` otherwise).
    """
    if raw.isascii():
        return raw, raw, raw
    content = raw.replace(S_OPEN, MASK_MARKER).replace(S_CLOSE, MASK_MARKER)
    report = _REPORT_RE.sub(REPORT_MASK, raw).translate(_DELETE_SENTINELS)
    return content, report, raw.translate(_DELETE_SENTINELS)


def _neutralize(text: str) -> str:
    """Break every ``#ma#`` in ``text`` and every ``#ma`` right before a sentinel."""
    # Two passes catch overlapping occurrences (``#ma#ma#``): the first breaks every other one.
    for _ in range(2):
        if MASK_MARKER in text:
            text = text.replace(MASK_MARKER, NEUTRAL)
    if "#ma" + S_OPEN in text or "#ma" + S_CLOSE in text or "#ma" + S_TOGGLE in text:
        for sentinel in SENTINELS:
            text = text.replace("#ma" + sentinel, "#ma_" + sentinel)
    return text


def finish(raw: str) -> tuple[str, str]:
    """Turn a fully rendered text with sentinels into (sent text with markers, report view).

    Data's ``#ma#`` is neutralized first. Areas from ``mask=`` and areas the template text delimits
    with literal markers are both masked; a masked output inside a literal area adds no markers of
    its own; empty areas are dropped. Raises :class:`UnbalancedMarkers` on an odd number of toggles.
    """
    text = _neutralize(raw)
    if S_TOGGLE not in text:
        return mask_views(text)[:2]
    sent: list[str] = []
    report: list[str] = []
    toggled, depth = False, 0
    area: list[str] = []
    for token in _SPLIT_RE.split(text):
        if token == S_TOGGLE:
            toggled = not toggled
        elif token == S_OPEN:
            depth += 1
        elif token == S_CLOSE:
            depth = max(depth - 1, 0)
        if token in SENTINELS:
            if not (toggled or depth) and area:
                body = "".join(area)
                if body:
                    sent.append(MASK_MARKER + body + MASK_MARKER)
                    report.append(REPORT_MASK)
                area = []
            continue
        if toggled or depth:
            area.append(token)
        else:
            sent.append(token)
            report.append(token)
    if toggled:
        raise UnbalancedMarkers("the template text opens a #ma# area that it never closes")
    return "".join(sent), "".join(report)

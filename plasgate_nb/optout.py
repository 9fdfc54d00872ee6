"""Opt-out and opt-in keywords in replies: STOP puts a number on the suppression list, START takes it off.

A reply is a keyword when its whole text, folded (case, width and Unicode form), with spaces, punctuation
and symbols removed, equals one of the words: "Stop!", " stop ", "S.T.O.P" and "ឈប់។" all count; "stop
sending me offers" does not (a person wrote a sentence; read it yourself). Khmer words keep their vowel
signs and coeng (combining marks are part of the word).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError

__all__ = ["DEFAULT_START", "DEFAULT_STOP", "Keywords", "fold"]

DEFAULT_STOP = (
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "ឈប់",  # stop
    "ឈប់ផ្ញើ",  # stop sending
    "បោះបង់",  # cancel
)
DEFAULT_START = ("START", "UNSTOP", "ចាប់ផ្តើម")  # ចាប់ផ្តើម: start
_DROPPED = ("P", "S", "Z", "C")  # punctuation, symbols, separators, controls (incl. zero-width) are ignored


def fold(text: str) -> str:
    """The comparable form of a reply: NFKC, case-folded, without spaces, punctuation or symbols."""
    normal = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in normal if unicodedata.category(ch)[0] not in _DROPPED)


def _folded(words: Iterable[str], what: str) -> frozenset[str]:
    """Fold keyword list ``words``; refuse empty ones and plain strings."""
    if isinstance(words, str):
        raise ConfigError(f"{what} keywords must be a list of words, not one string")
    out = set()
    for word in words:
        folded = fold(str(word))
        if not folded:
            raise ConfigError(f"{what} keyword {word!r} is empty once spaces and punctuation are removed")
        out.add(folded)
    return frozenset(out)


@dataclass(frozen=True)
class Keywords:
    """The opt-out (``stop``) and opt-in (``start``) words replies are matched against."""

    stop: tuple[str, ...] = DEFAULT_STOP
    start: tuple[str, ...] = DEFAULT_START
    _stop: frozenset[str] = field(init=False, repr=False, compare=False)
    _start: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        stop, start = _folded(self.stop, "stop"), _folded(self.start, "start")
        both = sorted(stop & start)
        if both:
            raise ConfigError(f"words cannot be both stop and start keywords: {both}")
        object.__setattr__(self, "stop", tuple(self.stop))
        object.__setattr__(self, "start", tuple(self.start))
        object.__setattr__(self, "_stop", stop)
        object.__setattr__(self, "_start", start)

    def match(self, text: str | None) -> Literal["stop", "start"] | None:
        """``"stop"`` or ``"start"`` when ``text`` is one of the keywords, else None."""
        if not text:
            return None
        folded = fold(text)
        if folded in self._stop:
            return "stop"
        if folded in self._start:
            return "start"
        return None

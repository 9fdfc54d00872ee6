"""Pacing rules across campaigns: quiet hours (Asia/Phnom_Penh) and frequency caps per number.

``QuietHours("21:00", "08:00")`` is a daily window in gateway-local time (UTC+7, no DST) during which
nothing is sent: a send inside it is scheduled for the window's end (REST batch-send) or left for later.
``FrequencyCap(2, "7D")`` leaves out numbers that already had that many accepted messages from any
campaign of the same ledger within the window. Both are plain values; :class:`~plasgate_nb.Campaign`
applies them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd

from .errors import ConfigError

__all__ = ["PHNOM_PENH", "FrequencyCap", "QuietHours"]

PHNOM_PENH = ZoneInfo("Asia/Phnom_Penh")
_CLOCK = re.compile(r"^\s*([01]?\d|2[0-3])[:.h]([0-5]\d)\s*$")


def _clock(value: str | time, what: str) -> time:
    """Parse ``"21:00"`` (or a ``datetime.time``) into a time of day."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    match = _CLOCK.match(str(value))
    if match is None:
        raise ConfigError(f"quiet hours {what} must be a time of day like '21:00', not {value!r}")
    return time(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class QuietHours:
    """A daily window in Asia/Phnom_Penh time when no message is sent (it may span midnight)."""

    start: time
    end: time

    def __init__(self, start: str | time, end: str | time) -> None:
        begin, finish = _clock(start, "start"), _clock(end, "end")
        if begin == finish:
            raise ConfigError(f"quiet hours start and end are both {begin:%H:%M}: give a window")
        object.__setattr__(self, "start", begin)
        object.__setattr__(self, "end", finish)

    @classmethod
    def parse(cls, value: Any) -> QuietHours | None:
        """``None``, a QuietHours, a ``(start, end)`` pair or the text ``"21:00-08:00"``."""
        if value is None or isinstance(value, QuietHours):
            return value
        if isinstance(value, str):
            parts = value.split("-")
            if len(parts) != 2:
                raise ConfigError(f"quiet hours must look like '21:00-08:00', not {value!r}")
            return cls(*parts)
        if isinstance(value, tuple | list) and len(value) == 2:
            return cls(*value)
        raise ConfigError(f"quiet_hours must be ('21:00', '08:00'), '21:00-08:00' or None, not {value!r}")

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} Asia/Phnom_Penh"

    def contains(self, when: datetime) -> bool:
        """Whether the aware datetime ``when`` falls inside the window."""
        local = _aware(when).astimezone(PHNOM_PENH).time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def opens_at(self, when: datetime) -> datetime:
        """When sending may go on: ``when`` itself outside the window, else the window's end (aware UTC)."""
        when = _aware(when)
        return _next(when, self.end) if self.contains(when) else when.astimezone(UTC)

    def closes_at(self, when: datetime) -> datetime:
        """The next start of the window at or after ``when`` (aware UTC); ``when`` itself inside it."""
        when = _aware(when)
        return when.astimezone(UTC) if self.contains(when) else _next(when, self.start)


def _next(when: datetime, at: time) -> datetime:
    """The first Phnom Penh wall-clock time ``at`` after ``when`` (aware UTC)."""
    local = when.astimezone(PHNOM_PENH)
    moment = local.replace(hour=at.hour, minute=at.minute, second=0, microsecond=0)
    if moment <= local:
        moment += timedelta(days=1)
    return moment.astimezone(UTC)


def _aware(when: datetime) -> datetime:
    """``when``, refusing naive datetimes (their zone would be a guess)."""
    if when.tzinfo is None:
        raise ConfigError("a time for quiet hours must be timezone-aware")
    return when


@dataclass(frozen=True)
class FrequencyCap:
    """At most ``messages`` accepted messages per number within ``window``, across the ledger's campaigns."""

    messages: int
    window: timedelta

    def __init__(self, messages: int, window: str | timedelta | pd.Timedelta) -> None:
        if isinstance(messages, bool) or not isinstance(messages, int) or messages < 1:
            raise ConfigError(f"a frequency cap needs a whole number of messages >= 1, not {messages!r}")
        try:
            span = pd.Timedelta(window)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"a frequency cap window must be like '7D' or '24h', not {window!r}") from exc
        if pd.isna(span) or span <= pd.Timedelta(0) or not math.isfinite(span.total_seconds()):
            raise ConfigError(f"a frequency cap window must be positive, not {window!r}")
        object.__setattr__(self, "messages", messages)
        object.__setattr__(self, "window", span.to_pytimedelta())

    @classmethod
    def parse(cls, value: Any) -> FrequencyCap | None:
        """``None``, a FrequencyCap, a ``(messages, window)`` pair or the text ``"2/7D"``."""
        if value is None or isinstance(value, FrequencyCap):
            return value
        if isinstance(value, str):
            count, _, window = value.partition("/")
            if not count.strip().isdigit() or not window.strip():
                raise ConfigError(f"a frequency cap must look like '2/7D', not {value!r}")
            return cls(int(count), window.strip())
        if isinstance(value, tuple | list) and len(value) == 2:
            return cls(*value)
        raise ConfigError(f"frequency_cap must be (2, '7D'), '2/7D' or None, not {value!r}")

    def __str__(self) -> str:
        seconds = int(self.window.total_seconds())
        if seconds % 86400 == 0:
            span = f"{seconds // 86400} day" + ("s" if seconds != 86400 else "")
        elif seconds % 3600 == 0:
            span = f"{seconds // 3600} h"
        else:
            span = str(pd.Timedelta(self.window))
        return f"{self.messages} per {span}"

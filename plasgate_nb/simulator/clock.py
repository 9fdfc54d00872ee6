"""The simulator's clock: wall time that tests can advance or speed up, and Phnom Penh time parsing."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

__all__ = ["GATEWAY_TZ", "ScheduleError", "SimClock", "parse_schedule"]

GATEWAY_TZ = ZoneInfo("Asia/Phnom_Penh")
_SECONDS = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*s\s*$")


class ScheduleError(ValueError):
    """A ``schedule_at`` value is unparseable or in the past (the gateway answers 412)."""


class SimClock:
    """Simulated epoch seconds: ``start + elapsed_real * speed + advanced``.

    ``advance`` and ``set_speed`` notify listeners (the callback scheduler) so that waits are recomputed.
    """

    def __init__(self, *, speed: float = 1.0, start: float | None = None) -> None:
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self._mono0 = time.monotonic()
        self._sim0 = time.time() if start is None else float(start)
        self.speed = float(speed)
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        """Return the simulated time in epoch seconds."""
        return self._sim0 + (time.monotonic() - self._mono0) * self.speed

    def advance(self, seconds: float) -> float:
        """Jump the clock ``seconds`` ahead and return the new time."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._sim0 += seconds
        self._notify()
        return self.now()

    def set_speed(self, speed: float) -> None:
        """Run simulated time ``speed`` times faster than real time from now on."""
        if speed <= 0:
            raise ValueError("clock speed must be positive")
        self._sim0, self._mono0, self.speed = self.now(), time.monotonic(), float(speed)
        self._notify()

    def real_seconds(self, sim_seconds: float) -> float:
        """Convert a simulated duration into the real one at the current speed."""
        return max(0.0, sim_seconds) / self.speed

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` whenever the clock is advanced or its speed changes."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        """Tell the listeners the clock jumped."""
        for listener in self._listeners:
            listener()

    def __repr__(self) -> str:
        local = datetime.fromtimestamp(self.now(), GATEWAY_TZ).strftime("%Y-%m-%d %H:%M:%S")
        return f"<SimClock {local} Asia/Phnom_Penh x{self.speed:g}>"


def parse_schedule(value: object, now: float) -> float:
    """Turn ``schedule_at`` ('YYYY-MM-DD HH:MM:SS' Phnom Penh time, or '<N>s') into epoch seconds.

    Raise ScheduleError for an unknown format or a time in the past.
    """
    text = str(value)
    match = _SECONDS.match(text)
    if match:
        return now + float(match.group(1))
    try:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S")
    except ValueError as exc:
        raise ScheduleError(
            f"Got unknown format: {text}, correct formats are 'YYYY-MM-DD hh:mm:ss' "
            "(Asia/Phnom_Penh) or a number of seconds ('30s')"
        ) from exc
    due = local.replace(tzinfo=GATEWAY_TZ).timestamp()
    if due < now:
        raise ScheduleError(f"Invalid past date given: {text}")
    return due

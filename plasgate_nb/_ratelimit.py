"""A client-side sliding-window rate limiter: at most N request starts in any window, plus 429 pauses.

A sliding log (the start times of the last N requests) complies with any per-minute rule the gateway
may apply (fixed or sliding windows) while still allowing a burst of N at the start. Slots are reserved
under a thread lock, so one limiter serves several event loops and threads; the clock and the sleep are
injectable so tests assert on computed waits instead of timing.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from .errors import OptionError

__all__ = ["RateLimiter", "projected_seconds"]


class RateLimiter:
    """Allow at most ``limit`` request starts per ``window`` seconds (``limit=None``: no limit)."""

    def __init__(
        self,
        limit: int | None,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        """Create a limiter; ``clock`` returns seconds, ``sleep`` waits that many seconds."""
        if limit is not None and limit < 1:
            raise OptionError(f"limit must be at least 1 or None, not {limit}")
        self.limit = limit
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self._starts: deque[float] = deque()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserve the earliest allowed start and return how many seconds to wait for it (0 = go now)."""
        with self._lock:
            now = self.clock()
            at = max(now, self._paused_until)
            if self.limit is not None:
                while self._starts and self._starts[0] <= now - self.window:
                    self._starts.popleft()
                if self._starts:
                    at = max(at, self._starts[-1])
                if len(self._starts) >= self.limit:
                    at = max(at, self._starts[-self.limit] + self.window)
                self._starts.append(at)
            return at - now

    def pause(self, seconds: float) -> None:
        """Hold every start for ``seconds`` from now (a 429 with Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + max(0.0, seconds))

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        with self._lock:
            return max(0.0, self._paused_until - self.clock())

    async def acquire(self) -> float:
        """Wait for a slot (re-checking after a pause began meanwhile); return the seconds waited."""
        waited = 0.0
        while True:
            wait = self.reserve()
            if wait > 0:
                await self.sleep(wait)
                waited += wait
            if self.paused_for <= 0:
                return waited


def projected_seconds(requests: int, per_minute: int | None) -> float:
    """Return the least wall time (seconds) ``requests`` requests need under a per-minute limit.

    With a sliding window the first ``per_minute`` go at once and each further full window adds 60 s;
    network time is not included.
    """
    if per_minute is None or requests <= per_minute:
        return 0.0
    return 60.0 * math.ceil(requests / per_minute - 1)

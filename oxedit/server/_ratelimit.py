"""The account's enqueue rate limit, as a token bucket (`Faults.enqueue_rate_limit`).

The docs mention 429 "Rate limit exceeded" and document no limit, window or headers [doc];
a token bucket (a steady rate plus a burst) is the usual shape of such a limit [guess; no
doctor check: finding a limit means hitting it].
"""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; each enqueue takes one."""

    def __init__(self) -> None:
        self._tokens: float | None = None  # full at the first request
        self._at = 0.0

    def take(self, rate: float, burst: float | None) -> bool:
        """Take a token if one is there; False means answer 429."""
        capacity = burst if burst is not None else rate
        now = time.monotonic()
        if self._tokens is None:
            self._tokens = capacity
        else:
            self._tokens = min(capacity, self._tokens + (now - self._at) * rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

"""One adaptive limit on the enqueue rate, shared by every submit of a client.

The account's rate limit is not documented (nor are rate-limit headers), so it is learned:
additive increase, multiplicative decrease (AIMD), as TCP does. Until the rate is found too high,
enqueues are not paced at all, so a healthy run pays nothing.

"Too high" is a share of refusals (429 or 503), not one refusal: a moving average of refused
answers over the last few dozen (weight `RATE_EWMA`) reaching `RATE_REFUSED_SHARE`. A stray 429
from a proxy, or a few percent of flaky 503s, never slow a run down; sending faster than a limit
refuses a growing share and does. Then the rate is halved (the first time: half of what
succeeded in the last second), every send waits out a `Retry-After`, and each success adds
`RATE_INCREASE / rate` again (about +RATE_INCREASE enqueues/s each second).

Requests that were admitted at the old rate and still wait for a connection go back in line
when the rate drops (`ticket` changes), so a burst queued before the drop does not follow it.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time

from . import _constants as C
from ._api import ClientStats
from ._exceptions import ClientStateError

__all__ = ["AdaptiveRate"]


class AdaptiveRate:
    """AIMD pacer of `POST /api/ai/queue`.

    Args:
        initial: Enqueues per second to start from; None: unpaced until the first refusal.
        maximum: Never faster than this (None: no cap).

    Example:
        ```python
        rate = AdaptiveRate(initial=None, maximum=100.0)
        if rate.limited:
            await rate.acquire()
        ```
    """

    def __init__(
        self, *, initial: float | None, maximum: float | None, stats: ClientStats | None = None
    ) -> None:
        self.maximum = maximum
        self._stats = stats
        start = initial if initial is not None else maximum
        self.rate: float | None = None if start is None else min(start, maximum or math.inf)
        self.limited = self.rate is not None
        self.ticket = 0  # changes whenever admitted requests must queue again
        self.refusals = 0
        self.refused_share = 0.0  # moving average of refused answers (1) among all (0)
        self._next = 0.0  # loop time at which the next send may go
        self._pause_until = 0.0
        self._last_drop = -math.inf
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        # Successes in the current and previous one-second windows: the rate to halve at the
        # first refusal.
        self._window_start = 0.0
        self._window_ok = 0
        self._previous_ok = 0

    async def acquire(self) -> None:
        """Wait for this request's turn (FIFO), when the rate is limited."""
        if self._closed:
            raise ClientStateError("the client was closed; nothing was sent")
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.rate is None or (not self._waiters and now >= max(self._next, self._pause_until)):
            if self.rate is not None:
                self._next = now + 1.0 / self.rate
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._release(), name="oxedit-rate")
        await waiter

    async def _release(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiters:
            delay = max(self._next, self._pause_until) - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # the rate or a pause may have changed meanwhile
            waiter = self._waiters.popleft()
            if waiter.done():  # its submit was cancelled
                continue
            waiter.set_result(None)
            assert self.rate is not None
            self._next = loop.time() + 1.0 / self.rate

    def succeeded(self) -> None:
        """An enqueue was accepted: raise the rate a little (or count it, while unpaced)."""
        self.refused_share -= C.RATE_EWMA * self.refused_share
        if self.rate is None:
            now = time.monotonic()
            if now - self._window_start >= 1.0:
                self._previous_ok = self._window_ok if now - self._window_start < 2.0 else 0
                self._window_start = now
                self._window_ok = 0
            self._window_ok += 1
            return
        self.rate = min(self.rate + C.RATE_INCREASE / self.rate, self.maximum or math.inf)
        if self._stats is not None:
            self._stats.enqueue_rate = self.rate

    def refused(self, sent_at: float, retry_after: float | None) -> None:
        """An enqueue sent at Unix time `sent_at` was refused (429/503)."""
        now = asyncio.get_running_loop().time()
        self.refusals += 1
        self.refused_share += C.RATE_EWMA * (1.0 - self.refused_share)
        if self.refused_share < C.RATE_REFUSED_SHARE or sent_at < self._last_drop:
            return  # a stray refusal, or one sent at the old rate (answered already)
        if retry_after:  # a floor: nothing is sent before it
            self._pause_until = max(self._pause_until, now + retry_after)
        if self.rate is None:
            elapsed = max(time.monotonic() - self._window_start, 1.0)
            base = max(self._previous_ok, self._window_ok / elapsed)
        else:
            base = self.rate
        self.rate = max(C.RATE_MIN, base * C.RATE_DECREASE)
        self.limited = True
        self._last_drop = time.time()
        self.refused_share = 0.0  # the next decision on fresh evidence
        self.ticket += 1
        if self._stats is not None:
            self._stats.enqueue_rate = self.rate

    def close(self) -> None:
        """Fail every waiter: the client is closing."""
        self._closed = True
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    ClientStateError("the client was closed while this enqueue waited its turn")
                )
        if self._pump is not None:
            self._pump.cancel()

"""One adaptive limit on the enqueue rate, shared by every submit of a client.

The account's rate limit is not documented (nor are rate-limit headers), so it is learned:
additive increase, multiplicative decrease (AIMD), as TCP does. Until the rate is found too high,
enqueues are not paced, so a healthy run pays nothing but a slow start: like TCP's, the
enqueues in flight are at most `RATE_START_WINDOW`, plus one per success so far (a doubling
per round trip, so a healthy run reaches its full concurrency within a few milliseconds), up to
the connection slots.
That bounds what a burst sends before the first refusal comes back: a 50/s account with a
burst of 20 refuses at most `RATE_START_WINDOW + 20` of its first enqueues, not the 64 that
`max_connections` would have in flight.

What says "too high":
- A 429 with a `Retry-After` of a second or more: the server says the account's limit is
  reached and when to come back. Pacing starts at once.
- Any other refusal (a 429 without one, a 503) counts towards a share: a moving average of
  refused answers over the last few dozen (weight `RATE_EWMA`) reaching `RATE_REFUSED_SHARE`.
  A stray 429 from a proxy, or a few percent of flaky 503s, never slow a run down.
Then the rate is halved (the first time: half of what succeeded in the last second), every send
waits out the `Retry-After` (capped by the refused call's `RetryPolicy.retry_after_max`, as its
retry is: a daily quota's `Retry-After: 86400` must not stall every submit for a day), and each
success adds `RATE_INCREASE / rate` again (about +RATE_INCREASE enqueues/s each second).

Requests that were admitted at the old rate and still wait for a connection go back in line
when the rate drops (`ticket` changes), so a burst queued before the drop does not follow it.

Several processes sharing one account's limit (`oxedit.ray`'s actors) pass a `SharedPace`: it
then paces every send and learns from every refusal, and this pacer keeps only its slow start
(the window of enqueues in flight) and the process's counts. The engine knows nothing of what
is behind it (a Ray actor leasing tokens, in `oxedit.ray`).
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from typing import Protocol

from .. import _constants as C
from .._exceptions import ClientStateError
from .._http.api import Counters

__all__ = ["AdaptiveRate", "SharedPace"]


class SharedPace(Protocol):
    """A rate budget shared with other processes: asked before each enqueue is sent, told how
    each was answered."""

    async def acquire(self) -> None:
        """Wait for this send's turn in the shared budget."""

    @property
    def ticket(self) -> int:
        """Changes when a turn taken is over: a send admitted then and still waiting for a
        connection must `acquire` again (its late send would be part of a burst)."""

    def succeeded(self) -> None:
        """An enqueue was accepted."""

    def refused(self, sent_at: float, retry_after: float | None, status: int) -> None:
        """An enqueue sent at Unix time `sent_at` was refused (429/503), with `Retry-After`
        `retry_after` (seconds, or None)."""


_RECENT_MASK = (1 << C.RATE_RECENT_ANSWERS) - 1


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
        self,
        *,
        initial: float | None,
        maximum: float | None,
        stats: Counters | None = None,
        shared: SharedPace | None = None,
        max_window: int | None = None,
    ) -> None:
        self.maximum = maximum
        self._stats = stats
        self._shared = shared  # paces instead of this pacer's own rate (see the docstring)
        start = initial if initial is not None else maximum
        self.rate: float | None = None if start is None else min(start, maximum or math.inf)
        self.limited = self.rate is not None
        self._ticket = 0  # changes whenever admitted requests must queue again
        self.refusals = 0
        self.refused_share = 0.0  # moving average of refused answers (1) among all (0)
        # The last RATE_RECENT_ANSWERS answers, newest in the lowest bit (1: refused): a 429
        # that says when to come back paces at once only among others (see `refused`).
        self._recent = 0
        # The rate at which the account's limit was last found (by refusals together, or their
        # share): paced back up near it, a single such 429 is the limit again, not a stray.
        self._limit_rate: float | None = None
        self._next = 0.0  # loop time at which the next send may go
        self._pause_until = 0.0
        self._last_drop = -math.inf
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        # The slow start, while unpaced: enqueues in flight (`sending` to `answered`), and how
        # many may be; submits beyond it wait here, in order.
        self.in_flight = 0
        self.window = C.RATE_START_WINDOW
        # The window stops growing at the connection slots (`max_connections`): past them it
        # bounds nothing, and below them it keeps the submits beyond it waiting here, once,
        # instead of moving on to wait a second time for a slot (at 50,000 parked submits,
        # one more wait each is 50,000 more objects for the garbage collector).
        self.max_window = max(max_window or C.RATE_START_WINDOW, C.RATE_START_WINDOW)
        self._slots: collections.deque[asyncio.Future[None]] = collections.deque()
        self._reserved = 0  # slots held for woken waiters that have not run yet
        self._pump: asyncio.Task[None] | None = None
        self._closed = False
        # Successes in the current and previous one-second windows: the rate to halve at the
        # first refusal.
        self._window_start = 0.0
        self._window_ok = 0
        self._previous_ok = 0

    @property
    def ticket(self) -> int:
        """Changes whenever the requests admitted and still waiting for a connection must
        queue again (the rate dropped; or the shared budget's turns they took are over)."""
        return self._shared.ticket if self._shared is not None else self._ticket

    def must_wait(self) -> bool:
        """Whether a send must `acquire()` its turn first (paced, the start window full, or a
        `Retry-After` pause not over)."""
        return (
            self.limited
            or self._shared is not None
            or self.in_flight + self._reserved >= self.window
            or (self._pause_until > 0.0 and self._pause_until > asyncio.get_running_loop().time())
        )

    def sending(self) -> None:
        """An enqueue is being sent (each is `answered()` once, whatever happens to it)."""
        self.in_flight += 1

    def answered(self) -> None:
        """An enqueue that was `sending()` is over: a slot of the start window is free."""
        self.in_flight -= 1
        if self._slots:
            self._open_slots()

    def _open_slots(self, every: bool = False) -> None:
        """Wake the submits waiting for a slot, in order, as many as there are free slots
        (`every`: all of them, pacing started). Each woken one holds a slot (`_reserved`) until
        it runs, so a submit arriving meanwhile cannot take it."""
        while self._slots and (every or self.in_flight + self._reserved < self.window):
            waiter = self._slots.popleft()
            if not waiter.done():  # else its submit was cancelled
                waiter.set_result(None)
                self._reserved += 1

    async def acquire(self) -> None:
        """Wait for this request's turn (FIFO): while unpaced, a slot of the start window and
        the end of any `Retry-After` pause; once paced, its time. The caller calls `sending()`
        before it next awaits anything."""
        loop = asyncio.get_running_loop()
        held = False  # a slot of the start window, reserved for this request
        try:
            while self.rate is None:
                if self._closed:
                    raise ClientStateError("the client was closed; nothing was sent")
                if not held and self.in_flight + self._reserved < self.window and not self._slots:
                    self._reserved += 1
                    held = True
                elif not held:
                    slot: asyncio.Future[None] = loop.create_future()
                    self._slots.append(slot)
                    try:
                        await slot
                    finally:
                        # Woken (even if cancelled right after): `_open_slots` reserved a slot.
                        held = slot.done() and not slot.cancelled()
                    continue
                # Unpaced, but a `Retry-After` (capped, see `refused`) still holds every send.
                if not self._pause_until:  # never paused: no clock to read
                    break  # this send's turn (a shared budget's, below, when there is one)
                delay = self._pause_until - loop.time()
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
        except BaseException:
            if held:  # the slot goes to the next in line
                self._reserved -= 1
                held = False
                self._open_slots()
            raise
        finally:
            if held:  # returning: the caller's `sending()` takes the slot at once
                self._reserved -= 1
        if self._closed:
            raise ClientStateError("the client was closed; nothing was sent")
        if self._shared is not None:
            await self._shared.acquire()
            if self._closed:
                raise ClientStateError("the client was closed; nothing was sent")
            return
        if self.rate is None:
            return
        now = loop.time()
        if not self._waiters and now >= max(self._next, self._pause_until):
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
        """An enqueue was accepted: raise the rate a little (or count it, while unpaced).

        Called before the same enqueue's `answered()`, which hands on the slots it frees."""
        if self.refused_share:  # nothing refused lately: nothing to decay
            self.refused_share -= C.RATE_EWMA * self.refused_share
        if self._recent:
            self._recent = (self._recent << 1) & _RECENT_MASK
        if self._shared is not None:
            self._shared.succeeded()
        if self.rate is None:
            if self.window < self.max_window:
                self.window += 1  # the slow start: one more in flight per success
            now = time.monotonic()
            if now - self._window_start >= 1.0:
                self._previous_ok = self._window_ok if now - self._window_start < 2.0 else 0
                self._window_start = now
                self._window_ok = 0
            self._window_ok += 1
            return
        self.rate = min(self.rate + C.RATE_INCREASE / self.rate, self.maximum or math.inf)
        if self._stats is not None:
            self._stats.set_enqueue_rate(self.rate)

    def refused(
        self,
        sent_at: float,
        retry_after: float | None,
        *,
        status: int = 429,
        cap: float = C.RETRY_AFTER_MAX,
    ) -> None:
        """An enqueue sent at Unix time `sent_at` was refused (429/503) with `Retry-After`
        `retry_after` (seconds, or None); `cap` is the most the refused call's retry policy
        waits on a `Retry-After` (`RetryPolicy.retry_after_max`), and so the longest pause."""
        now = asyncio.get_running_loop().time()
        self.refusals += 1
        self.refused_share += C.RATE_EWMA * (1.0 - self.refused_share)
        self._recent = (self._recent << 1 | 1) & _RECENT_MASK
        if self.rate is None:
            # The slow start: the refused request's slot is not handed on, so a burst sends
            # nothing more while it cannot tell a stray refusal from the limit (the limit
            # refuses everything in flight; pacing starts at its RATE_LIMIT_REFUSALS-th).
            self.window = max(self.window - 1, 1)
        if self._shared is not None:  # the shared budget learns; this pacer stays unpaced
            self._shared.refused(sent_at, retry_after, status)
            return
        if sent_at < self._last_drop:
            return  # sent at the old rate: answered by that drop already
        # A 429 that says when to come back, among other refusals, says the account's limit
        # is reached: pace now (past a limit, the requests in flight are refused together).
        # Alone among successes it is a stray, harmless as any other: only its own request
        # waits its Retry-After (the retry loop). Pacing at each of them, 3% of stray 429s
        # with `Retry-After: 1` held every send a second each time and halved the rate.
        # Paced back up near the rate where the limit was found, one is enough. Anything else
        # pacing waits for a share of refusals.
        says_when = status == 429 and retry_after is not None and retry_after >= 1.0
        together = says_when and self._recent.bit_count() >= C.RATE_LIMIT_REFUSALS
        near = (
            says_when
            and self.rate is not None
            and self._limit_rate is not None
            and self.rate >= C.RATE_NEAR_LIMIT * self._limit_rate
        )
        found = together or self.refused_share >= C.RATE_REFUSED_SHARE
        if not found and not near:
            return
        if retry_after:  # a floor: nothing is sent before it (nor longer than a retry waits)
            self._pause_until = max(self._pause_until, now + min(retry_after, cap))
        self._last_drop = time.time()
        self.refused_share = 0.0  # the next decision on fresh evidence
        self._ticket += 1  # admitted requests not sent yet queue again, behind the pause
        if self.rate is None:
            if time.monotonic() - self._window_start >= 2.0:
                self._window_ok = 0  # the last success is older than the last two seconds
            elapsed = max(time.monotonic() - self._window_start, 1.0)
            base = max(self._previous_ok, self._window_ok / elapsed)
            if not base:
                # Nothing succeeded lately: no rate to halve (a pace of RATE_MIN would crawl
                # long after the limit lifts). The start again: a small window, the pause.
                self.window = C.RATE_START_WINDOW
                return
        else:
            base = self.rate
        if found:  # not lowered by a single refusal near it: strays would wear it down
            self._limit_rate = base
        self.rate = max(C.RATE_MIN, min(base * C.RATE_DECREASE, self.maximum or math.inf))
        self.limited = True
        self._open_slots(every=True)  # the start window's waiters: paced from now on
        if self._stats is not None:
            self._stats.set_enqueue_rate(self.rate)

    def close(self) -> None:
        """Fail every waiter: the client is closing."""
        self._closed = True
        self._open_slots(every=True)  # each finds the client closed
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(
                    ClientStateError("the client was closed while this enqueue waited its turn")
                )
        if self._pump is not None:
            self._pump.cancel()

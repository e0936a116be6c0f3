"""The retry engine, as pure functions: what is safe to retry, how long to wait, when to stop.

Every request oxedit repeats (API calls, the blocking edit, enqueues, result downloads,
uploads) goes round the one loop, `Retrying`, which asks `decide` the same question after each
failed attempt, so they all honour `Retry-After`, cap their waits and count their attempts
alike. The decisions are kept free of I/O so tests can call each piece directly
(`Retry-After` is read in `_response`); the loop only sleeps.
"""

from __future__ import annotations

import enum
import random
from asyncio import sleep
from collections.abc import Callable
from dataclasses import dataclass

from .. import _constants as C
from .._config import at_least, positive
from .._exceptions import InvalidRequestError

__all__ = [
    "RetryPolicy",
    "Retrying",
    "Verdict",
    "backoff",
    "classify",
    "classify_download",
    "decide",
]


class Verdict(enum.Enum):
    """What a response (or its absence) means for repeating the request that caused it."""

    DONE = "done"  # success, or an error that retrying will not change
    RETRY = "retry"  # the server did not act on it: sending it again is safe
    AMBIGUOUS = "ambiguous"  # the server may have acted on it: a POST must not be re-sent blindly


_RETRY_ANY: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
# 429 and 503 say the request was refused before it was acted upon; other 5xx on a POST may
# come after the server created the generation.
_RETRY_POST: frozenset[int] = frozenset({408, 429, 503})
_AMBIGUOUS_POST: frozenset[int] = frozenset({500, 502, 504})


def classify(method: str, status: int | None, *, sent: bool = True) -> Verdict:
    """Classify a response status, or a connection failure (`status=None`).

    Args:
        method: The HTTP method. Only POST is treated as unsafe to repeat.
        status: The response status, or None when no response came.
        sent: For `status=None`: whether the request may have reached the server (False when
            the connection could not even be opened).
    """
    idempotent = method != "POST"
    if status is None:
        return Verdict.RETRY if idempotent or not sent else Verdict.AMBIGUOUS
    if status < 400:
        return Verdict.DONE
    if idempotent:
        return Verdict.RETRY if status in _RETRY_ANY else Verdict.DONE
    if status in _RETRY_POST:
        return Verdict.RETRY
    if status in _AMBIGUOUS_POST:
        return Verdict.AMBIGUOUS
    return Verdict.DONE


def classify_download(status: int) -> Verdict:
    """Classify a result file host's answer: a 429 and every 5xx are worth another GET (file
    hosts and CDNs answer transient codes such as 520-524 that the API itself does not);
    anything else is the caller's to read (a 403 from an expired URL is refreshed, not retried).
    """
    return Verdict.RETRY if status == 429 or status >= 500 else Verdict.DONE


def backoff(
    attempt: int, *, initial: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random.

    `attempt` counts from 0. The fixed half keeps retries from bunching at zero delay; the
    random half spreads many clients (or many jobs of one client) apart.
    """
    step = min(maximum, initial * (2.0**attempt))
    return step / 2 + (rng or random).uniform(0, step / 2)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How requests that are safe to repeat are retried.

    Example:
        ```python
        Client(retry=RetryPolicy(max_retries=2))
        ```
    """

    max_retries: int = C.MAX_RETRIES
    initial: float = C.RETRY_BACKOFF_INITIAL
    maximum: float = C.RETRY_BACKOFF_MAX
    retry_after_max: float = C.RETRY_AFTER_MAX

    def __post_init__(self) -> None:
        at_least("max_retries", self.max_retries, 0, whole=True)
        positive("initial", self.initial)
        positive("maximum", self.maximum)
        at_least("retry_after_max", self.retry_after_max, 0)
        if not self.initial <= self.maximum:
            raise InvalidRequestError(
                f"initial={self.initial!r} must be at most maximum={self.maximum!r}"
            )

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait before retry number `attempt` (from 0).

        A server's `Retry-After` wins over the computed backoff (capped at `retry_after_max`),
        with up to 10% jitter added so a burst of refused requests does not return at once.
        """
        if retry_after is not None:
            wait = min(retry_after, self.retry_after_max)
            return wait + (rng or random).uniform(0, wait * 0.1 + 0.01)
        return backoff(attempt, initial=self.initial, maximum=self.maximum, rng=rng)


def decide(
    policy: RetryPolicy,
    attempt: int,
    verdict: Verdict,
    retry_after: float | None = None,
    *,
    rng: random.Random | None = None,
) -> float | None:
    """After failed attempt number `attempt` (from 0): the seconds to wait before sending the
    request again, or None to give up and raise.

    Only a `Verdict.RETRY` is repeated: `DONE` will not change, and an `AMBIGUOUS` POST may have
    been acted on (the enqueue asks the queue first, and passes `RETRY` once it knows the POST
    created nothing). `retry_after` is the server's `Retry-After`, in seconds, if it sent one.
    """
    if verdict is not Verdict.RETRY or attempt >= policy.max_retries:
        return None
    return policy.delay(attempt, retry_after, rng)


class Retrying:
    """The one retry loop: attempt, decide, count, sleep, attempt again.

    `async for attempt in Retrying(policy):` runs its body once per attempt (`attempt` counts
    from 0). A body that succeeds leaves the loop (`return`). One that failed says so,
    `failed(error, verdict, retry_after)`, and lets the pass end: the loop then raises `error`
    when `decide` says stop, or else calls `on_retry(error)`, sleeps and runs the body again. A
    body that sent nothing (its turn was taken back; another form of the same request) calls
    `again()`: the body runs again at once, and no attempt is counted. A pass that ends with
    neither is a bug, and raises `RuntimeError` rather than send again unasked.

    An async iterator rather than a function given the attempt as a callback: the body stays
    in its caller's coroutine, so a request parked inside it (10,000 submits waiting for their
    turn) costs no frame or closure more, and a first try that succeeds allocates this object
    and one step of the loop, nothing per attempt.

    Example:
        ```python
        retrying = Retrying(policy, on_retry=lambda error: log.debug("again: %s", error))
        async for _ in retrying:
            try:
                return await send()
            except APIConnectionError as exc:
                retrying.failed(exc, classify("GET", None, sent=exc.sent))
        ```
    """

    __slots__ = ("_again", "_error", "_on_retry", "_policy", "_retry_after", "_verdict", "attempt")

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        on_retry: Callable[[BaseException], object] | None = None,
    ) -> None:
        self._policy = policy
        self._on_retry = on_retry
        self.attempt = -1  # the attempt running now, from 0 (-1: the loop has not started)
        self._error: BaseException | None = None
        self._verdict = Verdict.DONE
        self._retry_after: float | None = None
        self._again = False

    def failed(
        self, error: BaseException, verdict: Verdict, retry_after: float | None = None
    ) -> None:
        """This attempt failed with `error` (raised as it is if there is no retry);
        `verdict` says whether sending again is safe, `retry_after` is the server's
        `Retry-After` in seconds, if it sent one."""
        self._error, self._verdict, self._retry_after = error, verdict, retry_after

    def again(self) -> None:
        """Run the body again at once, counting no attempt: nothing was sent this pass."""
        self._again = True

    async def after(
        self, error: BaseException, verdict: Verdict, retry_after: float | None = None
    ) -> int:
        """The loop's step after a failed attempt, for a caller that runs its own loop and
        makes this object only once an attempt failed (the enqueue: a first try that succeeds
        then allocates nothing for retries). Raises `error` when there is no retry; else
        counts, sleeps and returns the number of the attempt to run next."""
        if self.attempt < 0:
            self.attempt = 0  # the failed attempt was the first
        self.failed(error, verdict, retry_after)
        return await self.__anext__()

    def __aiter__(self) -> Retrying:
        return self

    async def __anext__(self) -> int:
        error = self._error
        if error is not None:
            self._error = None
            wait = decide(self._policy, self.attempt, self._verdict, self._retry_after)
            if wait is None:
                raise error
            if self._on_retry is not None:
                self._on_retry(error)
            await sleep(wait)
            self.attempt += 1
        elif self._again:
            self._again = False
        elif self.attempt < 0:
            self.attempt = 0
        else:
            raise RuntimeError("a retried request neither returned, failed nor asked again")
        return self.attempt

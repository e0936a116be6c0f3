"""Retry policy as pure functions: what to retry, how long to wait, how to read `Retry-After`.

Kept free of I/O so tests can call each piece directly.
"""

from __future__ import annotations

import email.utils
import enum
import random
import time
from dataclasses import dataclass

from . import _constants as C
from ._exceptions import InvalidRequestError

__all__ = ["Outcome", "RetryPolicy", "backoff", "classify", "parse_retry_after"]


class Outcome(enum.Enum):
    """What a response (or its absence) means for the request that caused it."""

    DONE = "done"  # success, or an error that retrying will not change
    RETRY = "retry"  # the server did not act on it: sending it again is safe
    AMBIGUOUS = "ambiguous"  # the server may have acted on it: a POST must not be re-sent blindly


_RETRY_ANY: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
# 429 and 503 say the request was refused before it was acted upon; other 5xx on a POST may
# come after the server created the generation.
_RETRY_POST: frozenset[int] = frozenset({408, 429, 503})
_AMBIGUOUS_POST: frozenset[int] = frozenset({500, 502, 504})


def classify(method: str, status: int | None, *, sent: bool = True) -> Outcome:
    """Classify a response status, or a connection failure (`status=None`).

    Args:
        method: The HTTP method. Only POST is treated as unsafe to repeat.
        status: The response status, or None when no response came.
        sent: For `status=None`: whether the request may have reached the server (False when
            the connection could not even be opened).
    """
    idempotent = method != "POST"
    if status is None:
        return Outcome.RETRY if idempotent or not sent else Outcome.AMBIGUOUS
    if status < 400:
        return Outcome.DONE
    if idempotent:
        return Outcome.RETRY if status in _RETRY_ANY else Outcome.DONE
    if status in _RETRY_POST:
        return Outcome.RETRY
    if status in _AMBIGUOUS_POST:
        return Outcome.AMBIGUOUS
    return Outcome.DONE


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


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
        if self.max_retries < 0:
            raise InvalidRequestError(f"max_retries={self.max_retries!r} must be 0 or more")
        if not 0 < self.initial <= self.maximum:
            raise InvalidRequestError(
                f"initial={self.initial!r} must be positive and at most maximum={self.maximum!r}"
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

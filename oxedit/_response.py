"""HTTP facts shared by the transport, the retry engine and the error mapping.

Imports nothing of oxedit, so that `_exceptions` (the bottom of the package) can map an answer
to its exception and `_retry` can read `Retry-After` without either importing the transport.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["Response", "is_success", "parse_retry_after"]


class Response(NamedTuple):
    """An answer read to its end."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def is_success(status: int) -> bool:
    """The docs' examples answer 200; the spec allows any 2xx."""
    return 200 <= status < 300


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

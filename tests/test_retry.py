"""The retry policy's pure parts: what is retried, how long to wait, Retry-After."""

from __future__ import annotations

import random

import pytest

from oxedit import RetryPolicy
from oxedit._retry import Outcome, backoff, classify, parse_retry_after


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("POST", 200, Outcome.DONE),
        ("POST", 400, Outcome.DONE),
        ("POST", 401, Outcome.DONE),
        ("POST", 404, Outcome.DONE),
        ("POST", 429, Outcome.RETRY),
        ("POST", 503, Outcome.RETRY),
        ("POST", 500, Outcome.AMBIGUOUS),
        ("POST", 502, Outcome.AMBIGUOUS),
        ("POST", 504, Outcome.AMBIGUOUS),
        ("GET", 500, Outcome.RETRY),
        ("GET", 429, Outcome.RETRY),
        ("GET", 404, Outcome.DONE),
        ("DELETE", 503, Outcome.RETRY),
    ],
)
def test_classify_status(method: str, status: int, expected: Outcome) -> None:
    assert classify(method, status) is expected


def test_classify_lost_response() -> None:
    assert classify("POST", None, sent=True) is Outcome.AMBIGUOUS
    assert classify("POST", None, sent=False) is Outcome.RETRY  # never reached the server
    assert classify("GET", None, sent=True) is Outcome.RETRY


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        (" 10 ", 10.0),
        ("-4", 0.0),
        ("", None),
        (None, None),
        ("soon", None),
        ("nan", None),
        ("Wed, 25 Nov 2026 12:00:10 GMT", 10.0),
        ("Wed, 25 Nov 2026 11:59:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = 1795608000.0  # Wed, 25 Nov 2026 12:00:00 GMT
    assert parse_retry_after(header, now=now) == expected


def test_backoff_grows_with_jitter_within_bounds() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        step = min(8.0, 0.25 * 2**attempt)
        delays = [backoff(attempt, initial=0.25, maximum=8.0, rng=rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 100  # jittered, not fixed


def test_policy_honours_retry_after_with_a_cap() -> None:
    policy = RetryPolicy(retry_after_max=5.0)
    rng = random.Random(2)
    assert 2.0 <= policy.delay(0, retry_after=2.0, rng=rng) <= 2.21
    assert 5.0 <= policy.delay(0, retry_after=3600.0, rng=rng) <= 5.51
    assert 0.125 <= policy.delay(0, rng=rng) <= 0.25


@pytest.mark.parametrize(
    "kwargs", [{"max_retries": -1}, {"initial": 0.0}, {"initial": 10.0, "maximum": 1.0}]
)
def test_policy_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]

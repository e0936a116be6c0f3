"""The retry policy's pure parts: what is retried, how long to wait, Retry-After."""

from __future__ import annotations

import random

import pytest

from oxedit import RetryPolicy
from oxedit._http.retry import Verdict, backoff, classify, classify_download, decide
from oxedit._response import parse_retry_after


@pytest.mark.parametrize(
    ("method", "status", "expected"),
    [
        ("POST", 200, Verdict.DONE),
        ("POST", 400, Verdict.DONE),
        ("POST", 401, Verdict.DONE),
        ("POST", 404, Verdict.DONE),
        ("POST", 429, Verdict.RETRY),
        ("POST", 503, Verdict.RETRY),
        ("POST", 500, Verdict.AMBIGUOUS),
        ("POST", 502, Verdict.AMBIGUOUS),
        ("POST", 504, Verdict.AMBIGUOUS),
        ("GET", 500, Verdict.RETRY),
        ("GET", 429, Verdict.RETRY),
        ("GET", 404, Verdict.DONE),
        ("DELETE", 503, Verdict.RETRY),
    ],
)
def test_classify_status(method: str, status: int, expected: Verdict) -> None:
    assert classify(method, status) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, Verdict.DONE),
        (302, Verdict.DONE),  # redirects are followed by the transport before this
        (403, Verdict.DONE),  # an expired URL: refreshed by the caller, not retried
        (404, Verdict.DONE),
        (408, Verdict.DONE),
        (428, Verdict.DONE),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (501, Verdict.RETRY),
        (503, Verdict.RETRY),
        (522, Verdict.RETRY),  # a CDN's connection timed out
        (599, Verdict.RETRY),
    ],
)
def test_classify_download(status: int, expected: Verdict) -> None:
    assert classify_download(status) is expected


def test_classify_lost_response() -> None:
    assert classify("POST", None, sent=True) is Verdict.AMBIGUOUS
    assert classify("POST", None, sent=False) is Verdict.RETRY  # never reached the server
    assert classify("GET", None, sent=True) is Verdict.RETRY


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


# -- decide: the one answer every retry loop asks for --------------------------------------------

POLICY = RetryPolicy(max_retries=2, initial=1.0, maximum=4.0, retry_after_max=10.0)


@pytest.mark.parametrize("verdict", [Verdict.DONE, Verdict.AMBIGUOUS])
def test_decide_never_repeats_what_is_not_safe_to(verdict: Verdict) -> None:
    assert decide(POLICY, 0, verdict) is None
    assert decide(POLICY, 0, verdict, retry_after=0.0) is None  # however soon the server says


def test_decide_gives_up_after_max_retries() -> None:
    assert decide(POLICY, 0, Verdict.RETRY) is not None
    assert decide(POLICY, 1, Verdict.RETRY) is not None
    assert decide(POLICY, 2, Verdict.RETRY) is None  # the third failure: two retries were made
    assert decide(RetryPolicy(max_retries=0), 0, Verdict.RETRY, retry_after=1.0) is None


def test_decide_backs_off_by_attempt_within_the_maximum() -> None:
    rng = random.Random(3)
    many = RetryPolicy(max_retries=10, initial=1.0, maximum=4.0)
    for attempt, step in [(0, 1.0), (1, 2.0), (2, 4.0), (5, 4.0)]:
        wait = decide(many, attempt, Verdict.RETRY, rng=rng)
        assert wait is not None and step / 2 <= wait <= step


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [(0.0, 0.0, 0.01), (3.0, 3.0, 3.31), (3600.0, 10.0, 11.01)],  # capped at retry_after_max
)
def test_decide_waits_the_servers_retry_after_over_its_own_backoff(
    retry_after: float, low: float, high: float
) -> None:
    wait = decide(POLICY, 1, Verdict.RETRY, retry_after, rng=random.Random(4))
    assert wait is not None and low <= wait <= high

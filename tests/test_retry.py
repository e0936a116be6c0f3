"""The retry policy's pure parts (what is retried, how long to wait, Retry-After) and the one
loop around them, `Retrying`, driven directly."""

from __future__ import annotations

import asyncio
import random

import pytest

from oxedit import RetryPolicy
from oxedit._http import retry as retry_module
from oxedit._http.retry import Retrying, Verdict, backoff, classify, classify_download, decide
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


# -- the one retry loop, `Retrying`, at its edges ---------------------------------------------

LOOP = RetryPolicy(max_retries=3, initial=0.5, maximum=4.0, retry_after_max=10.0)


class Boom(Exception):
    pass


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The loop's waits, recorded instead of slept (the waits are `decide`'s, tested above)."""
    waits: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(retry_module, "sleep", fake_sleep)
    return waits


async def run(
    retrying: Retrying, outcomes: list[tuple[Verdict, float | None] | str], seen: list[int]
) -> str:
    """Drive the loop: each outcome is a failure (verdict, Retry-After), "ok", "again" or
    "nothing" (a pass that reports nothing); `seen` gets each attempt's number."""
    errors = iter(range(100))
    async for attempt in retrying:
        seen.append(attempt)
        outcome = outcomes.pop(0)
        if outcome == "ok":
            return f"ok after {attempt}"
        if outcome == "again":
            retrying.again()
        elif outcome != "nothing":
            assert not isinstance(outcome, str)
            retrying.failed(Boom(f"failure {next(errors)}"), *outcome)
    raise AssertionError("unreachable")


@pytest.mark.anyio
async def test_retrying_first_try_success_sleeps_and_counts_nothing(sleeps: list[float]) -> None:
    retried: list[BaseException] = []
    seen: list[int] = []
    assert await run(Retrying(LOOP, on_retry=retried.append), ["ok"], seen) == "ok after 0"
    assert (seen, sleeps, retried) == ([0], [], [])


@pytest.mark.anyio
async def test_retrying_repeats_until_success_counting_each_retry(sleeps: list[float]) -> None:
    retried: list[BaseException] = []
    seen: list[int] = []
    retrying = Retrying(LOOP, on_retry=retried.append)
    outcomes: list[tuple[Verdict, float | None] | str] = [
        (Verdict.RETRY, None),
        (Verdict.RETRY, None),
        "ok",
    ]
    assert await run(retrying, outcomes, seen) == "ok after 2"
    assert seen == [0, 1, 2]
    assert [str(e) for e in retried] == ["failure 0", "failure 1"]
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0  # backoff by attempt


@pytest.mark.anyio
async def test_retrying_gives_up_after_max_retries_raising_the_last_error_itself(
    sleeps: list[float],
) -> None:
    retried: list[BaseException] = []
    seen: list[int] = []
    outcomes: list[tuple[Verdict, float | None] | str] = [(Verdict.RETRY, None)] * 5
    with pytest.raises(Boom, match="failure 3"):
        await run(Retrying(LOOP, on_retry=retried.append), outcomes, seen)
    assert seen == [0, 1, 2, 3] and len(sleeps) == len(retried) == 3


@pytest.mark.anyio
async def test_retrying_with_no_retries_raises_the_first_failure(sleeps: list[float]) -> None:
    seen: list[int] = []
    with pytest.raises(Boom, match="failure 0"):
        await run(Retrying(RetryPolicy(max_retries=0)), [(Verdict.RETRY, None)], seen)
    assert (seen, sleeps) == ([0], [])


@pytest.mark.anyio
@pytest.mark.parametrize("verdict", [Verdict.DONE, Verdict.AMBIGUOUS])
async def test_retrying_never_repeats_what_is_not_safe_to(
    verdict: Verdict, sleeps: list[float]
) -> None:
    retried: list[BaseException] = []
    with pytest.raises(Boom, match="failure 0"):
        await run(Retrying(LOOP, on_retry=retried.append), [(verdict, 1.0), "ok"], [])
    assert (sleeps, retried) == ([], [])


@pytest.mark.anyio
async def test_retrying_waits_the_servers_retry_after_capped(sleeps: list[float]) -> None:
    outcomes: list[tuple[Verdict, float | None] | str] = [
        (Verdict.RETRY, 3.0),
        (Verdict.RETRY, 3600.0),
        "ok",
    ]
    await run(Retrying(LOOP), outcomes, [])
    assert 3.0 <= sleeps[0] <= 3.0 * 1.1 + 0.01  # over the 0.5 s backoff, with its jitter
    assert 10.0 <= sleeps[1] <= 10.0 * 1.1 + 0.01  # capped at retry_after_max


@pytest.mark.anyio
async def test_retrying_again_repeats_at_once_without_counting_an_attempt(
    sleeps: list[float],
) -> None:
    retried: list[BaseException] = []
    seen: list[int] = []
    outcomes: list[tuple[Verdict, float | None] | str] = [
        "again",
        (Verdict.RETRY, None),
        "again",
        "again",
        (Verdict.RETRY, None),
    ]
    with pytest.raises(Boom, match="failure 1"):
        await run(Retrying(RetryPolicy(max_retries=1), on_retry=retried.append), outcomes, seen)
    # Two attempts counted (the policy's one retry), however many passes went again.
    assert seen == [0, 0, 1, 1, 1] and len(sleeps) == len(retried) == 1


@pytest.mark.anyio
async def test_retrying_refuses_a_pass_that_reports_nothing(sleeps: list[float]) -> None:
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="neither returned, failed nor asked again"):
        await run(Retrying(LOOP), ["nothing", "ok"], seen)
    assert seen == [0]  # not sent again unasked


@pytest.mark.anyio
async def test_retrying_lets_the_bodys_own_exceptions_through(sleeps: list[float]) -> None:
    retrying = Retrying(LOOP)
    with pytest.raises(KeyError):
        async for _ in retrying:
            raise KeyError("not a reported failure")
    assert sleeps == []


@pytest.mark.anyio
async def test_retrying_cancelled_while_waiting_runs_no_more_attempts() -> None:
    seen: list[int] = []
    policy = RetryPolicy(max_retries=3, initial=3600.0, maximum=3600.0)
    waiting = asyncio.Event()
    retrying = Retrying(policy, on_retry=lambda _: waiting.set())
    task = asyncio.create_task(run(retrying, [(Verdict.RETRY, None), "ok"], seen))
    await waiting.wait()  # the first attempt failed; the loop is to wait an hour
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [0]

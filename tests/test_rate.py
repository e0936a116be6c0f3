"""The adaptive enqueue rate: unpaced when healthy, near the account's limit when not."""

from __future__ import annotations

import asyncio
import math

import pytest

import oxedit
from oxedit import _constants as C
from oxedit._engine.ratelimit import AdaptiveRate
from oxedit._http.api import Counters
from oxedit.testing import Faults, LocalServer

from .helpers import FAST_RETRY, eventually, png

pytestmark = pytest.mark.anyio


async def test_unpaced_until_refusals_are_a_share_not_a_stray() -> None:
    rate = AdaptiveRate(initial=None, maximum=None)
    assert not rate.limited and rate.rate is None
    for _ in range(40):
        rate.succeeded()
    for _ in range(200):  # 5% of refusals, evenly spread: a flaky proxy, not a limit
        rate.refused(sent_at=1e12, retry_after=None)
        for _ in range(19):
            rate.succeeded()
    assert not rate.limited
    for _ in range(10):  # a run of refusals: over the limit
        rate.refused(sent_at=1e12, retry_after=None)
    # Half of what succeeded in the last second.
    assert rate.limited and rate.rate is not None and rate.rate >= C.RATE_MIN


async def test_additive_increase_multiplicative_decrease_and_the_cap() -> None:
    stats = Counters()
    rate = AdaptiveRate(initial=10.0, maximum=12.0, stats=stats)
    assert rate.limited and rate.rate == 10.0
    for _ in range(10):  # about one second of successes at 10/s: about +2/s
        rate.succeeded()
    assert rate.rate == pytest.approx(11.9, abs=0.1)
    for _ in range(50):
        rate.succeeded()
    assert rate.rate == 12.0 == stats.enqueue_rate  # never over max_rate
    ticket = rate.ticket
    for _ in range(10):  # a run of refusals: the share climbs over RATE_REFUSED_SHARE
        rate.refused(sent_at=1e12, retry_after=None)
    assert rate.rate == 6.0 and rate.ticket == ticket + 1
    # Refusals of requests sent before that decrease were answered by it already.
    for _ in range(10):
        rate.refused(sent_at=0.0, retry_after=None)
    assert rate.rate == 6.0


async def test_paced_requests_go_in_order_and_close_releases_them() -> None:
    rate = AdaptiveRate(initial=1000.0, maximum=None)
    order: list[int] = []

    async def one(i: int) -> None:
        await rate.acquire()
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(20)))
    assert order == list(range(20))
    slow = AdaptiveRate(initial=1.0, maximum=None)
    await slow.acquire()  # the first goes at once
    waiting = asyncio.ensure_future(slow.acquire())
    await asyncio.sleep(0)
    slow.close()
    with pytest.raises(oxedit.ClientStateError):
        await waiting


@pytest.mark.parametrize("bad", [0, -1.0])
def test_limits_reject_bad_rates(bad: float) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match="max_rate"):
        oxedit.Limits(max_rate=bad)


async def test_a_burst_loses_at_most_the_start_window_to_an_unknown_limit() -> None:
    # 200 submits at once against an account allowing a burst of 20 (and next to nothing
    # after), each 429 saying `Retry-After: 60`. Before the first refusal comes back the
    # client cannot know the limit; what it guarantees, on any machine, is that it has at most
    # RATE_START_WINDOW + (its successes) enqueues in flight, and that the first such 429 stops
    # every other send. So at most RATE_START_WINDOW + 20 are refused. Before the slow start
    # up to `max_connections` (64) were in flight, plus one more sent for each success while
    # the refusals were on their way back: 45 refused here, 70 of 1,070 in a 100/s
    # burst (6.5%), the limiter's own target missed.
    burst = 20
    faults = Faults(enqueue_rate_limit=0.01, enqueue_burst=burst, retry_after=60)
    no_retry = oxedit.RetryPolicy(max_retries=0)
    async with LocalServer(faults=faults) as server:
        async with server.client(retry=no_retry) as client:
            submits = [
                asyncio.ensure_future(client.submit(prompt=f"{i}", image=png())) for i in range(200)
            ]
            # Every POST sent was answered (each ends its submit: no retries), and the rest
            # wait out the pause: the first wave is over.
            await eventually(
                lambda: (
                    client.stats.enqueue_refusals > 0
                    and sum(s.done() for s in submits) == client.stats.enqueue_requests
                )
            )
            refused = client.stats.enqueue_refusals
            assert refused == server.stats.rate_limited
            assert refused <= C.RATE_START_WINDOW + burst, refused
            assert client.stats.enqueue_rate is not None  # paced from the first refusal on
        results = await asyncio.gather(*submits, return_exceptions=True)
    created = [r for r in results if isinstance(r, oxedit.Job)]
    assert len(created) == server.stats.generations_created == burst
    limited = [r for r in results if isinstance(r, oxedit.RateLimitError)]
    assert len(limited) == refused and all(e.retry_after == 60 for e in limited)
    # The rest were never sent: the client closed while they waited for the pause to end.
    unsent = [r for r in results if isinstance(r, oxedit.ClientStateError)]
    assert len(unsent) == 200 - client.stats.enqueue_requests == 200 - burst - refused


async def test_a_day_long_retry_after_stalls_no_submit() -> None:
    # A daily quota says `Retry-After: 86400`. The pacer used to pause every send for that
    # long (the retry loop's `retry_after_max` did not apply), so these submits waited a day
    # although the server accepts again after 12 refusals. Now the pause is capped as the
    # retry is: the whole batch takes a fraction of a second.
    faults = Faults(refuse_enqueues=12, retry_after=86_400)
    async with LocalServer(faults=faults) as server, server.client(retry=FAST_RETRY) as client:
        async with asyncio.timeout(10):
            jobs = await asyncio.gather(
                *(client.submit(prompt=f"{i}", image=png()) for i in range(20))
            )
        assert len({job.id for job in jobs}) == 20
        assert client.stats.enqueue_refusals == 12
    assert server.stats.generations_created == 20


async def test_an_endless_retry_after_pauses_no_longer_than_the_cap() -> None:
    rate = AdaptiveRate(initial=1000.0, maximum=None)
    rate.refused(sent_at=1e12, retry_after=math.inf, cap=0.01)
    assert rate.limited and rate.must_wait()
    async with asyncio.timeout(5):
        await rate.acquire()
    rate.close()


async def test_429s_with_retry_after_pace_at_once_together_and_a_stray_one_does_not() -> None:
    window, together = C.RATE_RECENT_ANSWERS, C.RATE_LIMIT_REFUSALS  # 8 and 4
    for retry_after in (None, 1.0):  # strays, with or without Retry-After: harmless
        stray = AdaptiveRate(initial=None, maximum=None)
        for _ in range(20):
            stray.succeeded()
        for _ in range(together):  # as many as a limit's, each alone among its last answers
            stray.refused(sent_at=1e12, retry_after=retry_after)
            for _ in range(window - together + 1):
                stray.succeeded()
        assert not stray.limited and not stray.must_wait()
    limit = AdaptiveRate(initial=None, maximum=None)
    for _ in range(20):
        limit.succeeded()
    for _ in range(together - 1):
        limit.refused(sent_at=1e12, retry_after=1.0)
        limit.succeeded()
    assert not limit.limited  # one short of a limit's among the last answers
    limit.refused(sent_at=1e12, retry_after=1.0)  # the limit, long before a 20% share
    assert limit.refused_share < C.RATE_REFUSED_SHARE
    # Half of what succeeded in the last second, and every send waits out the Retry-After.
    assert limit.limited and limit.rate == (20 + together - 1) / 2 and limit.must_wait()


async def test_refusals_hand_no_slot_on_while_a_limit_is_not_known_yet() -> None:
    # The slow start: 8 enqueues in flight, a ninth waiting for a slot. The limit refuses
    # all 8; until the 4th refusal (pacing) nothing more may go, or the burst would lose more
    # than the 8 in flight (plus the account's burst) to refusals.
    rate = AdaptiveRate(initial=None, maximum=None)
    for _ in range(C.RATE_START_WINDOW):
        assert not rate.must_wait()
        rate.sending()
    ninth = asyncio.ensure_future(rate.acquire())
    await asyncio.sleep(0)
    for _ in range(C.RATE_LIMIT_REFUSALS - 1):
        rate.refused(sent_at=1e12, retry_after=1.0)
        rate.answered()
        await asyncio.sleep(0)
        assert not ninth.done() and not rate.limited
    rate.refused(sent_at=1e12, retry_after=1.0)
    rate.answered()
    # The limit: nothing succeeded, so no rate to halve; the start again, behind the pause.
    assert rate.in_flight < rate.window and rate.must_wait()
    await asyncio.sleep(0)
    assert not ninth.done()
    rate.close()
    with pytest.raises(oxedit.ClientStateError):
        await ninth


async def test_paced_back_near_the_limit_one_429_is_the_limit_again() -> None:
    rate = AdaptiveRate(initial=None, maximum=None)
    for _ in range(40):
        rate.succeeded()
    for _ in range(C.RATE_LIMIT_REFUSALS):  # the limit found, at 40 enqueues/s
        rate.refused(sent_at=1e12, retry_after=1.0)
    assert rate.rate == 20.0
    for _ in range(C.RATE_RECENT_ANSWERS):
        rate.succeeded()
    paced = rate.rate
    rate.refused(sent_at=1e12, retry_after=1.0)  # alone, far below it: a stray
    assert rate.rate == paced
    rate.rate = 0.9 * 40  # paced back up near it (as successes do, about 2/s a second)
    for _ in range(C.RATE_RECENT_ANSWERS):
        rate.succeeded()
    near = rate.rate
    rate.refused(sent_at=1e12, retry_after=1.0)  # alone, but where the limit was: the limit
    assert rate.rate == near / 2
    # That single refusal did not move where the limit is known to be (strays would wear it
    # down, 10% a time): at 34/s, under 0.9 x 40 but over 0.9 x 36, one is a stray again.
    rate.rate = 34.0
    for _ in range(C.RATE_RECENT_ANSWERS):
        rate.succeeded()
    paced = rate.rate
    assert paced < 0.9 * 40
    rate.refused(sent_at=1e12, retry_after=1.0)
    assert rate.rate == paced


async def test_stray_429s_with_retry_after_leave_the_run_unpaced() -> None:
    # 3% of enqueues refused at random with `Retry-After: 1` (the fault mix of
    # `benchmarks.liveness`): each refused request waits its own Retry-After and is sent again,
    # the others go on. Pacing every send at each such 429 took that benchmark's 2,000 jobs
    # 228 s instead of 10: the rate halved at every stray refusal and never grew back.
    faults = Faults(seed=3, enqueue_429_rate=0.03, retry_after=1)
    async with LocalServer(faults=faults) as server, server.client(retry=FAST_RETRY) as client:
        submits = (client.submit(prompt=f"{i}", image=png()) for i in range(300))
        jobs = await asyncio.gather(*submits)
        assert len({job.id for job in jobs}) == 300 == server.stats.generations_created
        assert client.stats.enqueue_refusals >= 3  # strays came (9 expected)
        assert client.stats.enqueue_rate is None  # and nothing was paced


async def test_max_rate_paces_from_the_start(oxen_server: LocalServer) -> None:
    limits = oxedit.Limits(max_rate=50.0)
    async with oxen_server.client(limits=limits) as client:
        await asyncio.gather(*(client.submit(prompt=f"{i}", image=png()) for i in range(20)))
        assert client.stats.enqueue_rate == 50.0
        assert client.stats.enqueue_refusals == 0


class CountingPace:
    """A `SharedPace` that admits every send and counts what it is told."""

    def __init__(self) -> None:
        self.acquired = 0
        self.accepted = 0
        self.refusals: list[int] = []

    async def acquire(self) -> None:
        self.acquired += 1

    @property
    def ticket(self) -> int:
        return 0

    def succeeded(self) -> None:
        self.accepted += 1

    def refused(self, sent_at: float, retry_after: float | None, status: int) -> None:
        self.refusals.append(status)


async def test_a_shared_pace_is_asked_before_each_enqueue_and_told_each_answer() -> None:
    # `Client.share_rate`, as `oxedit.ray`'s actors use it: every send (the retries too)
    # takes its turn from the shared budget, which learns every answer.
    pace = CountingPace()
    faults = Faults(refuse_enqueues=3, retry_after=0)
    async with LocalServer(faults=faults) as server:
        client = server.client(retry=FAST_RETRY)
        client.share_rate(pace)
        async with client:
            await asyncio.gather(*(client.submit(prompt=f"{i}", image=png()) for i in range(5)))
            with pytest.raises(oxedit.ClientStateError, match="before the client is opened"):
                client.share_rate(pace)
    assert (pace.acquired, pace.accepted, pace.refusals) == (8, 5, [429, 429, 429])
    assert client.stats.enqueue_rate is None  # the budget paces, not this client


def test_the_progress_bar_shows_the_pace_once_enqueues_are_paced() -> None:
    import io

    from rich.console import Console

    from oxedit._cli.progress import BatchProgress

    pace: list[float | None] = [None]
    console = Console(file=io.StringIO(), width=200)
    progress = BatchProgress(console, total=2, clock=lambda: 100.0, pace=lambda: pace[0])
    assert "paced" not in progress.rate_text()  # a healthy run: nothing to say
    pace[0] = 42.4
    assert progress.rate_text() == "-/s (enqueues paced at 42/s)"

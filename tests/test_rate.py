"""The adaptive enqueue rate: unpaced when healthy, near the account's limit when not."""

from __future__ import annotations

import asyncio

import pytest

import oxedit
from oxedit import _constants as C
from oxedit._ratelimit import AdaptiveRate
from oxedit.testing import Faults, LocalServer

from .helpers import png

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
    stats = oxedit.ClientStats()
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


async def test_a_burst_against_a_rate_limit_settles_near_it() -> None:
    # 1,000 submits at once against an account limited to 100 enqueues/s: with fixed
    # concurrency 72% of the enqueues were answered 429 (and, with the default retries, most
    # submits failed); the adaptive rate keeps refusals under 5% and every job is created once.
    faults = Faults(enqueue_rate_limit=100, retry_after=None, latency=0.01)
    async with LocalServer(faults=faults, workers=64) as server:
        async with server.client() as client:
            jobs = await asyncio.gather(
                *(client.submit(prompt=f"{i}", image=png()) for i in range(1000))
            )
            assert len({job.id for job in jobs}) == 1000
            refusals = client.stats.enqueue_refusals
            assert refusals == server.stats.rate_limited > 0
            assert refusals < 0.05 * client.stats.enqueue_requests
            assert client.stats.enqueue_rate is not None
            assert client.stats.enqueue_rate < 200
        assert server.stats.generations_created == 1000


async def test_max_rate_paces_from_the_start(oxen_server: LocalServer) -> None:
    limits = oxedit.Limits(max_rate=50.0)
    async with oxen_server.client(limits=limits) as client:
        await asyncio.gather(*(client.submit(prompt=f"{i}", image=png()) for i in range(20)))
        assert client.stats.enqueue_rate == 50.0
        assert client.stats.enqueue_refusals == 0


def test_the_progress_bar_shows_the_pace_once_enqueues_are_paced() -> None:
    import io

    from rich.console import Console

    from oxedit._progress import BatchProgress

    pace: list[float | None] = [None]
    console = Console(file=io.StringIO(), width=200)
    progress = BatchProgress(console, total=2, clock=lambda: 100.0, pace=lambda: pace[0])
    assert "paced" not in progress.rate_text()  # a healthy run: nothing to say
    pace[0] = 42.4
    assert progress.rate_text() == "-/s (enqueues paced at 42/s)"

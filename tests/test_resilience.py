"""Every job resolves exactly once, to the server's truth, whatever the API and network do."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from aiohttp import web

import oxedit
from oxedit.testing import LocalServer

from .helpers import FAST, FAST_RETRY, client_for, eventually, png, serve

pytestmark = pytest.mark.anyio


async def settle(jobs: list[oxedit.Job]) -> dict[str, str]:
    """Await every job; map id -> status it ended with ("error:<type>" for errors)."""
    outcomes: dict[str, str] = {}
    for job in jobs:
        try:
            outcomes[job.id] = (await job).status
        except oxedit.GenerationFailed:
            outcomes[job.id] = "failed"
        except oxedit.GenerationCancelled:
            outcomes[job.id] = "cancelled"
    return outcomes


def assert_matches_server(server: LocalServer, outcomes: dict[str, str], submitted: int) -> None:
    rows = server.generations()
    assert len(rows) == submitted, "a generation was created twice (or not at all)"
    assert {row["generation_id"] for row in rows} == set(outcomes)
    for row in rows:
        assert outcomes[row["generation_id"]] == row["status"], row["generation_id"]
    assert sum(server.stats.generations_created_per_request) == submitted


async def test_stream_cut_every_few_events(oxen_server: LocalServer) -> None:
    oxen_server.faults.cut_stream_after_events = 7
    async with client_for(oxen_server, reconcile=FAST) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"blur {i}", image=png()) for i in range(120))
        )
        outcomes = await settle(jobs)
        assert client.stats.event_connections > 1
    assert_matches_server(oxen_server, outcomes, 120)


async def test_stream_dropped_mid_run_is_reconciled(oxen_server: LocalServer) -> None:
    oxen_server.faults.latency = (0.0, 0.05)
    async with client_for(oxen_server) as client:
        first = await asyncio.gather(
            *(client.submit(prompt=f"a {i}", image=png()) for i in range(50))
        )
        await oxen_server.drop_event_streams()
        second = await asyncio.gather(
            *(client.submit(prompt=f"b {i}", image=png()) for i in range(50))
        )
        outcomes = await settle([*first, *second])
        assert client.stats.event_connections == 2
    assert_matches_server(oxen_server, outcomes, 100)


async def test_silent_stream_is_detected_and_replaced(oxen_server: LocalServer) -> None:
    # A stream that stays open but sends nothing, not even keep-alives, is dead.
    oxen_server.faults.keepalive_interval = 0.05
    timeouts = oxedit.Timeouts(stream_idle=0.3)
    async with client_for(oxen_server, timeouts=timeouts, reconcile=FAST) as client:
        await (await client.submit(prompt="ok", image=png()))
        oxen_server.faults.stall_streams = True  # events for open streams are now lost
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"s {i}", image=png()) for i in range(10))
        )
        outcomes = await settle(jobs)  # by reconciliation, if the stream is not back yet
        await eventually(lambda: client.stats.event_connections >= 2)
    assert all(status == "succeeded" for status in outcomes.values())


async def test_a_stream_that_keeps_speaking_is_kept(oxen_server: LocalServer) -> None:
    # Its silence is found by the client's watchdog counting the bytes read since it last
    # looked: keep-alives every 0.05 s keep a 0.3 s `stream_idle` from ever ending it.
    oxen_server.faults.keepalive_interval = 0.05
    oxen_server.faults.latency = 1.2  # four times the idle timeout
    timeouts = oxedit.Timeouts(stream_idle=0.3)
    async with client_for(oxen_server, timeouts=timeouts, reconcile=FAST) as client:
        assert (await (await client.submit(prompt="ok", image=png()))).status == "succeeded"
        assert client.stats.event_connections == 1


async def test_a_stream_whose_head_never_comes_is_given_up_as_silent() -> None:
    # Until its head came, the stream's silence is timed as an API request's: the watchdog
    # cancels the wait; nothing is sent while the stream is not up.
    posts = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal posts
        if request.path == "/api/events":
            await asyncio.Event().wait()  # no head, ever
        if request.method == "POST":
            posts += 1
        return web.json_response({"id": "qwen-image-edit"})

    async with serve(handler) as url:
        client = oxedit.Client(
            api_key="k",
            base_url=url,
            retry=oxedit.RetryPolicy(max_retries=0),
            timeouts=oxedit.Timeouts(stream_idle=0.3),
        )
        async with client, asyncio.timeout(10):
            with pytest.raises(oxedit.APITimeoutError, match=r"0.3 s \(Timeouts.stream_idle\)"):
                await client.submit(prompt="p", image=png())
    assert posts == 0


@pytest.mark.oxen_faults(drop_event_rate=0.5, seed=11)
async def test_lost_events_are_found_at_a_bounded_rate(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server, reconcile=FAST) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"x {i}", image=png()) for i in range(100))
        )
        outcomes = await settle(jobs)
        lost = 100 - client.stats.events
        assert lost > 0
        # One list request per check, plus a GET for each job the list shows finished.
        assert client.stats.poll_requests <= 2 * lost + 20
    assert_matches_server(oxen_server, outcomes, 100)


@pytest.mark.slow
@pytest.mark.oxen_faults(enqueue_429_rate=0.4, enqueue_5xx_rate=0.2, retry_after=0, seed=5)
async def test_429_and_503_are_retried_without_duplicates(oxen_server: LocalServer) -> None:
    # 50 jobs, not 100: with 60% of the enqueues refused the adaptive rate paces at a few per
    # second (it cannot tell random refusals from a limit), and twice the jobs only doubles
    # the wait.
    async with client_for(oxen_server, retry=FAST_RETRY) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"r {i}", image=png()) for i in range(50))
        )
        outcomes = await settle(jobs)
        assert client.stats.retries > 0
        assert (
            client.stats.enqueue_requests
            == oxen_server.stats.requests_by_route["POST /api/ai/queue"]
        )
    assert_matches_server(oxen_server, outcomes, 50)


async def test_rate_limit_exhausted_raises_with_retry_after(oxen_server: LocalServer) -> None:
    oxen_server.faults.enqueue_429_rate = 1.0
    oxen_server.faults.retry_after = 0
    retry = oxedit.RetryPolicy(max_retries=2, initial=0.01, maximum=0.02)
    async with client_for(oxen_server, retry=retry) as client:
        with pytest.raises(oxedit.RateLimitError) as info:
            await client.submit(prompt="p", image=png())
    assert info.value.status_code == 429 and info.value.retry_after == 0
    assert oxen_server.stats.requests_by_route["POST /api/ai/queue"] == 3
    assert oxen_server.stats.generations_created == 0


@pytest.mark.oxen_faults(lost_response_rate=0.3, seed=8)
async def test_lost_post_responses_are_adopted_not_resent(oxen_server: LocalServer) -> None:
    # Default staleness checks: adopted jobs must resolve from their row or event, not from
    # a later reconciliation.
    reconcile = oxedit.ReconcilePolicy(lost_response_grace=0.05)
    async with client_for(oxen_server, reconcile=reconcile, retry=FAST_RETRY) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"l {i}", image=png()) for i in range(100))
        )
        assert len({job.id for job in jobs}) == 100
        outcomes = await settle(jobs)
        assert client.stats.lost_responses > 0
        assert client.stats.adopted == client.stats.lost_responses
    assert_matches_server(oxen_server, outcomes, 100)


@pytest.mark.oxen_faults(lost_response_rate=0.5, seed=9)
async def test_identical_requests_with_lost_responses_each_get_their_own(
    oxen_server: LocalServer,
) -> None:
    # Byte-identical bodies: rows cannot be told apart, so each lost POST may only adopt a
    # row no other submit has claimed.
    image = png()
    reconcile = oxedit.ReconcilePolicy(lost_response_grace=0.05)
    async with client_for(oxen_server, reconcile=reconcile, retry=FAST_RETRY) as client:
        jobs = await asyncio.gather(*(client.submit(prompt="same", image=image) for _ in range(30)))
        assert len({job.id for job in jobs}) == 30
        outcomes = await settle(jobs)
        assert client.stats.lost_responses > 0
    assert_matches_server(oxen_server, outcomes, 30)


@pytest.mark.oxen_faults(
    seed=2024,
    latency=(0.0, 0.02),
    failure_rate=0.1,
    enqueue_429_rate=0.05,
    enqueue_5xx_rate=0.03,
    retry_after=0,
    cut_stream_after_events=600,
    drop_event_rate=0.02,
    duplicate_event_rate=0.05,
    delay_event=(0.0, 0.01),
    event_before_response_rate=0.02,
    lost_response_rate=0.02,
    unrelated_event_rate=0.02,
)
@pytest.mark.slow
async def test_two_thousand_jobs_through_every_fault(oxen_server: LocalServer) -> None:
    n = 2000
    async with client_for(oxen_server, reconcile=FAST, retry=FAST_RETRY) as client:
        jobs = list(
            await asyncio.gather(
                *(client.submit(prompt=f"chaos {i}", image=png()) for i in range(n))
            )
        )
        # Cancel some while they may still be running, cut the stream once more by hand.
        cancelled = await asyncio.gather(*(job.cancel() for job in jobs[::97]))
        await oxen_server.drop_event_streams()
        outcomes = await settle(jobs)
        stats = client.stats
    statuses = Counter(outcomes.values())
    assert statuses["succeeded"] > n * 0.7 and statuses["failed"] > 0
    assert {g.status for g in cancelled} <= {"cancelled", "succeeded", "failed"}
    assert stats.event_connections >= 3 and stats.lost_responses > 0 and stats.retries > 0
    assert_matches_server(oxen_server, outcomes, n)


async def test_faults_object_is_live(oxen_server: LocalServer) -> None:
    """Changing the running server's `faults` changes what the next request meets."""
    async with client_for(oxen_server, retry=oxedit.RetryPolicy(max_retries=0)) as client:
        oxen_server.faults.enqueue_429_rate = 1.0
        with pytest.raises(oxedit.RateLimitError):
            await client.submit(prompt="p", image=png())
        oxen_server.faults.enqueue_429_rate = 0.0
        assert (await (await client.submit(prompt="p", image=png())).wait(10)).status == (
            "succeeded"
        )

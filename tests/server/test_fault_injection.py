"""Each fault setting, switched on against a running server, and what it visibly does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from oxedit.server._faults import FAILURE_MESSAGES
from oxedit.testing import Faults, LocalServer

from ._helpers import EventReader, assert_typed_error, edit_body, enqueue, get_row, session_for

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def running(
    faults: Faults, workers: int = 8
) -> AsyncIterator[tuple[LocalServer, aiohttp.ClientSession, EventReader]]:
    """A server with `faults`, a session, and an open event stream."""
    async with (
        LocalServer(faults=faults, workers=workers) as server,
        session_for(server) as http,
        http.get("/api/events") as resp,
    ):
        assert resp.status == 200
        yield server, http, EventReader(resp)


async def test_latency_holds_jobs_processing() -> None:
    calls = 0

    def latency(rng: object) -> float:
        nonlocal calls
        calls += 1
        return 0.2

    async with running(Faults(latency=latency)) as (server, http, _):
        loop = asyncio.get_running_loop()
        start = loop.time()
        ids = await enqueue(http, edit_body(num_generations=3))
        assert {(await get_row(http, i))["status"] for i in ids} == {"processing"}
        await server.wait_idle()
        assert loop.time() - start >= 0.2
        assert calls == 3  # drawn once per job


async def test_failure_rate_fails_jobs_with_realistic_messages() -> None:
    async with running(Faults(failure_rate=1.0)) as (_, http, events):
        (gen_id,) = await enqueue(http, edit_body())
        event = await events.completion()
        assert event["status"] == "failed" and event["error"] in FAILURE_MESSAGES
        row = await get_row(http, gen_id)
        assert row["status"] == "failed" and row["error_message"] == event["error"]
        # Not a parameter problem: the blocking route answers 500, not 400.
        async with http.post("/api/ai/images/edit", json=edit_body()) as resp:
            await assert_typed_error(resp, 500, "unknown_error")


async def test_a_seed_replays_the_same_failures() -> None:
    async def outcomes(seed: int) -> list[str]:
        async with running(Faults(seed=seed, failure_rate=0.5), workers=1) as (server, http, _):
            for _ in range(12):
                await enqueue(http, edit_body())
                await server.wait_idle()  # one at a time: the same RNG order every run
            return [row["status"] for row in server.generations()]

    first = await outcomes(42)
    assert first == await outcomes(42)
    assert {"succeeded", "failed"} == set(first)


@pytest.mark.parametrize(("retry_after", "header"), [(1, "1"), (7, "7"), (None, None)])
async def test_enqueue_429(retry_after: int | None, header: str | None) -> None:
    faults = Faults(enqueue_429_rate=1.0, retry_after=retry_after)
    async with running(faults) as (server, http, _):
        async with http.post("/api/ai/queue", json=edit_body()) as resp:
            assert resp.status == 429
            assert resp.headers.get("Retry-After") == header
            assert await resp.json() == {"error": {"message": "Rate limit exceeded"}}
        assert server.stats.generations_created == 0 and server.generations() == []
        server.faults.enqueue_429_rate = 0.0
        await enqueue(http, edit_body())


async def test_enqueue_5xx_creates_nothing() -> None:
    async with running(Faults(enqueue_5xx_rate=1.0)) as (server, http, _):
        async with http.post("/api/ai/queue", json=edit_body()) as resp:
            await assert_typed_error(resp, 503, "unknown_error")
        assert server.stats.generations_created == 0 and server.generations() == []


async def test_lost_response_creates_the_generation_then_cuts_the_connection() -> None:
    async with running(Faults(lost_response_rate=1.0)) as (server, http, events):
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await http.post("/api/ai/queue", json=edit_body(num_generations=2))
        assert server.stats.generations_created == 2
        rows = server.generations()
        assert len(rows) == 2
        # The generations run and announce themselves: only the response was lost.
        got = {(await events.completion())["generation_id"] for _ in rows}
        assert got == {row["generation_id"] for row in rows}


@pytest.mark.parametrize("rate", [0.0, 1.0])
async def test_event_before_response(rate: float) -> None:
    faults = Faults(event_before_response_rate=rate, latency=0.05)
    async with running(faults) as (server, http, events):
        ids = await enqueue(http, edit_body(num_generations=2))
        statuses = {server.generation(i)["status"] for i in ids}
        if rate:
            # Finished and written to the stream before the response was sent.
            assert statuses == {"succeeded"} and server.stats.events_sent == 2
        else:
            assert statuses <= {"queued", "processing"} and server.stats.events_sent == 0
        assert {(await events.completion())["generation_id"] for _ in ids} == set(ids)


async def test_cut_stream_after_events_ends_each_stream_cleanly() -> None:
    async with running(Faults(cut_stream_after_events=2)) as (server, http, events):
        ids = await enqueue(http, edit_body(num_generations=3))
        got = [(await events.completion())["generation_id"] for _ in range(2)]
        assert await events.frame() == b""  # clean end of stream, not an error
        assert set(got) < set(ids)
        assert server.stats.events_sent == 2 and server.stats.open_event_streams == 0
        async with http.get("/api/events") as resp:  # each connection gets its own budget
            again = EventReader(resp)
            (later,) = await enqueue(http, edit_body())
            assert (await again.completion())["generation_id"] == later


async def test_drop_event_rate_sends_nothing() -> None:
    async with running(Faults(drop_event_rate=1.0)) as (server, http, events):
        (dropped,) = await enqueue(http, edit_body())
        await server.wait_idle()
        assert server.generation(dropped)["status"] == "succeeded"
        server.faults.drop_event_rate = 0.0
        (kept,) = await enqueue(http, edit_body())
        assert (await events.completion())["generation_id"] == kept
        assert server.stats.events_sent == 1


async def test_duplicate_event_rate_sends_twice() -> None:
    async with running(Faults(duplicate_event_rate=1.0)) as (server, http, events):
        (gen_id,) = await enqueue(http, edit_body())
        first, second = await events.completion(), await events.completion()
        assert first == second and first["generation_id"] == gen_id
        assert server.stats.events_sent == 2


async def test_delay_event_holds_the_event_after_completion() -> None:
    async with running(Faults(delay_event=0.3)) as (server, http, events):
        loop = asyncio.get_running_loop()
        (gen_id,) = await enqueue(http, edit_body())
        await server.wait_idle()
        finished = loop.time()
        assert (await events.completion())["generation_id"] == gen_id
        assert loop.time() - finished >= 0.25


async def test_unrelated_events_are_interleaved() -> None:
    async with running(Faults(unrelated_event_rate=1.0)) as (_, http, events):
        (gen_id,) = await enqueue(http, edit_body())
        kind, data = await events.event()
        assert kind == "repo_updated" and "generation_id" not in data
        kind, data = await events.event()
        assert kind == "media_generation_completed" and data["generation_id"] == gen_id


async def test_stall_streams_writes_nothing_and_loses_events() -> None:
    faults = Faults(keepalive_interval=0.05, stall_streams=True)
    async with running(faults) as (server, http, events):
        (lost,) = await enqueue(http, edit_body())
        await server.wait_idle()
        # Proving silence needs a bounded wait: six keep-alive intervals.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await events.frame()
        server.faults.stall_streams = False
        assert await events.frame() == b": keep-alive\n\n"  # alive again, `lost` is gone
        (later,) = await enqueue(http, edit_body())
        assert (await events.completion())["generation_id"] == later
        assert server.generation(lost)["status"] == "succeeded"


async def test_stamp_events_adds_completed_at() -> None:
    async with running(Faults(stamp_events=True)) as (server, http, events):
        (gen_id,) = await enqueue(http, edit_body())
        event = await events.completion()
        assert isinstance(event["completed_at"], float)
        assert int(event["completed_at"]) == server.generation(gen_id)["completed_at"]

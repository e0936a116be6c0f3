"""`GET /api/events`: framing, fan-out, keep-alives, no event on cancel, stream lifecycle."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec
import pytest

from oxedit.testing import Faults, LocalServer

from ._helpers import EventReader, download, edit_body, enqueue, session_for

pytestmark = pytest.mark.anyio

OpenEvents = Callable[[], Awaitable[EventReader]]


async def test_stream_headers_and_documented_event_frames(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    events = await open_events()
    assert events.resp.headers["Content-Type"] == "text/event-stream"
    (ok,) = await enqueue(http, edit_body("invert"))
    frame = await events.frame()
    head, data = frame.split(b"\n", 1)
    assert head == b"event: media_generation_completed"
    assert data.startswith(b"data: {") and data.endswith(b"}\n\n") and data.count(b"\n") == 2
    event = msgspec.json.decode(data[6:])
    assert list(event) == ["generation_id", "status", "media_type", "model", "url"]
    assert event["generation_id"] == ok and event["status"] == "succeeded"
    assert event["media_type"] == "image" and event["model"] == "qwen-image-edit"
    assert event["url"].startswith(server.files_url)
    assert await download(event["url"])  # presigned at completion, valid now

    (bad,) = await enqueue(http, edit_body(aspect_ratio="7:5"))
    failed = await events.completion()
    # The documented failed event: no model, no url, an error.
    assert failed == {
        "generation_id": bad,
        "status": "failed",
        "media_type": "image",
        "error": "aspect_ratio must be one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, got '7:5'",
    }


async def test_keepalive_comment_when_idle() -> None:
    async with (
        LocalServer(faults=Faults(keepalive_interval=0.05)) as server,
        session_for(server) as http,
        http.get("/api/events") as resp,
    ):
        events = EventReader(resp)
        assert await events.frame() == b": keep-alive\n\n"
        assert await events.frame() == b": keep-alive\n\n"
        # Changing the interval on a running server takes effect on open streams.
        server.faults.keepalive_interval = 3600.0
        (gen_id,) = await enqueue(http, edit_body())
        assert (await events.completion())["generation_id"] == gen_id


async def test_every_stream_gets_every_event(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    streams = [await open_events() for _ in range(3)]
    assert server.stats.open_event_streams == 3 and server.stats.event_connections == 3
    ids = await enqueue(http, edit_body(num_generations=4))
    for events in streams:
        got = [(await events.completion())["generation_id"] for _ in ids]
        assert sorted(got) == sorted(ids)
    assert server.stats.events_sent == 12


async def test_thousands_of_events_to_several_streams(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    streams = [await open_events() for _ in range(3)]
    ids: list[str] = []
    for batch in await asyncio.gather(
        *(enqueue(http, edit_body("mirror", num_generations=4)) for _ in range(250))
    ):
        ids += batch
    for events in streams:
        got = {(await events.completion())["generation_id"] for _ in ids}
        assert got == set(ids)
    assert server.stats.events_sent == 3000


def blocker(seconds: float) -> tuple[asyncio.Event, Callable[[random.Random], float]]:
    """A latency fault that holds the first job `seconds` and signals when it starts."""
    started = asyncio.Event()

    def latency(rng: random.Random) -> float:
        if started.is_set():
            return 0.0
        started.set()
        return seconds

    return started, latency


@pytest.mark.parametrize("state", ["queued", "processing"])
async def test_no_event_and_no_late_success_for_a_cancelled_generation(state: str) -> None:
    started, latency = blocker(0.2)
    async with (
        LocalServer(workers=1, faults=Faults(latency=latency)) as server,
        session_for(server) as http,
        http.get("/api/events") as resp,
    ):
        events = EventReader(resp)
        (first,) = await enqueue(http, edit_body())
        await started.wait()  # the single worker holds `first`, processing
        victim = first if state == "processing" else (await enqueue(http, edit_body()))[0]
        assert server.generation(victim)["status"] == state
        async with http.delete(f"/api/ai/queue/{victim}") as cancel:
            assert cancel.status == 200
        # Queued behind the victim (or behind `first`) on the single worker: its event comes
        # after the worker is done with the victim.
        (last,) = await enqueue(http, edit_body())
        seen = [(await events.completion())["generation_id"]]
        if seen[0] != last:
            seen.append((await events.completion())["generation_id"])
        assert seen == ([last] if state == "processing" else [first, last])
        assert server.generation(victim)["status"] == "cancelled"


async def test_drop_event_streams_cuts_connections(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    streams = [await open_events() for _ in range(2)]
    await server.drop_event_streams()
    assert server.stats.open_event_streams == 0
    for events in streams:
        with pytest.raises(aiohttp.ClientPayloadError):
            await events.frame()
    fresh = await open_events()  # reconnecting works, and gets later events
    (gen_id,) = await enqueue(http, edit_body())
    assert (await fresh.completion())["generation_id"] == gen_id
    assert server.stats.event_connections == 3


async def test_stopping_the_server_ends_streams_cleanly() -> None:
    async with (
        LocalServer() as server,
        session_for(server) as http,
        http.get("/api/events") as resp,
    ):
        events = EventReader(resp)
        await server.stop()
        assert await events.frame() == b""


async def test_clients_hanging_up_leave_the_server_healthy(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    for _ in range(3):
        gone = await open_events()
        gone.resp.close()  # hang up without reading
    events = await open_events()
    ids = await enqueue(http, edit_body(num_generations=4))
    assert {(await events.completion())["generation_id"] for _ in ids} == set(ids)
    await server.drop_event_streams()  # returns only once every stream handler is done
    assert server.stats.open_event_streams == 0 and server.stats.event_connections == 4

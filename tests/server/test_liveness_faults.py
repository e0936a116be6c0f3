"""The liveness faults (a server that is up but misbehaving), each switched on against a running
server and checked over raw HTTP: what the client sees on the wire, and what really happened."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from oxedit.server._constants import DRIP_PIECE_BYTES
from oxedit.server._events import _oversized_event
from oxedit.testing import LocalServer

from ._helpers import (
    EventReader,
    assert_typed_error,
    download,
    edit_body,
    enqueue,
    get_row,
    image_bytes,
)

pytestmark = pytest.mark.anyio

OpenEvents = Callable[[], Awaitable[EventReader]]


async def queue_paths(http: aiohttp.ClientSession) -> list[str]:
    """The two queue GETs the GET faults apply to (one for a real row)."""
    (gen_id,) = await enqueue(http, edit_body())
    return ["/api/ai/queue", f"/api/ai/queue/{gen_id}"]


async def test_get_error_rate_answers_500_unknown_error(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    paths = await queue_paths(http)
    server.faults.get_error_rate = 1.0
    for path in paths:
        async with http.get(path) as resp:
            await assert_typed_error(resp, 500, "unknown_error")
    server.faults.get_error_rate = 0.0
    for path in paths:
        async with http.get(path) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"


async def test_get_html_rate_answers_200_with_an_html_page(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    paths = await queue_paths(http)
    server.faults.get_html_rate = 1.0
    for path in paths:
        async with http.get(path) as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert (await resp.text()).startswith("<!DOCTYPE html>")


async def test_get_redirect_rate_answers_302_to_login(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    paths = await queue_paths(http)
    server.faults.get_redirect_rate = 1.0
    for path in paths:
        async with http.get(path, allow_redirects=False) as resp:
            assert resp.status == 302 and resp.headers["Location"] == "/login"


async def test_get_faults_leave_the_enqueue_alone(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    server.faults.get_error_rate = server.faults.get_html_rate = 1.0
    server.faults.get_redirect_rate = 1.0
    await enqueue(http, edit_body())  # checks the documented 200 body
    async with http.delete("/api/ai/queue/nope") as resp:
        await assert_typed_error(resp, 404, "resource_not_found")


@pytest.mark.parametrize("kind", ["html", "empty_object", "empty_generations", "extra_ids"])
async def test_enqueue_bad_body_creates_and_runs_the_generations(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents, kind: str
) -> None:
    events = await open_events()
    server.faults.enqueue_bad_body_rate = 1.0
    server.faults.enqueue_bad_body = kind
    async with http.post("/api/ai/queue", json=edit_body(num_generations=2)) as resp:
        assert resp.status == 200
        raw = await resp.read()
        content_type = resp.content_type
    created = [row["generation_id"] for row in server.generations()]
    assert len(created) == 2 and server.stats.generations_created == 2
    if kind == "html":
        assert content_type == "text/html" and raw.startswith(b"<!DOCTYPE html>")
    else:
        body = msgspec.json.decode(raw)
        expected: dict[str, Any] = {
            "empty_object": {},
            "empty_generations": {"generations": []},
        }.get(kind, {})
        if kind == "extra_ids":
            ids = [g["generation_id"] for g in body["generations"]]
            assert ids[:2] == created and len(ids) == 3
            assert {g["status"] for g in body["generations"]} == {"queued"}
            async with http.get(f"/api/ai/queue/{ids[2]}") as missing:
                await assert_typed_error(missing, 404, "resource_not_found")
        else:
            assert body == expected
    # The generations run and announce themselves: only the answer was broken.
    assert {(await events.completion())["generation_id"] for _ in created} == set(created)


async def test_silent_cancel_rate_cancels_without_an_event(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    events = await open_events()
    server.faults.latency = 0.05
    server.faults.silent_cancel_rate = 1.0
    cancelled = await enqueue(http, edit_body(num_generations=3))
    await server.wait_idle()
    for gen_id in cancelled:
        row = await get_row(http, gen_id)
        assert row["status"] == "cancelled" and row["result_url"] is None
    assert server.stats.silent_cancels == 3
    server.faults.silent_cancel_rate = 0.0
    (later,) = await enqueue(http, edit_body())
    # Events go out in completion order: had a cancellation sent one, it would come first.
    assert (await events.completion())["generation_id"] == later
    assert server.stats.events_sent == 1


async def test_stream_close_at_once_ends_the_stream_empty(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    server.faults.stream_close_at_once = True
    async with http.get("/api/events") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert await resp.read() == b""  # a clean end: no error, nothing written
    assert server.stats.event_connections == 1 and server.stats.open_event_streams == 0
    server.faults.stream_close_at_once = False
    async with http.get("/api/events") as resp:
        (gen_id,) = await enqueue(http, edit_body())
        assert (await EventReader(resp).completion())["generation_id"] == gen_id


@pytest.mark.parametrize(("status", "type_"), [(401, "unauthenticated"), (403, "forbidden")])
async def test_refuse_streams_refuses_the_next_n_connections(
    server: LocalServer,
    http: aiohttp.ClientSession,
    open_events: OpenEvents,
    status: int,
    type_: str,
) -> None:
    events = await open_events()  # opened before: left alone
    server.faults.refuse_stream_status = status
    server.faults.refuse_streams = 2
    for left in (1, 0):
        async with http.get("/api/events") as resp:
            await assert_typed_error(resp, status, type_)
        assert server.faults.refuse_streams == left
    assert server.stats.streams_refused == 2
    again = await open_events()
    (gen_id,) = await enqueue(http, edit_body())
    assert (await again.completion())["generation_id"] == gen_id
    assert (await events.completion())["generation_id"] == gen_id


async def test_refuse_streams_then_drop_makes_a_transient_refusal_on_reconnect(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    events = await open_events()
    server.faults.refuse_streams = 1
    await server.drop_event_streams()
    with pytest.raises(aiohttp.ClientError):  # cut, not ended cleanly
        await events.frame()
    async with http.get("/api/events") as resp:
        await assert_typed_error(resp, 401, "unauthenticated")
    async with http.get("/api/events") as resp:
        assert resp.status == 200


async def test_drip_interval_dribbles_the_enqueue_answer(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    interval = 0.02
    server.faults.drip_interval = interval
    loop = asyncio.get_running_loop()
    async with http.post("/api/ai/queue", json=edit_body()) as resp:
        headers_at = loop.time()  # the headers went out at once
        length = int(resp.headers["Content-Length"])
        body = await resp.read()
        took = loop.time() - headers_at
    assert len(body) == length
    assert set(msgspec.json.decode(body)) == {"generations"}
    pieces = -(-length // DRIP_PIECE_BYTES)
    # The sleeps between pieces are a lower bound on the time the body took, whatever the load.
    assert pieces > 10 and took >= (pieces - 2) * interval


async def test_drip_interval_dribbles_both_gets_and_spares_other_routes(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()
    interval = 0.002
    server.faults.drip_interval = interval
    loop = asyncio.get_running_loop()
    for path in (f"/api/ai/queue/{gen_id}", "/api/ai/queue?status=succeeded"):
        async with http.get(path) as resp:
            headers_at = loop.time()
            body = await resp.read()
            took = loop.time() - headers_at
            assert len(body) == int(resp.headers["Content-Length"])
        assert gen_id.encode() in body
        pieces = -(-len(body) // DRIP_PIECE_BYTES)
        assert pieces > 50 and took >= (pieces - 2) * interval, path
    server.faults.drip_interval = 3600.0  # a route that dribbled would time the test out
    async with http.get("/api/ai/models") as resp:
        assert resp.status == 200 and (await resp.json())["object"] == "list"
    async with http.get("/api/ai/queue/nope") as resp:
        # The body of an error dribbles too: one piece now, the next in an hour.
        assert resp.status == 404 and int(resp.headers["Content-Length"]) > DRIP_PIECE_BYTES
        assert len(await resp.content.readexactly(DRIP_PIECE_BYTES)) == DRIP_PIECE_BYTES
        assert resp.content.read_nowait() == b""


async def test_oversized_event_comes_first_on_each_new_stream(
    server: LocalServer, http: aiohttp.ClientSession, open_events: OpenEvents
) -> None:
    size = 100_000
    server.faults.oversized_event_bytes = size
    events = await open_events()
    frame = await events.frame()
    kind, data = frame.decode().split("\n")[:2]
    assert kind == "event: media_generation_completed"
    assert data.startswith("data: ") and len(data) - len("data: ") == size
    (gen_id,) = await enqueue(http, edit_body())
    assert (await events.completion())["generation_id"] == gen_id


@pytest.mark.parametrize("size", [1, 40, 41, 42, 1000])
def test_oversized_event_data_is_exactly_the_size(size: int) -> None:
    frame = _oversized_event(size)
    head, data, blank, end = frame.split(b"\n")
    assert head == b"event: media_generation_completed" and (blank, end) == (b"", b"")
    assert data.startswith(b"data: ") and len(data) == len(b"data: ") + size


async def result_url(server: LocalServer, http: aiohttp.ClientSession) -> str:
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()
    return (await get_row(http, gen_id))["result_url"]  # type: ignore[no-any-return]


async def test_result_body_replaces_every_download(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    url = await result_url(server, http)
    server.faults.result_body = b'{"error": "not an image"}'
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200 and resp.content_type == "image/png"  # the header lies
        assert await resp.read() == b'{"error": "not an image"}'
    server.faults.result_body = None
    assert (await download(url))[:8] == image_bytes()[:8]  # the PNG signature again


async def test_result_gzip_bomb_inflates_to_the_size(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    url = await result_url(server, http)
    size = 5 * 1024 * 1024 + 123  # not a multiple of the compression chunk
    server.faults.result_gzip_bomb = size
    async with (
        aiohttp.ClientSession(auto_decompress=False) as session,
        session.get(url) as resp,
    ):
        assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
        body = await resp.read()
    assert len(body) < size // 100
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = inflate.decompress(body) + inflate.flush()
    assert len(inflated) == size and not inflated.strip(b"\0") and inflate.eof

"""Answers the client must not read whole, and result URLs it cannot use, over real sockets:
a gzip bomb on a JSON route is one request and a typed error (not retried, memory bounded),
honest large lists still pass, and a result URL with a bad port is a `DownloadError`."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

import oxedit
from oxedit.testing import LocalServer

from .helpers import FAST_RETRY, Handler, client_for, serve

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def _gzip(data: bytes, times: int = 1) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return b"".join(packer.compress(data) for _ in range(times)) + packer.flush()


# 16 MiB of JSON whitespace in ~16 KB: a bomb (1000:1), whatever the route expects after it.
BOMB = _gzip(b" " * MiB, 16)


def _answering(body: bytes, hits: list[str], *, gzip: bool) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(f"{request.method} {request.path}")
        headers = {"Content-Type": "application/json"}
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    return handler


Call = Callable[[oxedit.Client], Awaitable[Any]]
CALLS: dict[str, tuple[Call, str]] = {
    "model": (lambda c: c.model("qwen-image-edit"), "max_response_bytes"),
    "row": (lambda c: c.get("g1"), "max_response_bytes"),
    "history entry": (lambda c: c.history_entry("g1"), "max_response_bytes"),
    # Lists may be larger, but not by inflating: they stop at the same cap.
    "queue list": (lambda c: c.list(), "max_response_bytes"),
    "models list": (lambda c: c.models(), "max_response_bytes"),
    "history page": (lambda c: c.history(), "max_response_bytes"),
}


@pytest.mark.parametrize("name", CALLS)
async def test_a_gzip_bomb_on_a_json_route_is_a_typed_error_after_one_request(name: str) -> None:
    call, setting = CALLS[name]
    hits: list[str] = []
    limits = oxedit.Limits(max_response_bytes=MiB)
    async with serve(_answering(BOMB, hits, gzip=True)) as url:
        client = oxedit.Client(api_key="k", base_url=url, retry=FAST_RETRY, limits=limits)
        async with client, asyncio.timeout(10):
            with pytest.raises(oxedit.ResponseTooLargeError) as caught:
                await call(client)
    assert len(hits) == 1, hits  # not retried: the same answer would come again
    error = caught.value
    assert isinstance(error, oxedit.TransportError) and error.limit == MiB
    assert f"larger than {MiB} bytes" in str(error) and f"Limits({setting}=" in str(error)


def _rows_list(rows: int, image_bytes: int) -> bytes:
    """A queue list whose rows echo a data-URI input of `image_bytes` random bytes each."""
    image = "data:image/png;base64," + base64.b64encode(os.urandom(image_bytes)).decode()
    row = {"generation_id": "", "status": "queued", "model_name": "m", "input_image": image}
    generations = [{**row, "generation_id": f"g{i}"} for i in range(rows)]
    return json.dumps({"count": rows, "generations": generations}).encode()


@pytest.mark.parametrize("gzip", [False, True], ids=["plain", "gzip"])
async def test_an_honest_list_larger_than_max_response_bytes_is_read(gzip: bool) -> None:
    # Rows of base64 images hardly compress: 3 MiB of them is a list, not a bomb.
    body = _rows_list(6, 384 * 1024)
    hits: list[str] = []
    limits = oxedit.Limits(max_response_bytes=MiB)
    handler = _answering(_gzip(body) if gzip else body, hits, gzip=gzip)
    async with serve(handler) as url:
        client = oxedit.Client(api_key="k", base_url=url, limits=limits)
        async with client, asyncio.timeout(10):
            rows = await client.list()
    assert [row.id for row in rows] == [f"g{i}" for i in range(6)]
    assert len(body) > 3 * MiB and hits == ["GET /api/ai/queue"]


async def test_a_list_stops_at_max_list_response_bytes() -> None:
    hits: list[str] = []
    limits = oxedit.Limits(max_response_bytes=MiB, max_list_response_bytes=2 * MiB)
    async with serve(_answering(_rows_list(6, 384 * 1024), hits, gzip=False)) as url:
        client = oxedit.Client(api_key="k", base_url=url, retry=FAST_RETRY, limits=limits)
        async with client, asyncio.timeout(10):
            with pytest.raises(oxedit.ResponseTooLargeError, match=r"max_list_response_bytes"):
                await client.list()
    assert hits == ["GET /api/ai/queue"]


@pytest.mark.parametrize("port", ["99999", "+80", "1:2"])
async def test_a_result_url_with_a_bad_port_is_a_download_error(
    oxen_server: LocalServer, port: str, tmp_path: Any
) -> None:
    gen = oxedit.Generation(id="g1", status="succeeded", url=f"http://127.0.0.1:{port}/g1.png")
    async with client_for(oxen_server, retry=FAST_RETRY) as client:
        with pytest.raises(oxedit.DownloadError, match="result URL .* is unusable") as read:
            await client.read(gen)
        assert read.value.generation_id == "g1"
        with pytest.raises(oxedit.DownloadError, match="is unusable"):
            await client.save(gen, tmp_path / "out.png")
    assert not (tmp_path / "out.png").exists()


async def test_a_redirect_to_a_bad_port_is_a_download_error(oxen_server: LocalServer) -> None:
    async def moved(request: web.Request) -> web.StreamResponse:
        return web.Response(status=302, headers={"Location": "http://127.0.0.1:1:2/g1.png"})

    async with serve(moved) as files, client_for(oxen_server, retry=FAST_RETRY) as client:
        gen = oxedit.Generation(id="g1", status="succeeded", url=files + "/g1.png")
        with pytest.raises(oxedit.DownloadError, match="bad URL"):
            await client.read(gen)


async def test_fifty_oversized_events_are_two_warning_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    reconnected = asyncio.Event()
    streams: list[int] = []
    big = b"event: media_generation_completed\ndata: " + b"x" * 128 * 1024 + b"\n\n"

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path != "/api/events":
            return web.json_response({"generation_id": "g1", "status": "queued"})
        streams.append(1)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        if len(streams) > 1:
            reconnected.set()  # the first stream was read to its end
            await asyncio.Event().wait()
        for _ in range(50):
            await resp.write(big)
        return resp

    limits = oxedit.Limits(max_event_bytes=64 * 1024)
    policy = oxedit.ReconcilePolicy(stale_floor=60, stale_after=60)
    with caplog.at_level(logging.WARNING, logger="oxedit"):
        async with serve(handler) as url:
            client = oxedit.Client(api_key="k", base_url=url, limits=limits, reconcile=policy)
            async with client, asyncio.timeout(10):
                client.job("g1")  # starts the event stream
                await reconnected.wait()
    dropped = [r.getMessage() for r in caplog.records if "longer than" in r.getMessage()]
    assert dropped == [
        "dropped a server-sent event longer than 65536 bytes (Limits.max_event_bytes); "
        "further ones are counted every 100 or 60 s",
        "dropped 49 more server-sent event(s) longer than 65536 bytes "
        "(Limits.max_event_bytes), 50 in all",
    ]

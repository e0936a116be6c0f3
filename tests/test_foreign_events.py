"""Other processes' events on a shared account: dropped cheaply, and kept bounded while an
enqueue that may claim them is unanswered (over real sockets)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from aiohttp import web

import oxedit
from tests.helpers import eventually, png, serve

pytestmark = pytest.mark.anyio

FOREIGN = 100_000
CHUNK = 1_000
BOUND = 1024 * 1024


def completed(generation_id: str) -> bytes:
    data = {
        "generation_id": generation_id,
        "status": "succeeded",
        "media_type": "image",
        "model": "qwen-image-edit",
        "url": f"https://hub.oxen.ai/api/repos/ox/r/files/main/out/{generation_id}.png",
    }
    return b"event: media_generation_completed\ndata: " + json.dumps(data).encode() + b"\n\n"


@pytest.mark.slow
async def test_foreign_events_during_a_slow_enqueue_stay_bounded() -> None:
    ours = str(uuid.uuid4())
    posted = asyncio.Event()
    answer = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.path == "/api/events":
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b": hello\n\n")
            await posted.wait()
            # 100,000 events of other processes' jobs while our POST is unanswered, then
            # ours, overtaking the response that announces it (the docs allow it).
            for _ in range(0, FOREIGN, CHUNK):
                await resp.write(b"".join(completed(str(uuid.uuid4())) for _i in range(CHUNK)))
            await resp.write(completed(ours))
            await asyncio.Event().wait()  # held open until the client leaves
        if request.path.startswith("/api/ai/models/"):
            return web.json_response({"id": request.match_info["tail"].rsplit("/", 1)[-1]})
        if request.method == "POST" and request.path == "/api/ai/queue":
            posted.set()
            await answer.wait()
            return web.json_response({"generations": [{"generation_id": ours, "status": "queued"}]})
        return web.json_response({"error": "not here"}, status=404)

    limits = oxedit.Limits(max_early_event_bytes=BOUND)
    async with (
        serve(handler) as url,
        oxedit.Client(api_key="k", base_url=url, limits=limits) as client,
    ):
        submit = asyncio.create_task(client.submit(prompt="p", image=png()))
        registry = client._tracker.require_open().registry
        # The stream has no "all read" signal the client exposes but its count.
        await eventually(lambda: client.stats.events == FOREIGN + 1, within=60)
        count, size = registry.early_size()
        assert 0 < size <= BOUND
        assert count < FOREIGN // 10  # ~500 bytes each: a few thousand, not all of them
        answer.set()
        job = await submit
        gen = await job.wait(timeout=10)  # its event came first and was kept: no check needed
        assert gen.id == ours and gen.status == "succeeded"
        assert client.stats.poll_requests == 0
        assert registry.early_size() == (0, 0)  # nothing may claim the rest any more

"""A server with a state folder outlives its process: stopped or SIGKILLed with active jobs,
the next server on the folder serves every row, finishes the active ones exactly once, and
serves the earlier results under its own (new) URLs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import oxedit
from oxedit.testing import LocalServer

from ._helpers import (
    EventReader,
    download,
    edit_body,
    enqueue,
    get_row,
    image_bytes,
    session_for,
)

pytestmark = pytest.mark.anyio


class Gate:
    """An image host whose downloads hang until `open` is set: it holds generations in
    `processing` for as long as a test needs, without any timing."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.fetches = 0
        self.arrived = asyncio.Condition()
        self.url = ""

    async def _image(self, request: web.Request) -> web.Response:
        async with self.arrived:
            self.fetches += 1
            self.arrived.notify_all()
        await self.open.wait()
        return web.Response(body=image_bytes(), content_type="image/png")

    async def wait_fetches(self, count: int) -> None:
        async with self.arrived:
            await self.arrived.wait_for(lambda: self.fetches >= count)


@pytest.fixture
async def gate() -> AsyncIterator[Gate]:
    gate = Gate()
    app = web.Application()
    app.router.add_get("/image.png", gate._image)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    gate.url = f"http://127.0.0.1:{port}/image.png"
    yield gate
    gate.open.set()
    await runner.cleanup()


def gated_body(gate: Gate, **extra: Any) -> dict[str, object]:
    return edit_body(input_image=gate.url, **extra)


async def completions(events: EventReader, count: int) -> Counter[str]:
    return Counter([(await events.completion())["generation_id"] for _ in range(count)])


async def test_a_stopped_server_resumes_on_its_state_folder(tmp_path: Path, gate: Gate) -> None:
    async with LocalServer(state_dir=tmp_path) as first, session_for(first) as http:
        (done,) = await enqueue(http, edit_body())
        (failed,) = await enqueue(http, edit_body(aspect_ratio="5:4"))  # fails: bad param
        await first.wait_idle()
        active = await enqueue(http, gated_body(gate, num_generations=3))
        await gate.wait_fetches(3)  # all three processing, hung on their input
        async with http.delete(f"/api/ai/queue/{active[0]}") as resp:
            assert resp.status == 200
        before = {row["generation_id"]: row for row in first.generations()}
        old_files_url = first.files_url
    assert (tmp_path / "generations.sqlite").exists()

    async with LocalServer(state_dir=tmp_path) as second, session_for(second) as http:
        assert second.stats.generations_resumed == 2
        async with http.get("/api/events") as resp:
            events = EventReader(resp)
            gate.open.set()  # only now can the resumed generations finish
            assert await completions(events, 2) == Counter(active[1:])
            await second.wait_idle()
        rows = {row["generation_id"]: row for row in second.generations()}
        assert list(rows) == list(before)  # every row, in enqueue order
        assert rows[active[0]]["status"] == "cancelled"
        assert rows[failed]["status"] == "failed"
        assert rows[failed]["error_message"] == before[failed]["error_message"]
        for gen_id in (done, *active[1:]):
            row = await get_row(http, gen_id)
            assert row["status"] == "succeeded"
            assert row["enqueued_at"] == before[gen_id]["enqueued_at"]
            assert row["result_url"].startswith(second.files_url + "/files/")
            assert (await download(row["result_url"]))[:8] == image_bytes()[:8]
        assert second.files_url != old_files_url
        assert second.stats.events_sent == 2
        assert gate.fetches == 3 + 2  # the cancelled one did not run again

    async with LocalServer(state_dir=tmp_path) as third:
        assert third.stats.generations_resumed == 0  # finished means finished
        assert [r["status"] for r in third.generations()] == [rows[i]["status"] for i in rows]


async def test_a_second_server_on_the_folder_is_refused(tmp_path: Path) -> None:
    async with LocalServer(state_dir=tmp_path):
        other = LocalServer(state_dir=tmp_path)
        with pytest.raises(oxedit.ConfigurationError) as refused:
            await other.start()
        assert "in use by another running server" in str(refused.value)
        assert repr(str(tmp_path)) in str(refused.value)
    async with LocalServer(state_dir=tmp_path) as again:  # free once the first stopped
        assert again.generations() == []


_CHILD = """
import asyncio, sys
from oxedit.testing import LocalServer

async def main():
    async with LocalServer(state_dir=sys.argv[1]) as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_sigkilled_server_loses_nothing(tmp_path: Path, gate: Gate) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CHILD, str(tmp_path), stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        url = (await proc.stdout.readline()).decode().strip()
        headers = {"Authorization": f"Bearer {oxedit.testing.DEFAULT_API_KEY}"}
        async with aiohttp.ClientSession(base_url=url, headers=headers) as http:
            async with http.get("/api/events") as resp:
                (done,) = await enqueue(http, edit_body())
                assert (await EventReader(resp).completion())["generation_id"] == done
            active = await enqueue(http, gated_body(gate, num_generations=4))
            queued = await enqueue(http, gated_body(gate))  # created, nothing more
            await gate.wait_fetches(4)
            # While it lives, the folder is its own.
            with pytest.raises(oxedit.ConfigurationError):
                await LocalServer(state_dir=tmp_path).start()
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    async with (
        LocalServer(state_dir=tmp_path, workers=1) as server,
        session_for(server) as http,
        http.get("/api/events") as resp,
    ):
        events = EventReader(resp)
        assert server.stats.generations_resumed == 5
        gate.open.set()
        assert await completions(events, 5) == Counter([*active, *queued])
        await server.wait_idle()
        assert [r["generation_id"] for r in server.generations()] == [done, *active, *queued]
        for row in server.generations():
            assert row["status"] == "succeeded"
            assert (await download(row["result_url"]))[:8] == image_bytes()[:8]
        assert server.stats.events_sent == 5  # each resumed generation finished once

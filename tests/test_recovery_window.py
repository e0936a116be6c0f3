"""Lost-enqueue recovery reads recent history only: over real sockets, what it costs to find
the row of a POST whose answer was lost must not grow with the account's history."""

from __future__ import annotations

import itertools
from typing import Any

import aiohttp
import pytest

import oxedit
import oxedit._resources.inputs
from oxedit._engine.recovery import history_pages
from oxedit.testing import Faults, LocalServer

from .helpers import FAST_RETRY, client_for, png

pytestmark = pytest.mark.anyio

LISTS = ("GET /api/ai/queue", "GET /api/ai/generations")
DAY = 86_400.0


async def old_history(server: LocalServer, rows: int) -> None:
    """`rows` finished generations, enqueued a day ago."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    uri = await oxedit._resources.inputs.image_to_uri(png())
    async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
        for i in range(0, rows, 4):
            body = {"model": "qwen-image-edit", "prompt": f"old {i}", "input_image": uri}
            async with http.post("/api/ai/queue", json={**body, "num_generations": 4}) as r:
                assert r.status == 200
    await server.wait_idle()
    server.backdate(DAY)


async def recovery_cost(old_rows: int) -> tuple[int, int]:
    """Requests and response bytes of the lists read to recover one lost POST, with
    `old_rows` finished rows in the history."""
    async with LocalServer() as server:
        await old_history(server, old_rows)
        before: dict[str, Any] = {
            route: (
                server.stats.requests_by_route[route],
                server.stats.response_bytes_by_route[route],
            )
            for route in LISTS
        }
        # Answered only once the generation finished (so it is in no list of active rows),
        # and then not at all: the connection is cut.
        server.faults.event_before_response_rate = 1.0
        server.faults.lost_response_rate = 1.0
        reconcile = oxedit.ReconcilePolicy(lost_response_grace=0.05)
        async with client_for(server, reconcile=reconcile, retry=FAST_RETRY) as client:
            job = await client.submit(prompt="the lost one", image=png())
            generation = await job
            assert generation.status == "succeeded"
            assert client.stats.lost_responses == 1 and client.stats.adopted == 1
        assert server.stats.generations_created == old_rows + 1  # adopted, not sent again
        requests = sum(server.stats.requests_by_route[r] - before[r][0] for r in LISTS)
        sent = sum(server.stats.response_bytes_by_route[r] - before[r][1] for r in LISTS)
        return requests, sent


async def test_recovering_a_lost_post_costs_the_same_whatever_the_history() -> None:
    small = await recovery_cost(40)
    large = await recovery_cost(400)
    assert large[0] == small[0] <= 3  # the active list, then a page or two of history
    # Pages of the same size, with row ids and timestamps of the same length: bytes within
    # a few percent (reading the finished rows whole would be ~10x).
    assert large[1] <= small[1] * 1.1, (small, large)
    assert large[1] < 8 * 1024, large


async def test_rows_older_than_the_window_are_never_adopted() -> None:
    # An identical request made a day ago is in the history: it is not this POST's row, so
    # the recovery must find the new one.
    async with LocalServer(faults=Faults()) as server:
        async with client_for(server, retry=FAST_RETRY) as client:
            await (await client.submit(prompt="same", image=png())).wait()
        server.backdate(DAY)
        server.faults.event_before_response_rate = 1.0
        server.faults.lost_response_rate = 1.0
        reconcile = oxedit.ReconcilePolicy(lost_response_grace=0.05)
        async with client_for(server, reconcile=reconcile, retry=FAST_RETRY) as client:
            job = await client.submit(prompt="same", image=png())
            await job
            assert client.stats.adopted == 1
        rows = server.generations()
        assert len(rows) == 2 and job.id == rows[1]["generation_id"]


def test_history_pages_grow_and_never_skip_or_repeat_a_row() -> None:
    read = 0
    sizes = []
    for page, size in itertools.islice(history_pages(), 20):
        assert (page - 1) * size == read  # each page starts where the last ended
        assert 1 <= size <= 1000  # the spec's largest page
        read += size
        sizes.append(size)
    assert sizes[:3] == [8, 8, 16] and sizes == sorted(sizes) and sizes[-1] == 512

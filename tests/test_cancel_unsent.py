"""A submit cancelled before its POST left (parked on a connection slot) created nothing: no
search for what it might have created, and the client closes at once."""

from __future__ import annotations

import asyncio

import pytest

import oxedit
from oxedit.testing import LocalServer

from .helpers import client_for, eventually, png

pytestmark = pytest.mark.anyio

LIST = "GET /api/ai/queue"
GET_ONE = "GET /api/ai/queue/{generation_id}"


async def test_a_submit_cancelled_while_parked_on_a_slot_starts_no_search() -> None:
    async with LocalServer() as server:
        # One connection slot, held by a read the server dribbles out: the submit parks.
        client = client_for(server, limits=oxedit.Limits(max_connections=1, initial_rate=1000))
        async with asyncio.timeout(20):
            await client.__aenter__()
            try:
                job = await client.submit(prompt="p", image=png())
                await job
                server.faults.drip_interval = 0.05
                reads = server.stats.requests_by_route[GET_ONE]
                slow_read = asyncio.create_task(client.get(job.id))
                await eventually(lambda: server.stats.requests_by_route[GET_ONE] > reads)
                posts = server.stats.requests_by_route["POST /api/ai/queue"]
                parked = asyncio.create_task(client.submit(prompt="p", image=png((1, 2, 3))))
                for _ in range(50):  # loop turns: it runs up to where it parks, on the slot
                    await asyncio.sleep(0)
                parked.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await parked
                slow_read.cancel()  # the slot is free again
                with pytest.raises(asyncio.CancelledError):
                    await slow_read
                assert server.stats.requests_by_route["POST /api/ai/queue"] == posts
                lists = server.stats.requests_by_route[LIST]
            finally:
                # Nothing was sent, so nothing is searched for: closing does not wait out the
                # lost-response window (30 s) that a search would take.
                async with asyncio.timeout(5):
                    await client.aclose()
        assert server.stats.requests_by_route[LIST] == lists

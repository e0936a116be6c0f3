from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest

from oxedit.testing import LocalServer

from ._helpers import EventReader


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with LocalServer() as srv:
        yield srv


@pytest.fixture
async def http(server: LocalServer) -> AsyncIterator[aiohttp.ClientSession]:
    """Relative paths go to the API; the key is sent with every request, absolute URLs too."""
    async with aiohttp.ClientSession(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}
    ) as session:
        yield session


@pytest.fixture
async def open_events(
    http: aiohttp.ClientSession,
) -> AsyncIterator[Callable[[], Awaitable[EventReader]]]:
    """Opens event streams (any number), closed at teardown."""
    opened: list[aiohttp.ClientResponse] = []

    async def open_() -> EventReader:
        resp = await http.get("/api/events")
        opened.append(resp)
        assert resp.status == 200
        return EventReader(resp)

    yield open_
    for resp in opened:
        resp.close()

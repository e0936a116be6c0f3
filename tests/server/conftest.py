from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest

from oxedit.testing import LocalServer

from ._helpers import EventReader


@pytest.fixture(autouse=True)
def _no_error_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A server that logs an error (a crashed handler, an unretrieved task exception) fails
    the test, even when the client saw a well-formed response. A test that provokes an error
    on purpose checks the log and then clears it."""
    yield
    records = caplog.get_records("call") + caplog.get_records("teardown")
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


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

"""pytest fixtures for testing code that uses oxedit against the local server.

Registered through the `pytest11` entry point, so installing oxedit makes them available.
They are async fixtures for tests run by anyio's pytest plugin (`@pytest.mark.anyio`, asyncio
backend: the server runs on aiohttp).

Example:
    ```python
    import pytest

    @pytest.mark.anyio
    @pytest.mark.oxen_faults(failure_rate=0.5, seed=3)
    async def test_retries(oxen_server, oxen_client):
        ...
        await oxen_server.wait_idle()
    ```

Fixtures:
    oxen_faults: The `Faults` the server starts with: built from the keyword arguments of the
        `oxen_faults` marker, or all off. Override the fixture to build them another way.
    oxen_server: A started `LocalServer`, fresh for each test.
    oxen_client: An `oxedit.Client` connected to `oxen_server`, opened with `async with`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from oxedit import Client
    from oxedit.testing import Faults, LocalServer

__all__ = ["oxen_client", "oxen_faults", "oxen_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "oxen_faults(**fields): start the oxen_server fixture with Faults(**fields)",
    )


@pytest.fixture
def oxen_faults(request: pytest.FixtureRequest) -> Faults:
    # Imported here, not at module level: the plugin loads in every pytest run of every
    # project that has oxedit installed, and most never use these fixtures.
    from oxedit.testing import Faults

    marker = request.node.get_closest_marker("oxen_faults")
    if marker is None:
        return Faults()
    if marker.args:
        raise TypeError("@pytest.mark.oxen_faults takes keyword arguments only")
    return Faults(**marker.kwargs)


@pytest.fixture
async def oxen_server(oxen_faults: Faults) -> AsyncIterator[LocalServer]:
    from oxedit.testing import LocalServer

    async with LocalServer(faults=oxen_faults) as server:
        yield server


@pytest.fixture
async def oxen_client(oxen_server: LocalServer) -> AsyncIterator[Client]:
    import oxedit

    async with oxedit.Client(api_key=oxen_server.api_key, base_url=oxen_server.url) as client:
        yield client

"""pytest fixtures for testing code that uses oxedit against the local server.

Registered through the `pytest11` entry point, so installing oxedit makes them available. They
run on the test's own event loop, whichever plugin runs the test: anyio's
(`@pytest.mark.anyio`, asyncio backend: the server runs on aiohttp) or pytest-asyncio's
(`@pytest.mark.asyncio` in strict mode, or any async test in auto mode).

Example:
    ```python
    import pytest

    @pytest.mark.anyio  # or @pytest.mark.asyncio
    @pytest.mark.oxen_faults(failure_rate=0.5, seed=3)
    async def test_retries(oxen_server, oxen_client):
        ...
        await oxen_server.wait_idle()
    ```

Fixtures:
    oxen_faults: The `Faults` the server starts with: built from the keyword arguments of the
        `oxen_faults` marker (an unknown key is an error listing the valid ones), or all off.
        Override the fixture to build them another way.
    oxen_server: A started `LocalServer`, fresh for each test.
    oxen_client: An `oxedit.Client` connected to `oxen_server`, opened with `async with`,
        with `FAST_RECONCILE` (a lost event settles in about a second).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from oxedit import Client
    from oxedit.testing import Faults, LocalServer

__all__ = ["oxen_client", "oxen_faults", "oxen_server"]

_asyncio_fixture: Callable[..., Any] | None
try:  # pytest-asyncio runs only the async fixtures it was told about (in strict mode)
    from pytest_asyncio import fixture as _asyncio_fixture
except ImportError:  # pragma: no cover - projects without pytest-asyncio
    _asyncio_fixture = None


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
        pytest.fail("@pytest.mark.oxen_faults takes keyword arguments only", pytrace=False)
    valid = sorted(f.name for f in dataclasses.fields(Faults) if f.init)
    unknown = sorted(set(marker.kwargs) - set(valid))
    if unknown:
        pytest.fail(
            f"@pytest.mark.oxen_faults: unknown Faults field(s) {', '.join(unknown)}; "
            f"valid ones: {', '.join(valid)}",
            pytrace=False,
        )
    return Faults(**marker.kwargs)


# -- one implementation, two registrations -------------------------------------------------------
# anyio runs any async fixture of a test that uses `anyio_backend`; pytest-asyncio (strict) only
# those made with its own decorator, which anyio tests must not get (pytest-asyncio would run
# them on its loop, not the test's). So each async fixture exists twice, and the public fixture,
# a plain function, asks for the one the test's runner will run.


@asynccontextmanager
async def _server(faults: Faults) -> AsyncIterator[LocalServer]:
    from oxedit.testing import LocalServer

    async with LocalServer(faults=faults) as server:
        yield server


@asynccontextmanager
async def _client(oxen_server: LocalServer) -> AsyncIterator[Client]:
    # FAST_RECONCILE: an app's tests with `drop_event_rate` must not wait minutes.
    async with oxen_server.client() as client:
        yield client


@pytest.fixture
async def _oxen_server_anyio(oxen_faults: Faults) -> AsyncIterator[LocalServer]:
    async with _server(oxen_faults) as server:
        yield server


@pytest.fixture
async def _oxen_client_anyio(oxen_server: LocalServer) -> AsyncIterator[Client]:
    async with _client(oxen_server) as client:
        yield client


if _asyncio_fixture is not None:

    @_asyncio_fixture
    async def _oxen_server_asyncio(oxen_faults: Faults) -> AsyncIterator[LocalServer]:
        async with _server(oxen_faults) as server:
            yield server

    @_asyncio_fixture
    async def _oxen_client_asyncio(oxen_server: LocalServer) -> AsyncIterator[Client]:
        async with _client(oxen_server) as client:
            yield client


def _runner(request: pytest.FixtureRequest, fixture: str) -> str:
    """`"anyio"` or `"asyncio"`: the plugin that runs this test and its async fixtures."""
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            pytest.fail(
                f"{fixture} runs on asyncio (aiohttp), not on anyio's {name!r} backend: "
                "parametrize anyio_backend with 'asyncio'",
                pytrace=False,
            )
        return "anyio"
    if request.node.get_closest_marker("asyncio") is not None and _asyncio_fixture is not None:
        return "asyncio"
    pytest.fail(
        f"{fixture} runs on the test's event loop: make the test `async def` and mark it "
        "@pytest.mark.anyio (anyio) or @pytest.mark.asyncio (pytest-asyncio)",
        pytrace=False,
    )


@pytest.fixture
def oxen_server(request: pytest.FixtureRequest) -> LocalServer:
    server: LocalServer = request.getfixturevalue(f"_oxen_server_{_runner(request, 'oxen_server')}")
    return server


@pytest.fixture
def oxen_client(request: pytest.FixtureRequest) -> Client:
    client: Client = request.getfixturevalue(f"_oxen_client_{_runner(request, 'oxen_client')}")
    return client

from __future__ import annotations

from collections.abc import Callable

import pytest

from oxedit.testing import LocalServer


@pytest.fixture
def anyio_backend() -> str:
    # oxedit is asyncio-native (aiohttp); trio is not a target.
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_ambient_oxen_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests never pick up the developer's real key or base URL."""
    monkeypatch.delenv("OXEN_API_KEY", raising=False)
    monkeypatch.delenv("OXEN_BASE_URL", raising=False)
    # Nor the machine's proxy: clients honour HTTP(S)_PROXY, and the local server is local.
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("OXEDIT_LOG", raising=False)  # it adds a stderr handler to the logger
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path_factory.mktemp("oxen-config")))
    # The CLI's schema cache: never the developer's ~/.cache, never shared between tests.
    monkeypatch.setenv("OXEDIT_CACHE_DIR", str(tmp_path_factory.mktemp("oxedit-cache")))


@pytest.fixture
def use_server(monkeypatch: pytest.MonkeyPatch) -> Callable[[LocalServer], None]:
    """Point the CLI (and any `Client()` with no arguments) at a local server."""

    def point_at(server: LocalServer) -> None:
        monkeypatch.setenv("OXEN_BASE_URL", server.url)
        monkeypatch.setenv("OXEN_API_KEY", server.api_key)

    return point_at


@pytest.fixture(params=["40", "300"])
def columns(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Output must not depend on the terminal's width (nor on the temp path's length)."""
    monkeypatch.setenv("COLUMNS", request.param)
    return str(request.param)

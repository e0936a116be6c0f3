from __future__ import annotations

import pytest


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
    monkeypatch.setenv("OXEN_CONFIG_DIR", str(tmp_path_factory.mktemp("oxen-config")))
    # The CLI's schema cache: never the developer's ~/.cache, never shared between tests.
    monkeypatch.setenv("OXEDIT_CACHE_DIR", str(tmp_path_factory.mktemp("oxedit-cache")))

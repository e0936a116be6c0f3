"""The benchmarks' checks run under the same anyio plugin as the suite."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"

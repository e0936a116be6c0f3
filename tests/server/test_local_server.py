"""`LocalServer` as a Python object: lifecycle, helpers, `run_server`, exports, pytest plugin."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp
import pytest

import oxedit.testing
from oxedit.testing import DEFAULT_API_KEY, Faults, LocalServer

from ._helpers import edit_body, enqueue, session_for

pytestmark = pytest.mark.anyio


def test_all_is_sorted_and_complete() -> None:
    # (Names that are not identifiers come from pytest rewriting the plugin's package.)
    public = {n for n in dir(oxedit.testing) if n.isidentifier() and not n.startswith("_")}
    public -= {"pytest_plugin"}  # the submodule, once pytest has loaded it

    # Sorted as ruff's RUF022 sorts (isort style): CONSTANTS, then Classes, then functions.
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert oxedit.testing.__all__ == sorted(oxedit.testing.__all__, key=kind)
    assert set(oxedit.testing.__all__) == public


async def test_lifecycle_errors() -> None:
    server = LocalServer()
    with pytest.raises(RuntimeError, match="unopened"):
        _ = server.url
    async with server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.api_key == DEFAULT_API_KEY
        with pytest.raises(RuntimeError, match="running"):
            await server.start()
    with pytest.raises(RuntimeError, match="closed"):
        server.generations()
    await server.stop()  # idempotent
    with pytest.raises(ValueError, match="workers"):
        LocalServer(workers=0)


async def test_a_port_in_use_fails_start_cleanly(server: LocalServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(OSError):
        async with LocalServer(port=port):
            pass
    with pytest.raises(OSError):
        async with LocalServer(file_port=port):
            pass


async def test_generation_helpers_and_wait_idle(server: LocalServer) -> None:
    await server.wait_idle()  # nothing created: returns at once
    with pytest.raises(KeyError):
        server.generation("nope")
    async with session_for(server) as http:
        ids = await enqueue(http, edit_body(num_generations=2))
        ids += await enqueue(http, edit_body())
    await server.wait_idle()
    assert [row["generation_id"] for row in server.generations()] == ids
    assert server.generation(ids[0])["status"] == "succeeded"
    assert server.stats.generations_created_per_request == [2, 1]
    assert server.stats.requests_by_route["POST /api/ai/queue"] == 2


async def test_faults_object_is_live(server: LocalServer) -> None:
    faults = Faults(failure_rate=1.0)
    async with LocalServer(faults=faults) as srv:
        assert srv.faults is faults
    assert server.faults == Faults()


async def test_run_server_prints_url_and_key_and_stops_on_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from oxedit.testing import run_server; run_server('127.0.0.1', 0, 'k-1')",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        first = (await proc.stdout.readline()).decode()
        assert first.startswith("oxedit local server: http://127.0.0.1:")
        url = first.split(": ", 1)[1].strip()
        assert (await proc.stdout.readline()).decode() == "API key: k-1\n"
        async with (
            aiohttp.ClientSession() as s,
            s.get(url + "/api/ai/models", headers={"Authorization": "Bearer k-1"}) as resp,
        ):
            assert resp.status == 200
        proc.send_signal(signal.SIGINT)
        assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.oxen_faults(failure_rate=1.0, seed=5)
async def test_plugin_fixtures(oxen_server: LocalServer, oxen_faults: Faults) -> None:
    assert oxen_server.faults is oxen_faults
    assert oxen_faults.failure_rate == 1.0 and oxen_faults.seed == 5


async def test_plugin_client_fixture_talks_to_the_server(
    oxen_server: LocalServer, oxen_client: object
) -> None:
    import oxedit

    assert isinstance(oxen_client, oxedit.Client)
    models = await oxen_client.models()
    assert "qwen-image-edit" in [m.id for m in models]
    assert oxen_server.stats.requests_by_route["GET /api/ai/models"] == 1

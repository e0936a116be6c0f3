"""The examples run as written, against the local server in this process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from oxedit.testing import LocalServer

from .helpers import run_process

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).parent.parent / "examples"


async def run_example(name: str, server: LocalServer, cwd: Path) -> str:
    env = {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}
    code, output = await run_process(sys.executable, str(EXAMPLES / name), env=env, cwd=cwd)
    assert code == 0, output
    return output


async def test_quickstart(tmp_path: Path) -> None:
    async with LocalServer() as server:
        output = await run_example("quickstart.py", server, tmp_path)
        (row,) = server.generations()
    assert f"enqueued {row['generation_id']}" in output
    assert (tmp_path / "out" / "night-hat.png").read_bytes()[:4] == b"\x89PNG"
    assert os.listdir(tmp_path) == ["out"]  # nothing beside it


async def test_bulk_example_and_its_rerun(tmp_path: Path) -> None:
    async with LocalServer() as server:
        first = await run_example("bulk.py", server, tmp_path)
        second = await run_example("bulk.py", server, tmp_path)
        assert len(server.generations()) == 24  # the re-run sent nothing
    assert first.count("succeeded") == second.count("succeeded") == 24
    assert len(list((tmp_path / "out" / "bulk").glob("*.png"))) == 24
    assert os.listdir(tmp_path) == ["out"]  # nothing beside it

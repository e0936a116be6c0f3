"""Oxen's official Python client (`oxenai`) against `LocalServer`: it reads what oxedit
uploaded, and creates, uploads, reads and describes files of its own.

`oxenai` pins its own pytest and ruff, so it lives in a virtual environment of its own, named
by `OXEDIT_OXENAI_PYTHON` (its python; `.ci/run` makes it). The driver script runs there, in a
subprocess, over real sockets. Without the variable the test is skipped, except in CI
(`CI=true`), where it fails: a missing client must not pass unnoticed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from oxedit._resources.upload import Uploader
from oxedit.testing import LocalServer

from .helpers import client_for, png

pytestmark = pytest.mark.anyio

DRIVER = Path(__file__).with_name("oxenai_driver.py")


@pytest.fixture
def oxenai_python() -> str:
    python = os.environ.get("OXEDIT_OXENAI_PYTHON")
    if not python:
        if os.environ.get("CI") == "true":
            pytest.fail("OXEDIT_OXENAI_PYTHON is not set: .ci/run makes the oxenai venv")
        pytest.skip("set OXEDIT_OXENAI_PYTHON to a python that has oxenai==0.65.1")
    return python


async def drive(python: str, home: Path, server: LocalServer, *args: str) -> dict[str, Any]:
    """Run the driver; what it printed as its result."""
    # Only what the client needs: its config goes to `home`, and no proxy stands between it
    # and the loopback server.
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", ""), "NO_PROXY": "*"}
    process = await asyncio.create_subprocess_exec(
        python,
        str(DRIVER),
        server.url,
        server.api_key,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    lines = out.decode().splitlines()
    assert process.returncode == 0 and lines and lines[-1].startswith("RESULT "), (
        out.decode() + err.decode()
    )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    return result


@pytest.mark.slow
async def test_oxenai_reads_what_oxedit_uploaded_and_round_trips_its_own(
    oxenai_python: str, tmp_path: Path
) -> None:
    image = png((10, 200, 30), size=(40, 30))
    async with LocalServer() as server:
        async with client_for(server) as client:
            uploader = Uploader(client._tracker.api, "ox/inputs")
            url = await uploader.url_for(image)
            await uploader.aclose()
        path = url.split("/file/main/", 1)[1]

        seen = await drive(oxenai_python, tmp_path, server, "read", "ox/inputs", path)
        digest = hashlib.sha256(image).hexdigest()
        assert seen["exists"] and seen["file_exists"] and not seen["missing_exists"]
        assert seen["sha256"] == digest and seen["downloaded_sha256"] == digest
        assert seen["metadata"] == {"filename": path.rsplit("/", 1)[1], "size": len(image)}

        own = await drive(oxenai_python, tmp_path, server, "roundtrip", "ox/notes")
        assert not own["existed"] and own["exists"]
        assert own["readme"] == "# notes\n"  # the client seeds its repository with one
        assert own["file_exists"] and not own["missing_exists"]
        assert own["sha256"] == own["uploaded_sha256"] == own["downloaded_sha256"]
        assert own["metadata"] == {"filename": "notes.txt", "size": 19}
        # The client asks for a private repository (`RemoteRepo.create`'s default).
        assert server.repository("ox", "notes")["is_public"] is False
        assert server.repository("ox", "notes")["files"] == ["README.md", "docs/notes.txt"]

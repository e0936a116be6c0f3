"""The repository file routes (create, upload, serve, metadata) over real sockets with plain
aiohttp, and an edit whose `input_image` is a file of this server's own repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from oxedit.testing import LocalServer

from ._helpers import edit_body, enqueue, image_bytes

pytestmark = pytest.mark.anyio

REPO = {"namespace": "ox", "name": "inputs", "user": {"name": "Ox", "email": "ox@example.com"}}
FILE_PATH = "/api/repos/ox/inputs/file/main/photos/cat.png"


def form(data: bytes, filename: str = "cat.png") -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", data, filename=filename, content_type="image/png")
    body.add_field("message", "add a cat")
    body.add_field("name", "Ox")
    body.add_field("email", "ox@example.com")
    return body


async def create(http: aiohttp.ClientSession, **body: Any) -> aiohttp.ClientResponse:
    async with http.post("/api/repos", json={**REPO, **body}) as resp:
        await resp.read()
        return resp


async def test_create_then_409_with_the_servers_error_body(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    resp = await create(http)
    assert resp.status == 200
    async with http.post("/api/repos", json=REPO) as again:
        assert again.status == 409
        assert await again.json() == {"status": "error", "status_message": "Repo already exists."}
    assert server.stats.repos_created == 1


async def test_create_refuses_bad_names_and_unknown_fields(http: aiohttp.ClientSession) -> None:
    assert (await create(http, name="no/slash")).status == 400
    assert (await create(http, colour="blue")).status == 400
    async with http.post("/api/repos", data=b"{}", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 400


async def test_upload_then_serve_and_describe_the_file(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    await create(http)
    data = image_bytes((16, 16))
    async with http.get(FILE_PATH.replace("/file/", "/metadata/")) as missing:
        assert missing.status == 404
    async with http.put(FILE_PATH, data=form(data)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "success" and body["commit"]["message"] == "add a cat"
    async with http.get(FILE_PATH) as resp:
        assert resp.status == 200
        assert resp.content_type == "image/png"
        assert await resp.read() == data
    async with http.get(FILE_PATH.replace("/file/", "/metadata/")) as resp:
        entry = (await resp.json())["entry"]
    assert entry["size"] == len(data) and entry["mime_type"] == "image/png"
    assert entry["filename"] == "cat.png" and entry["is_dir"] is False
    # The same bytes to the same path again: accepted (a retried upload is harmless).
    async with http.put(FILE_PATH, data=form(data)) as resp:
        assert resp.status == 200
    assert server.stats.files_uploaded == 2


async def test_upload_refusals(server: LocalServer, http: aiohttp.ClientSession) -> None:
    async with http.put(FILE_PATH, data=form(b"x")) as resp:
        assert resp.status == 404  # no such repository yet
    await create(http)
    async with http.put(FILE_PATH.replace("/main/", "/dev/"), data=form(b"x")) as resp:
        assert resp.status == 404  # no such branch
    escape = URL(f"{server.url}/api/repos/ox/inputs/file/main/a/%2E%2E/b.png", encoded=True)
    async with http.put(escape, data=form(b"x")) as resp:
        assert resp.status == 400  # never outside the repository
    async with http.put(FILE_PATH, data=b"raw", headers={"Content-Type": "image/png"}) as resp:
        assert resp.status == 400  # multipart only
    nameless = aiohttp.FormData()
    nameless.add_field("files", b"x", filename="x.png")
    async with http.put(FILE_PATH, data=nameless) as resp:
        assert resp.status == 400  # an unknown field
    assert server.stats.files_uploaded == 0


async def test_the_routes_need_the_key(server: LocalServer) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as anonymous:
        async with anonymous.post("/api/repos", json=REPO) as resp:
            assert resp.status == 401
        async with anonymous.get(FILE_PATH) as resp:
            assert resp.status == 401


async def test_fail_uploads_refuses_the_next_n_with_503(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    await create(http)
    server.faults.fail_uploads = 2
    statuses = []
    for _ in range(3):
        async with http.put(FILE_PATH, data=form(b"data")) as resp:
            statuses.append(resp.status)
    assert statuses == [503, 503, 200]
    assert server.faults.fail_uploads == 0 and server.stats.files_uploaded == 1


async def test_a_job_reads_its_input_from_the_servers_own_repository(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    await create(http)
    async with http.put(FILE_PATH, data=form(image_bytes((8, 8)))) as resp:
        assert resp.status == 200
    (gen_id,) = await enqueue(http, edit_body(input_image=server.url + FILE_PATH))
    await server.wait_idle()
    row = server.generation(gen_id)
    assert row["status"] == "succeeded", row["error_message"]
    assert row["input_image"] == server.url + FILE_PATH
    assert server.stats.requests_by_route["GET /api/repos/{namespace}/{repo_name}/file/{resource}"]


async def test_repositories_survive_a_restart_with_a_state_folder(tmp_path: Path) -> None:
    data = image_bytes((4, 4))
    async with LocalServer(state_dir=tmp_path) as first:
        headers = {"Authorization": f"Bearer {first.api_key}"}
        async with aiohttp.ClientSession(base_url=first.url, headers=headers) as http:
            await create(http)
            async with http.put(FILE_PATH, data=form(data)) as resp:
                assert resp.status == 200
    async with LocalServer(state_dir=tmp_path) as second:
        headers = {"Authorization": f"Bearer {second.api_key}"}
        async with aiohttp.ClientSession(base_url=second.url, headers=headers) as http:
            assert (await create(http)).status == 409
            async with http.get(FILE_PATH) as resp:
                assert resp.status == 200 and await resp.read() == data

"""The repository file routes (create, upload, serve, metadata) over real sockets with plain
aiohttp, and an edit whose `input_image` is a file of this server's own repository."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from oxedit.server import _repos
from oxedit.server._repos import oxen_hash
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


async def test_create_refuses_bad_names_and_types_and_ignores_unknown_fields(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    assert (await create(http, name="no/slash")).status == 400
    assert (await create(http, is_public="no")).status == 400
    assert (await create(http, files=[{"path": "a.txt", "contents": {"x": 1}}])).status == 400
    async with http.post("/api/repos", data=b"{}", headers={"Content-Type": "text/plain"}) as r:
        assert r.status == 400
    # oxen-server reads the body as `RepoNew`, without deny_unknown_fields: the official
    # client's extra fields are ignored.
    async with http.post(
        "/api/repos", json={**REPO, "host": "h", "repo_uuid": None, "colour": "blue"}
    ) as resp:
        assert resp.status == 200
        repository = (await resp.json())["repository"]
    assert repository == {
        "namespace": "ox",
        "name": "inputs",
        "latest_commit": None,
        "min_version": "0.36.0",
        "storage_kind": "local",
    }
    assert server.repository("ox", "inputs") == {"files": [], "latest_commit": None}


async def test_show_branch_and_seed_files_as_the_official_client_reads_them(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    async with http.get("/api/repos/ox/inputs") as resp:
        assert resp.status == 404
    seed = [
        {"path": "README.md", "contents": "# inputs\n", "user": {"name": "Ox", "email": "o@x"}},
        {"path": "raw/b.bin", "contents": [0, 1, 255]},
    ]
    async with http.post("/api/repos", json={**REPO, "files": seed, "is_public": False}) as r:
        commit = (await r.json())["repository"]["latest_commit"]
    assert commit["author"] == "Ox" and commit["parent_ids"] == []
    assert set(commit) == {"id", "parent_ids", "message", "author", "email", "timestamp"}
    async with http.get("/api/repos/ox/inputs") as resp:
        repository = (await resp.json())["repository"]
    assert repository["is_empty"] is False and repository["storage_kind"] == "local"
    assert repository["size"] == len("# inputs\n") + 3 and repository["branch_count"] == 1
    async with http.get("/api/repos/ox/inputs/branches/main") as resp:
        assert (await resp.json())["branch"] == {"name": "main", "commit_id": commit["id"]}
    async with http.get("/api/repos/ox/inputs/file/main/raw/b.bin") as resp:
        assert await resp.read() == bytes([0, 1, 255])
    assert server.repository("ox", "inputs")["is_public"] is False


@pytest.mark.parametrize("route", ["meta", "metadata"])
async def test_metadata_entry_has_exactly_the_clients_fields(
    server: LocalServer, http: aiohttp.ClientSession, route: str
) -> None:
    await create(http)
    async with http.put(FILE_PATH, data=form(b"")) as resp:
        commit = (await resp.json())["commit"]
    async with http.get(FILE_PATH.replace("/file/", f"/{route}/")) as resp:
        entry = (await resp.json())["entry"]
    # The client reads the entry with deny_unknown_fields [liboxen 0.54 metadata_entry.rs].
    assert set(entry) == {
        "filename", "hash", "is_dir", "latest_commit", "resource", "size", "data_type",
        "mime_type", "extension", "metadata", "is_queryable",
    }  # fmt: skip
    assert entry["latest_commit"] == commit and entry["data_type"] == "image"
    assert re.fullmatch(r"[0-9a-f]{1,32}", entry["hash"])  # 128 bits, as Oxen's are
    assert entry["hash"] == oxen_hash(b"")


def test_hashes_are_xxh3_128_as_oxens_are() -> None:
    if _repos._xxh3_128 is None and os.environ.get("CI") != "true":
        pytest.skip("no libxxhash on this machine: the server hashes with blake2b-128 instead")
    # xxHash's own test vectors; Oxen writes the number in hex without leading zeros.
    assert oxen_hash(b"") == "99aa06d3014798d86001c324468d497f"
    xxh3 = _repos._xxh3_128
    assert xxh3 is not None and oxen_hash(b"a" * 300) == format(xxh3(b"a" * 300), "x")


@pytest.mark.parametrize("only", ["meta", "metadata"])
async def test_metadata_routes_serves_only_the_one_asked(only: str) -> None:
    async with LocalServer(metadata_routes=(only,)) as server:
        headers = {"Authorization": f"Bearer {server.api_key}"}
        async with aiohttp.ClientSession(base_url=server.url, headers=headers) as http:
            await create(http)
            async with http.put(FILE_PATH, data=form(b"x")) as resp:
                assert resp.status == 200
            other = "metadata" if only == "meta" else "meta"
            async with http.get(FILE_PATH.replace("/file/", f"/{only}/")) as resp:
                assert resp.status == 200
            async with http.get(FILE_PATH.replace("/file/", f"/{other}/")) as resp:
                assert resp.status == 404
    with pytest.raises(ValueError, match="metadata_routes"):
        LocalServer(metadata_routes=("meta", "info"))


async def test_directory_uploads_with_files_array(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    await create(http)
    body = aiohttp.FormData()
    body.add_field("files[]", b"one", filename="a.txt", content_type="text/plain")
    body.add_field("files[]", b"two", filename="b.txt", content_type="text/plain")
    body.add_field("message", "two files")
    async with http.put("/api/repos/ox/inputs/file/main/docs", data=body) as resp:
        assert resp.status == 200
        commit = (await resp.json())["commit"]
    assert server.repository("ox", "inputs")["files"] == ["docs/a.txt", "docs/b.txt"]
    assert server.repository("ox", "inputs")["latest_commit"] == commit  # one commit for both
    # `file` to an existing directory lands in it, under its filename.
    async with http.put("/api/repos/ox/inputs/file/main/docs", data=form(b"c", "c.png")) as resp:
        assert resp.status == 200
        assert (await resp.json())["commit"]["parent_ids"] == [commit["id"]]
    async with http.get("/api/repos/ox/inputs/file/main/docs/c.png") as resp:
        assert await resp.read() == b"c"
    # Into the root, and refusals: both fields at once, a file where a directory must be.
    root = aiohttp.FormData()
    root.add_field("files[]", b"r", filename="root.txt")
    async with http.put("/api/repos/ox/inputs/file/main/", data=root) as resp:
        assert resp.status == 200
    both = form(b"x")
    both.add_field("files[]", b"y", filename="y.txt")
    async with http.put("/api/repos/ox/inputs/file/main/docs", data=both) as resp:
        assert resp.status == 400
    into_file = aiohttp.FormData()
    into_file.add_field("files[]", b"z", filename="z.txt")
    async with http.put("/api/repos/ox/inputs/file/main/docs/a.txt", data=into_file) as resp:
        assert resp.status == 400
    assert server.repository("ox", "inputs")["files"] == [
        "docs/a.txt", "docs/b.txt", "docs/c.png", "root.txt"
    ]  # fmt: skip


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

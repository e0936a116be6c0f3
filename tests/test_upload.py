"""Hosted inputs (`oxedit._resources.upload`, `_inputs.hosted`) against the local server over real
sockets: content addressing, uploads once, retries, where the key goes, the large data URI
warning."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PIL import Image

import oxedit
from oxedit._resources.inputs import ImageInput, LargeInlineImageWarning, hosted, image_to_uri
from oxedit._resources.upload import Uploader, multipart, parse_repo
from oxedit.testing import LocalServer

from .helpers import FAST_RETRY, cli, client_for, png, run_all

pytestmark = pytest.mark.anyio

PUT = "PUT /api/repos/{namespace}/{repo_name}/file/{resource}"
META = "GET /api/repos/{namespace}/{repo_name}/meta/{resource}"
META_DOCS = "GET /api/repos/{namespace}/{repo_name}/metadata/{resource}"
CREATE = "POST /api/repos"


@pytest.fixture
async def server() -> AsyncIterator[LocalServer]:
    async with LocalServer() as srv:
        yield srv


@pytest.fixture
async def client(server: LocalServer) -> AsyncIterator[oxedit.Client]:
    async with client_for(server, retry=FAST_RETRY) as opened:
        yield opened


def uploader_of(client: oxedit.Client, repo: str = "ox/inputs") -> Uploader:
    # The client's own API layer: what `Client(upload_repo=...)` hands its uploader.
    return Uploader(client._tracker.api, repo)


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: side*side*3 bytes and a little more."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


async def test_the_url_is_the_api_hosts_and_named_by_the_bytes(
    server: LocalServer, client: oxedit.Client
) -> None:
    uploader = uploader_of(client)
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    url = await uploader.url_for(red)
    digest = hashlib.sha256(red).hexdigest()
    assert url == f"{server.url}/api/repos/ox/inputs/file/main/oxedit-inputs/{digest}.png"
    assert await uploader.url_for(red) == url  # known: no request at all
    assert await uploader.url_for(blue) != url
    assert server.stats.requests_by_route[PUT] == 2
    assert server.stats.requests_by_route[CREATE] == 1  # the repository, once
    assert uploader.stats.uploaded == 2 and uploader.stats.bytes_uploaded == len(red) + len(blue)
    await uploader.aclose()


@pytest.mark.parametrize(
    "routes",
    [("meta",), ("metadata",), ("meta", "metadata")],
    ids=["meta only", "metadata only", "both"],
)
async def test_a_second_run_uploads_nothing(routes: tuple[str, ...]) -> None:
    # oxen-server and the official client use /meta/, the docs' page /metadata/: the hub may
    # route either, and the uploader must find what it uploaded on any of them.
    images = [png((i, 0, 0)) for i in range(3)]
    async with LocalServer(metadata_routes=routes) as server:
        async with client_for(server) as first:
            uploader = uploader_of(first)
            urls = [await uploader.url_for(image) for image in images]
            await uploader.aclose()
        async with client_for(server) as second:
            again = uploader_of(second)
            assert [await again.url_for(image) for image in images] == urls
            await again.aclose()
        requests = server.stats.requests_by_route
    assert again.stats.uploaded == 0 and again.stats.skipped == 3
    assert again.stats.bytes_skipped == sum(map(len, images))
    assert requests[PUT] == 3  # all from the first run
    assert requests[CREATE] == 1  # nothing missing: no creation asked
    # The first run asks /meta/, then /metadata/, of each missing image (a 404 of an unrouted
    # path is not counted here); the second run learns from its first image which one answers
    # and asks only that one from then on.
    expected = {("meta",): (6, 0), ("metadata",): (0, 6), ("meta", "metadata"): (6, 3)}
    assert (requests[META], requests[META_DOCS]) == expected[routes]


async def test_the_repository_is_created_private_unless_asked_otherwise() -> None:
    async with LocalServer() as server:
        for repo, public in (("ox/private", None), ("ox/public", True)):
            options = {} if public is None else {"upload_repo_public": public}
            async with client_for(server, upload_repo=repo, **options) as client:
                await client._tracker.uploader.url_for(png())  # type: ignore[union-attr]
        assert server.repository("ox", "private")["is_public"] is False
        assert server.repository("ox", "public")["is_public"] is True


async def test_concurrent_calls_for_the_same_bytes_share_one_upload(
    server: LocalServer, client: oxedit.Client
) -> None:
    uploader = uploader_of(client)
    image = png((1, 2, 3))
    urls = await asyncio.gather(*(uploader.url_for(image) for _ in range(20)))
    assert len(set(urls)) == 1
    assert server.stats.requests_by_route[PUT] == 1
    assert server.stats.requests_by_route[META] == 1
    await uploader.aclose()


async def test_a_refused_upload_is_retried(server: LocalServer, client: oxedit.Client) -> None:
    server.faults.fail_uploads = 2
    uploader = uploader_of(client)
    url = await uploader.url_for(png())
    assert server.stats.requests_by_route[PUT] == 3
    assert uploader.stats.retries == 2 and uploader.stats.uploaded == 1
    assert url.startswith(server.url)


async def test_an_upload_that_keeps_failing_is_reported_and_tried_again_next_time(
    server: LocalServer, client: oxedit.Client
) -> None:
    server.faults.fail_uploads = FAST_RETRY.max_retries + 1
    uploader = uploader_of(client)
    with pytest.raises(oxedit.ServerError, match="upload of 'oxedit-inputs/"):
        await uploader.url_for(png())
    assert uploader.stats.uploaded == 0
    await uploader.url_for(png())  # not remembered as failed: tried afresh, and it works
    assert uploader.stats.uploaded == 1


async def test_the_job_sends_the_hosted_url_and_the_key_goes_nowhere_else(
    server: LocalServer, tmp_path: Path
) -> None:
    path = tmp_path / "cat.png"
    path.write_bytes(png((20, 200, 20), size=(12, 12)))
    async with client_for(server, upload_repo="ox/inputs") as client:
        job = await client.submit(prompt="invert", image=path)
        generation = await job
        data = await generation.read()
    image = server.generation(job.id)["input_image"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert image == f"{server.url}/api/repos/ox/inputs/file/main/oxedit-inputs/{digest}.png"
    assert generation.status == "succeeded"  # the server's worker read it from the repository
    assert data.startswith(b"\x89PNG")
    assert server.stats.file_requests >= 1 and server.stats.file_requests_with_auth == 0


async def test_a_photo_size_hosted_input_is_read_whole_by_the_servers_worker(
    server: LocalServer, tmp_path: Path
) -> None:
    # 1.4 MB arrives in many chunks: the worker must read them all, not the first one.
    path = tmp_path / "photo.png"
    path.write_bytes(noise_png(690))
    async with client_for(server, upload_repo="ox/inputs") as client:
        generation = await (await client.submit(prompt="invert", image=path))
    assert len(path.read_bytes()) > 1_400_000
    assert generation.status == "succeeded"


async def test_a_batch_uploads_each_distinct_image_once_and_a_rerun_uploads_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"in{i}.png")
        paths[-1].write_bytes(png((i, 50, 50), size=(10, 10)))
    items = [{"image": str(p), "prompt": f"edit {k}"} for k in range(4) for p in paths]
    out, journal = tmp_path / "out", tmp_path / "j.sqlite"
    async with client_for(server, upload_repo="ox/inputs") as client:
        first = await run_all(client.map(items, output_dir=out, journal=journal))
    assert server.stats.requests_by_route[PUT] == 3  # 12 jobs, 3 distinct images
    async with client_for(server, upload_repo="ox/inputs") as client:  # another process
        again = await run_all(client.map(items, output_dir=tmp_path / "out2"))
    assert {r.status for r in first + again} == {"succeeded"}
    assert server.stats.requests_by_route[PUT] == 3  # the second run found them all there
    assert all(
        row["input_image"].startswith(server.url + "/api/repos/ox/inputs/")
        for row in server.generations()
    )


async def test_upload_repo_is_checked_before_anything_is_sent(
    server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match="upload_repo='inputs'"):
        client_for(server, upload_repo="inputs")
    monkeypatch.setenv("OXEN_UPLOAD_REPO", "no slash")
    with pytest.raises(oxedit.ConfigurationError, match="OXEN_UPLOAD_REPO"):
        client_for(server)
    assert not server.stats.requests_by_route


async def test_hosted_keeps_urls_and_uploads_paths_bytes_and_data_uris(
    server: LocalServer, client: oxedit.Client, tmp_path: Path
) -> None:
    uploader = uploader_of(client)
    (tmp_path / "a.png").write_bytes(png((1, 1, 1)))
    inline = await image_to_uri(png((2, 2, 2)))
    given: list[ImageInput] = [
        "https://example.com/x.png",
        tmp_path / "a.png",
        png((3, 3, 3)),
        inline,
    ]
    resolved = await hosted(given, uploader)
    assert isinstance(resolved, list) and resolved[0] == "https://example.com/x.png"
    assert all(str(url).startswith(server.url) for url in resolved[1:])
    assert server.stats.requests_by_route[PUT] == 3
    with pytest.raises(oxedit.InvalidRequestError, match="notes.txt"):
        (tmp_path / "notes.txt").write_text("hi")
        await hosted([tmp_path / "notes.txt"], uploader)
    await uploader.aclose()


async def test_large_data_uris_warn_once_naming_upload_repo() -> None:
    small, large = png(), noise_png(620)
    assert len(large) > 1_000_000
    await image_to_uri(small)  # no warning (filterwarnings=error would fail the test)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # Python's default: once per place
        await image_to_uri(large)
        await image_to_uri(large)
    assert len(seen) == 1 and seen[0].category is LargeInlineImageWarning
    assert "upload_repo" in str(seen[0].message)
    with pytest.warns(LargeInlineImageWarning, match="upload_repo"):
        await image_to_uri(await image_to_uri(large))  # a data URI given as such, too


def test_repo_names_are_checked_and_named() -> None:
    assert parse_repo("ox/inputs") == ("ox", "inputs")
    assert parse_repo("my-org/photos_2.v1") == ("my-org", "photos_2.v1")
    for bad in ("inputs", "ox/", "/inputs", "ox/in/puts", "ox inputs/x", "", None, 3):
        with pytest.raises(oxedit.InvalidRequestError, match=r"upload_repo=.*namespace/repo"):
            parse_repo(bad)


def test_multipart_bodies_are_well_formed() -> None:
    body, content_type = multipart(
        [("file", b"\x00\x01", "a.png", "image/png"), ("message", b"hi", None, None)]
    )
    boundary = content_type.partition("boundary=")[2]
    assert content_type.startswith("multipart/form-data; boundary=oxedit-")
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"--{boundary}--\r\n".encode())
    assert b'name="file"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x00\x01\r\n' in body
    assert b'name="message"\r\n\r\nhi\r\n' in body


async def test_bad_input_is_refused_before_anything_is_sent(
    server: LocalServer, client: oxedit.Client
) -> None:
    uploader = uploader_of(client)
    with pytest.raises(oxedit.InvalidRequestError, match="not a jpeg, png, gif or webp"):
        await uploader.url_for(b"%PDF-1.7 not an image")
    with pytest.raises(oxedit.InvalidRequestError, match="concurrency=0"):
        Uploader(client._tracker.api, "ox/inputs", concurrency=0)
    with pytest.raises(oxedit.InvalidRequestError, match="upload_repo='inputs'"):
        Uploader(client._tracker.api, "inputs")
    routes = server.stats.requests_by_route
    assert not any(route.startswith(("PUT", CREATE, META)) for route in routes)


async def test_the_batch_command_uploads_with_upload_to(
    tmp_path: Path, use_server: Callable[[LocalServer], None], server: LocalServer
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(png((i, 9, 9), size=(10, 10)))
    use_server(server)
    args = ("batch", str(folder), "--prompt", "invert", "--out", str(tmp_path / "out"))
    assert await cli(*args, "--upload-to", "ox/inputs") == 0
    assert server.stats.requests_by_route[PUT] == 3
    rows = server.generations()
    assert len(rows) == 3 and all("/api/repos/ox/inputs/" in r["input_image"] for r in rows)
    assert server.repository("ox", "inputs")["is_public"] is False
    assert await cli(*args[:-1], str(tmp_path / "bad"), "--upload-to", "nope") == 2
    public = ("--upload-to", "ox/shared", "--upload-public")
    assert await cli(*args[:-1], str(tmp_path / "out2"), *public) == 0
    assert server.repository("ox", "shared")["is_public"] is True


async def test_a_large_inline_image_is_sent_without_a_resource_warning(server: LocalServer) -> None:
    """Over 1 MiB, aiohttp warns (ResourceWarning) of a body given as bytes: under
    `-W error` that warning, not an OxeditError, would reach the caller."""
    big = noise_png(620)
    assert len(big) > 1 << 20
    async with client_for(server) as client:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            job = await client.submit(prompt="p", image=big)
            assert (await job).status == "succeeded"
    kinds = {w.category for w in caught}
    assert oxedit.LargeInlineImageWarning in kinds and ResourceWarning not in kinds

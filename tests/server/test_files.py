"""The result-file host: another origin, presigned URLs that expire, no API key needed."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from PIL import Image

from oxedit.testing import LocalServer

from ._helpers import download, edit_body, enqueue, get_row

pytestmark = pytest.mark.anyio


async def result_url(server: LocalServer, http: aiohttp.ClientSession) -> str:
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()
    return (await get_row(http, gen_id))["result_url"]  # type: ignore[no-any-return]


async def status_of(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status


async def test_files_live_on_another_host_and_need_no_key(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    url = urlsplit(await result_url(server, http))
    api = urlsplit(server.url)
    assert (api.hostname, url.hostname) == ("127.0.0.1", "localhost")
    assert url.port != api.port and url.path.endswith(".png")
    assert set(parse_qs(url.query)) == {"expires", "sig"}
    img = Image.open(io.BytesIO(await download(url.geturl())))
    assert img.format == "PNG"
    assert server.stats.file_requests == 1 and server.stats.file_requests_with_auth == 0


async def test_requests_carrying_a_key_are_counted(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    url = await result_url(server, http)
    async with http.get(url) as resp:  # this session sends the key everywhere: a client bug
        assert resp.status == 200
    assert server.stats.file_requests_with_auth == 1
    assert server.stats.requests_by_route["GET /files/{name}"] == 1


@pytest.mark.parametrize(
    "mangle",
    [
        lambda u: u[:-1] + ("0" if u[-1] != "0" else "1"),  # wrong signature
        lambda u: u.replace("expires=", "expires=9"),  # extended expiry, old signature
        lambda u: u.split("?")[0],  # unsigned
        lambda u: u.replace("expires=", "expires=x"),
    ],
)
async def test_tampered_urls_are_403(
    server: LocalServer, http: aiohttp.ClientSession, mangle: object
) -> None:
    url = await result_url(server, http)
    assert callable(mangle)
    assert await status_of(mangle(url)) == 403


async def test_unknown_files_are_404(server: LocalServer, http: aiohttp.ClientSession) -> None:
    url = await result_url(server, http)
    path = urlsplit(url).path
    assert await status_of(url.replace(path, "/files/0000.png")) == 404
    assert await status_of(url.replace(".png", ".webp")) == 404


async def test_urls_expire_after_url_ttl(server: LocalServer, http: aiohttp.ClientSession) -> None:
    server.faults.url_ttl = 0
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()
    expired = (await get_row(http, gen_id))["result_url"]
    async with aiohttp.ClientSession() as s, s.get(expired) as resp:
        assert resp.status == 403
        assert await resp.json() == {"error": {"message": "Request has expired"}}
    server.faults.url_ttl = 3600
    assert await status_of((await get_row(http, gen_id))["result_url"]) == 200


async def test_each_read_of_a_row_presigns_a_fresh_url(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()

    def expires(url: str) -> int:
        return int(parse_qs(urlsplit(url).query)["expires"][0])

    server.faults.url_ttl = 100
    first = expires((await get_row(http, gen_id))["result_url"])
    server.faults.url_ttl = 10_000
    listed = await (await http.get("/api/ai/queue", params={"status": "succeeded"})).json()
    assert expires(listed["generations"][0]["result_url"]) >= first + 9_000
    assert expires(server.generation(gen_id)["result_url"]) >= first + 9_000

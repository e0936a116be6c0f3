"""The local server where the published docs and spec disagree (issue 14 items 7-9).

Raw aiohttp on purpose, never oxedit's client: these tests pin the wire format.
"""

from __future__ import annotations

import aiohttp
import pytest

from oxedit.testing import Faults, LocalServer

from ._helpers import assert_typed_error, edit_body, enqueue, get_row, session_for

pytestmark = pytest.mark.anyio

MODEL_NOT_FOUND = {"error": {"message": "Model not found: bad-model-name"}}


# -- item 7: unknown model -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/ai/queue", "/api/ai/images/edit"])
async def test_unknown_model_is_400_with_the_docs_message_body(
    http: aiohttp.ClientSession, path: str
) -> None:
    # [spec] POST /api/ai/queue lists only 400; [doc] the message-shaped body.
    async with http.post(path, json=edit_body(model="bad-model-name")) as resp:
        assert resp.status == 400
        assert await resp.json() == MODEL_NOT_FOUND


# -- item 8: the edit endpoint's image field -----------------------------------------------------


async def test_edit_takes_the_documented_input_image_and_refuses_image(
    http: aiohttp.ClientSession,
) -> None:
    # [doc] the docs and model pages send `input_image`.
    async with http.post("/api/ai/images/edit", json=edit_body()) as resp:
        assert resp.status == 200, await resp.text()
    body = edit_body()
    body["image"] = body.pop("input_image")
    async with http.post("/api/ai/images/edit", json=body) as resp:
        await assert_typed_error(resp, 400, "invalid_params", "Unknown field")
        assert "image" in (await resp.json())["error"]["detail"]


async def test_edit_field_image_behaves_like_the_spec(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    # [spec] ImageEditRequest requires `image`.
    server.faults.edit_field = "image"
    async with http.post("/api/ai/images/edit", json=edit_body()) as resp:
        detail = (await assert_typed_error(resp, 400, "invalid_params"))["error"]["detail"]
        assert detail == "image is required"
    body = edit_body()
    body["image"] = body.pop("input_image")
    async with http.post("/api/ai/images/edit", json=body) as resp:
        assert resp.status == 200, await resp.text()
        (image,) = (await resp.json())["images"]
    assert image["url"]
    both = {**edit_body(), "image": body["image"]}
    async with http.post("/api/ai/images/edit", json=both) as resp:
        await assert_typed_error(resp, 400, "invalid_params", "input_image")
    # The queue is not the edit endpoint: it keeps `input_image`.
    async with http.post("/api/ai/queue", json=edit_body()) as resp:
        assert resp.status == 200


def test_edit_field_takes_only_the_two_published_names() -> None:
    with pytest.raises(ValueError, match="edit_field"):
        Faults(edit_field="images")


# -- item 9: result URLs on the API's own host ---------------------------------------------------


async def _result_url(server: LocalServer, http: aiohttp.ClientSession) -> str:
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()
    url = (await get_row(http, gen_id))["result_url"]
    assert isinstance(url, str)
    return url


async def test_results_on_the_api_host_need_the_key() -> None:
    # [doc] the docs' result URLs are on hub.oxen.ai; [guess] served there with the key.
    async with LocalServer(results_on_api_host=True) as server, session_for(server) as http:
        url = await _result_url(server, http)
        assert url.startswith(server.url + "/api/repos/")
        async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
            await assert_typed_error(resp, 401, "unauthenticated")
        async with http.get(url) as resp:
            assert resp.status == 200 and resp.content_type == "image/png"
            assert (await resp.read()).startswith(b"\x89PNG")
        async with http.get(url.replace("sig=", "sig=0")) as resp:
            assert resp.status == 403
            assert await resp.json() == {"error": {"message": "Signature does not match"}}
        async with http.post("/api/ai/images/edit", json=edit_body()) as resp:
            (image,) = (await resp.json())["images"]
        assert image["url"].startswith(server.url + "/api/repos/")
    assert server.stats.file_requests == 0


async def test_results_on_the_api_host_can_redirect_to_the_file_host() -> None:
    # [guess] a hub keeping files in object storage answers with a presigned redirect.
    async with LocalServer(results_on_api_host="redirect") as server, session_for(server) as http:
        url = await _result_url(server, http)
        assert url.startswith(server.url + "/api/repos/")
        async with aiohttp.ClientSession() as anonymous, anonymous.get(url) as resp:
            await assert_typed_error(resp, 401, "unauthenticated")
        async with http.get(url, allow_redirects=False) as resp:
            assert resp.status == 302
            target = resp.headers["Location"]
        assert target.startswith(server.files_url + "/files/")
        assert target.partition("?")[2] == url.partition("?")[2]
        async with aiohttp.ClientSession() as anonymous, anonymous.get(target) as resp:
            assert resp.status == 200
    assert (server.stats.file_requests, server.stats.file_requests_with_auth) == (1, 0)


async def test_results_stay_on_the_file_host_by_default(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    url = await _result_url(server, http)
    assert url.startswith(server.files_url + "/files/")
    async with http.get(f"/api/repos/oxedit/results/file/main/{url.rpartition('/')[2]}") as resp:
        await assert_typed_error(resp, 404, "resource_not_found")


def test_results_on_api_host_takes_only_its_documented_values() -> None:
    with pytest.raises(ValueError, match="results_on_api_host"):
        LocalServer(results_on_api_host="yes")  # type: ignore[arg-type]

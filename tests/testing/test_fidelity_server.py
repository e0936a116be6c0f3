"""The local server where the published docs and spec disagree (issue 14 items 7-9).

Raw aiohttp on purpose, never oxedit's client: these tests pin the wire format.
"""

from __future__ import annotations

import aiohttp
import pytest

from oxedit.testing import Faults, LocalServer

from ._helpers import assert_typed_error, edit_body

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

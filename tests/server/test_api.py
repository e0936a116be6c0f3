"""Every `/api` route over real sockets: documented shapes, status codes and error bodies."""

from __future__ import annotations

import base64
import io
import uuid
from typing import Any

import aiohttp
import pytest
from PIL import Image

from oxedit.testing import LocalServer

from ._helpers import (
    assert_typed_error,
    data_uri,
    download,
    edit_body,
    enqueue,
    get_row,
    image_bytes,
)

pytestmark = pytest.mark.anyio

ROW_KEYS = {
    "generation_id",
    "model_name",
    "prompt",
    "media_type",
    "status",
    "result_url",
    "error_message",
    "enqueued_at",
    "started_at",
    "completed_at",
}


# -- auth --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/ai/queue"),
        ("GET", "/api/ai/queue"),
        ("GET", "/api/ai/queue/x"),
        ("DELETE", "/api/ai/queue/x"),
        ("GET", "/api/events"),
        ("POST", "/api/ai/images/edit"),
        ("GET", "/api/ai/models"),
        ("GET", "/api/ai/models/qwen-image-edit"),
    ],
)
@pytest.mark.parametrize("header", [None, "Bearer wrong-key", "oxen-test-key", "Basic b3hlbg=="])
async def test_every_api_route_requires_the_bearer_key(
    server: LocalServer, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, server.url + path, headers=headers, json={}) as resp,
    ):
        body = await assert_typed_error(resp, 401, "unauthenticated")
    assert "detail" not in body["error"]
    assert server.stats.generations_created == 0


async def test_custom_api_key_and_case_insensitive_scheme() -> None:
    async with LocalServer(api_key="sk-123") as server, aiohttp.ClientSession() as s:
        assert server.api_key == "sk-123"
        async with s.get(
            server.url + "/api/ai/models", headers={"Authorization": "bearer sk-123"}
        ) as resp:
            assert resp.status == 200
        async with s.get(
            server.url + "/api/ai/models", headers={"Authorization": "Bearer oxen-test-key"}
        ) as resp:
            assert resp.status == 401


# -- models ------------------------------------------------------------------------------------


async def test_models_list_and_get(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/ai/models") as resp:
        assert resp.status == 200 and resp.content_type == "application/json"
        listing = await resp.json()
    assert listing["object"] == "list"
    ids = [m["id"] for m in listing["data"]]
    assert {"qwen-image-edit", "qwen-image-edit-plus", "flux-kontext-dev"} <= set(ids)
    assert any("image" not in m["capabilities"]["output"] for m in listing["data"])
    async with http.get("/api/ai/models/qwen-image-edit") as resp:
        model = await resp.json()
    assert model == listing["data"][ids.index("qwen-image-edit")]
    assert {"id", "object", "created", "owned_by", "capabilities", "request_schema"} <= set(model)
    assert model["pricing"]["method"] == "per_image" and model["pricing"]["cost_per_image"] == 0.03
    schema = model["request_schema"]
    assert schema["type"] == "object" and set(schema["required"]) == {"prompt", "input_image"}
    assert schema["properties"]["input_image"]["format"] == "uri"
    aspect = schema["properties"]["aspect_ratio"]
    assert aspect["default"] == "16:9"
    assert aspect["enum"] == ["1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3"]
    plus = await (await http.get("/api/ai/models/qwen-image-edit-plus")).json()
    assert plus["request_schema"]["properties"]["input_image"]["type"] == "array"
    flux = await (await http.get("/api/ai/models/flux-kontext-dev")).json()
    steps = flux["request_schema"]["properties"]["num_inference_steps"]
    assert steps["type"] == "integer" and steps["minimum"] == 4 and steps["maximum"] == 50


async def test_unknown_model_is_404_resource_not_found(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/ai/models/nope") as resp:
        await assert_typed_error(resp, 404, "resource_not_found")


# -- enqueue -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4])
async def test_enqueue_creates_one_id_per_generation(
    server: LocalServer, http: aiohttp.ClientSession, n: int
) -> None:
    ids = await enqueue(http, edit_body(num_generations=n))
    assert len(ids) == n == len(set(ids))
    assert all(uuid.UUID(i).version == 4 for i in ids)
    assert server.stats.generations_created == n
    assert server.stats.generations_created_per_request == [n]


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"num_generations": 0}, "num_generations must be between 1 and 4, got 0"),
        ({"num_generations": 5}, "num_generations must be between 1 and 4, got 5"),
        ({"num_generations": "2"}, "num_generations must be an integer"),
        ({"num_generations": True}, "num_generations must be an integer"),
        ({"target_repo": 3}, "target_repo must be a string"),
        ({"promt": "typo"}, "Unknown field for model qwen-image-edit: promt"),
        ({"b": 1, "a": 2}, "Unknown fields for model qwen-image-edit: a, b"),
        ({"negative_prompt": "x"}, "negative_prompt"),  # a field of another model
        ({"response_format": "url"}, "response_format"),
    ],  # a field of the blocking route
)
async def test_enqueue_rejects_bad_queue_params_and_unknown_fields(
    server: LocalServer, http: aiohttp.ClientSession, extra: dict[str, Any], detail: str
) -> None:
    async with http.post("/api/ai/queue", json=edit_body(**extra)) as resp:
        await assert_typed_error(resp, 400, "invalid_params", detail)
    assert server.stats.generations_created == 0


@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"prompt": "x"}', "model is required"),
        (b'{"model": 7}', "model must be a string"),
        (b'{"model": "qwen3-32b", "prompt": "x"}', "does not output images"),
    ],
)
async def test_enqueue_rejects_malformed_bodies(
    http: aiohttp.ClientSession, data: bytes, detail: str
) -> None:
    async with http.post(
        "/api/ai/queue", data=data, headers={"Content-Type": "application/json"}
    ) as resp:
        await assert_typed_error(resp, 400, "invalid_params", detail)


async def test_enqueue_unknown_model_uses_the_message_body_shape(
    http: aiohttp.ClientSession,
) -> None:
    async with http.post("/api/ai/queue", json=edit_body(model="bad-model-name")) as resp:
        assert resp.status == 400  # [spec] only 400 (issue 14 item 7)
        assert await resp.json() == {"error": {"message": "Model not found: bad-model-name"}}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            edit_body(aspect_ratio="5:4"),
            "aspect_ratio must be one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, got '5:4'",
        ),
        ({"model": "qwen-image-edit", "input_image": data_uri()}, "prompt is required"),
        (
            edit_body(input_image=data_uri(image_bytes(fmt="BMP"), "image/bmp")),
            "input_image must be jpeg, png, gif, or webp",
        ),
        (edit_body(input_image="data:image/png;base64,%%%"), "input_image data URI is not valid"),
        (edit_body(input_image="not a uri"), "input_image must be a URI"),
        (edit_body(prompt=["x"]), "prompt must be a string"),  # type: ignore[arg-type]
    ],
)
async def test_model_specific_problems_fail_the_generation_not_the_enqueue(
    server: LocalServer, http: aiohttp.ClientSession, body: dict[str, Any], error: str
) -> None:
    (gen_id,) = await enqueue(http, body)
    await server.wait_idle()
    row = await get_row(http, gen_id)
    assert row["status"] == "failed"
    assert row["error_message"].startswith(error)
    assert row["result_url"] is None and row["completed_at"] is not None


# -- one row, list, cancel ---------------------------------------------------------------------


async def test_row_shape_with_params_echoed(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    body = edit_body(
        "mirror", aspect_ratio="1:1", target_namespace="ox", target_repo="r", target_directory="d"
    )
    (gen_id,) = await enqueue(http, body)
    await server.wait_idle()
    row = await get_row(http, gen_id)
    assert set(row) == ROW_KEYS | {
        "input_image",
        "aspect_ratio",
        "target_namespace",
        "target_repo",
        "target_directory",
    }
    assert row["generation_id"] == gen_id and row["model_name"] == "qwen-image-edit"
    assert row["prompt"] == "mirror" and row["media_type"] == "image"
    assert row["status"] == "succeeded" and row["error_message"] is None
    assert row["aspect_ratio"] == "1:1" and row["input_image"] == body["input_image"]
    assert row["target_namespace"] == "ox"
    for key in ("enqueued_at", "started_at", "completed_at"):
        assert isinstance(row[key], int)
    assert row["enqueued_at"] <= row["started_at"] <= row["completed_at"]
    assert row["result_url"].startswith(server.files_url + "/files/")
    assert server.generation(gen_id)["status"] == "succeeded"


async def test_unknown_generation_is_404_on_get_and_delete(http: aiohttp.ClientSession) -> None:
    for method in ("GET", "DELETE"):
        async with http.request(method, f"/api/ai/queue/{uuid.uuid4()}") as resp:
            await assert_typed_error(resp, 404, "resource_not_found")


async def test_list_defaults_to_active_rows_and_filters(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    done = await enqueue(http, edit_body(num_generations=2, target_repo="a"))
    await server.wait_idle()
    server.faults.latency = 60.0  # keep the next ones active
    active = await enqueue(http, edit_body(target_repo="b", target_directory="imgs"))

    async def listed(**params: str) -> list[str]:
        async with http.get("/api/ai/queue", params=params) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["count"] == len(body["generations"])
        return [row["generation_id"] for row in body["generations"]]

    assert await listed() == active
    assert await listed(status="succeeded") == done
    assert await listed(status="succeeded,queued,processing") == done + active
    assert await listed(status="succeeded", repo="a") == done
    assert await listed(status="succeeded", repo="b") == []
    assert await listed(folder="imgs", model="qwen-image-edit", media_type="image") == active
    assert await listed(model="flux-kontext-dev") == []
    assert await listed(namespace="nobody") == []
    async with http.get("/api/ai/queue", params={"status": "done"}) as resp:
        await assert_typed_error(resp, 400, "invalid_params", "status must be one of")
    async with http.get("/api/ai/queue", params={"page": "2"}) as resp:
        await assert_typed_error(resp, 400, "invalid_params", "page")


async def test_cancel_queued_and_finished_rows(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    (finished,) = await enqueue(http, edit_body())
    await server.wait_idle()
    server.faults.latency = 60.0
    (active,) = await enqueue(http, edit_body())
    before = await get_row(http, active)
    assert before["status"] in ("queued", "processing")
    assert before["result_url"] is None and before["completed_at"] is None
    for gen_id in (active, finished):
        async with http.delete(f"/api/ai/queue/{gen_id}") as resp:
            assert resp.status == 200
            assert await resp.json() == {"status": "success", "generation_id": gen_id}
    cancelled = await get_row(http, active)
    assert cancelled["status"] == "cancelled" and cancelled["result_url"] is None
    assert (await get_row(http, finished))["status"] == "succeeded"  # unchanged
    await server.wait_idle()  # a cancelled row is no longer active
    async with http.get("/api/ai/queue", params={"status": "cancelled"}) as resp:
        assert [r["generation_id"] for r in (await resp.json())["generations"]] == [active]


# -- blocking edit -----------------------------------------------------------------------------


async def test_blocking_edit_returns_a_url(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    async with http.post("/api/ai/images/edit", json=edit_body("invert")) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert set(body) == {"model", "created", "images"}
    assert body["model"] == "qwen-image-edit" and isinstance(body["created"], int)
    (image,) = body["images"]
    assert set(image) == {"url"}
    async with aiohttp.ClientSession() as s, s.get(image["url"]) as resp:
        img = Image.open(io.BytesIO(await resp.read()))
    assert img.size == (15, 8)  # 8x8 padded to 16:9
    assert img.getpixel((7, 4)) == (245, 135, 25)  # inverted (10, 120, 230)
    # A blocking edit is not a queue row and sends no event.
    assert server.generations() == [] and server.stats.generations_created == 0


async def test_blocking_edit_b64_json_matches_the_queued_result(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    body = edit_body("grayscale", aspect_ratio="4:3")
    async with http.post(
        "/api/ai/images/edit",
        json={**body, "response_format": "b64_json", "target_namespace": "ox"},
    ) as resp:
        (image,) = (await resp.json())["images"]
    (gen_id,) = await enqueue(http, body)
    await server.wait_idle()
    queued_result = await download((await get_row(http, gen_id))["result_url"])
    assert base64.b64decode(image["b64_json"]) == queued_result


@pytest.mark.parametrize(
    ("extra", "status", "detail"),
    [
        ({"aspect_ratio": "2:1"}, 400, "aspect_ratio must be one of"),
        ({"num_generations": 2}, 400, "Unknown field for model qwen-image-edit: num_generations"),
        ({"response_format": "png"}, 400, "response_format must be url or b64_json"),
    ],
)
async def test_blocking_edit_errors_are_invalid_params(
    http: aiohttp.ClientSession, extra: dict[str, Any], status: int, detail: str
) -> None:
    async with http.post("/api/ai/images/edit", json=edit_body(**extra)) as resp:
        await assert_typed_error(resp, status, "invalid_params", detail)


async def test_chained_edit_fetches_an_http_input(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    (first,) = await enqueue(http, edit_body("invert"))
    await server.wait_idle()
    url = (await get_row(http, first))["result_url"]
    (second,) = await enqueue(http, edit_body("invert", input_image=url))
    (missing,) = await enqueue(http, edit_body(input_image=server.files_url + "/files/x.png"))
    await server.wait_idle()
    img = Image.open(io.BytesIO(await download((await get_row(http, second))["result_url"])))
    assert img.getpixel((7, 4)) == (10, 120, 230)  # inverted twice
    row = await get_row(http, missing)
    assert row["status"] == "failed"
    assert row["error_message"] == "input_image could not be downloaded: HTTP 404"


async def test_multi_image_model_and_output_format(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    body = {
        "model": "qwen-image-edit-plus",
        "prompt": "mirror",
        "negative_prompt": "blur",
        "input_image": [data_uri(), data_uri()],
        "aspect_ratio": "1:1",
        "output_format": "webp",
    }
    (gen_id,) = await enqueue(http, body)
    await server.wait_idle()
    url = (await get_row(http, gen_id))["result_url"]
    assert ".webp?" in url
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.content_type == "image/webp"
        assert Image.open(io.BytesIO(await r.read())).size == (16, 16)


# -- unmatched routes and crashes --------------------------------------------------------------


async def test_unknown_route_and_method(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/ai/nothing") as resp:
        await assert_typed_error(resp, 404, "resource_not_found")
    async with http.put("/api/ai/queue") as resp:
        await assert_typed_error(resp, 405, "invalid_params")
        assert "POST" in resp.headers["Allow"]


async def test_unexpected_errors_are_500_unknown_error(
    server: LocalServer,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (gen_id,) = await enqueue(http, edit_body())

    def boom(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("oxedit.server._jobs.Generation.row", boom)
    async with http.get(f"/api/ai/queue/{gen_id}") as resp:
        await assert_typed_error(resp, 500, "unknown_error")
    assert "boom" in caplog.text
    caplog.clear()

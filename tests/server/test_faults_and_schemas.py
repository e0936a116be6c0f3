"""Fault settings (validation, replayable RNG), model-parameter validation, and the catalogue
each model's docs page describes (served over real sockets)."""

from __future__ import annotations

import io
import random
from typing import Any

import aiohttp
import pytest
from PIL import Image

from oxedit.server._schemas import MODELS, ParamError, check_params
from oxedit.testing import Faults, LocalServer

from ._helpers import data_uri, download, enqueue, get_row, image_bytes


def test_all_faults_are_off_by_default() -> None:
    f = Faults()
    assert not any(f.roll(rate) for rate in (f.failure_rate, f.drop_event_rate) for _ in range(100))
    assert f.draw(f.latency) == 0.0 and f.draw(f.delay_event) == 0.0
    assert f.keepalive_interval == 15.0 and f.url_ttl == 3600.0
    assert f.cut_stream_after_events is None and not f.stall_streams and not f.stamp_events
    rates = (f.get_error_rate, f.get_html_rate, f.get_redirect_rate, f.enqueue_bad_body_rate)
    assert rates == (0.0, 0.0, 0.0, 0.0) and f.silent_cancel_rate == 0.0
    assert not f.stream_close_at_once and f.refuse_streams == 0 and f.drip_interval is None
    assert f.oversized_event_bytes == 0 and f.result_body is None and f.result_gzip_bomb == 0
    assert (f.enqueue_bad_body, f.refuse_stream_status) == ("html", 401)


def test_new_fault_fields_accept_their_documented_values() -> None:
    f = Faults(drip_interval=0.0, refuse_stream_status=503, result_body=b"")
    for kind in ("html", "empty_object", "empty_generations", "extra_ids"):
        f.enqueue_bad_body = kind
    f.refuse_streams, f.drip_interval, f.result_gzip_bomb = 3, None, 1 << 30


def test_same_seed_replays_the_same_decisions() -> None:
    def decisions(seed: int) -> list[Any]:
        f = Faults(seed=seed)
        return [(f.roll(0.5), f.draw((0.0, 1.0)), f.choice(("a", "b", "c"))) for _ in range(50)]

    assert decisions(3) == decisions(3)
    assert decisions(3) != decisions(4)


def test_assigning_seed_reseeds() -> None:
    f = Faults(seed=1)
    first = [f.roll(0.5) for _ in range(30)]
    f.seed = 1
    assert [f.roll(0.5) for _ in range(30)] == first


def test_zero_rate_draws_nothing_so_other_faults_keep_their_sequence() -> None:
    f, g = Faults(seed=9), Faults(seed=9)
    seq_f = [f.roll(0.5) for _ in range(20)]
    seq_g = [(g.roll(0.0), g.roll(0.5))[1] for _ in range(20)]
    assert seq_f == seq_g


def test_draw_accepts_fixed_range_and_callable() -> None:
    f = Faults()
    assert f.draw(0.25) == 0.25
    assert all(0.1 <= f.draw((0.1, 0.2)) <= 0.2 for _ in range(100))
    assert f.draw(lambda rng: 0.5 + rng.random() * 0) == 0.5
    assert f.draw(lambda rng: -3.0) == 0.0  # never negative
    assert isinstance(f.rng, random.Random)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_rate", 1.5),
        ("drop_event_rate", -0.1),
        ("lost_response_rate", "0.5"),
        ("latency", -1.0),
        ("latency", (2.0, 1.0)),
        ("delay_event", (1.0,)),
        ("keepalive_interval", 0.0),
        ("cut_stream_after_events", 0),
        ("retry_after", 0.5),
        ("retry_after", -1),
        ("get_error_rate", 2),
        ("get_html_rate", None),
        ("get_redirect_rate", -0.5),
        ("enqueue_bad_body_rate", 1.01),
        ("silent_cancel_rate", "1"),
        ("enqueue_bad_body", "xml"),
        ("refuse_streams", -1),
        ("refuse_streams", True),
        ("refuse_stream_status", 200),
        ("refuse_stream_status", "401"),
        ("drip_interval", -0.1),
        ("drip_interval", float("inf")),
        ("oversized_event_bytes", 1.5),
        ("result_body", "not bytes"),
        ("result_gzip_bomb", -1),
    ],
)
def test_bad_values_fail_at_construction_and_at_runtime(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"Faults.{field}"):
        Faults(**{field: value})
    f = Faults()
    with pytest.raises(ValueError, match=f"Faults.{field}"):
        setattr(f, field, value)


QWEN = MODELS["qwen-image-edit"]
URI = "data:image/png;base64,AAAA"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"input_image": URI}, "prompt is required"),
        ({"prompt": "x"}, "input_image is required"),
        (
            {"prompt": "x", "input_image": URI, "aspect_ratio": "5:4"},
            "aspect_ratio must be one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, got '5:4'",
        ),
        ({"prompt": 3, "input_image": URI}, "prompt must be a string, got 3"),
        ({"prompt": "x", "input_image": "ftp://a/b.png"}, "input_image must be a URI"),
    ],
)
def test_check_params_names_the_field(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError, match="^" + message.replace("(", r"\(")):
        check_params(QWEN, params)


def test_check_params_numbers_arrays_and_valid_input() -> None:
    flux, plus = MODELS["flux-kontext-dev"], MODELS["qwen-image-edit-plus"]
    base = {"prompt": "x", "input_image": URI}
    check_params(QWEN, {**base, "aspect_ratio": "1:1"})
    check_params(flux, {**base, "seed": 3, "guidance": 2, "num_inference_steps": 50})
    with pytest.raises(ParamError, match="num_inference_steps must be <= 50, got 51"):
        check_params(flux, {**base, "num_inference_steps": 51})
    with pytest.raises(ParamError, match="seed must be an integer, got True"):
        check_params(flux, {**base, "seed": True})
    check_params(plus, {"prompt": "x", "input_image": [URI, URI], "output_format": "webp"})
    with pytest.raises(ParamError, match="input_image must be an array"):
        check_params(plus, base)
    with pytest.raises(ParamError, match=r"input_image\[1\] must be a string"):
        check_params(plus, {"prompt": "x", "input_image": [URI, 7]})


# -- the catalogue, as the models endpoint serves it (issue 14 item 6) -------------------------


async def _model(http: aiohttp.ClientSession, model_id: str) -> dict[str, Any]:
    async with http.get(f"/api/ai/models/{model_id}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


@pytest.mark.anyio
async def test_flux_kontext_dev_follows_its_docs_page(http: aiohttp.ClientSession) -> None:
    # docs.oxen.ai models/flux-kontext-dev, "Request parameters".
    props = (await _model(http, "flux-kontext-dev"))["request_schema"]["properties"]
    assert props["aspect_ratio"]["enum"] == [
        "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
        "match_input_image",
    ]  # fmt: skip
    assert props["aspect_ratio"]["default"] == "16:9"
    steps = props["num_inference_steps"]
    assert (steps["type"], steps["minimum"], steps["maximum"], steps["default"]) == (
        "integer", 4, 50, 28
    )  # fmt: skip
    guidance = props["guidance"]
    assert (guidance["minimum"], guidance["maximum"], guidance["default"]) == (0, 10, 2.5)
    quality = props["output_quality"]
    assert (quality["type"], quality["minimum"], quality["maximum"], quality["default"]) == (
        "integer", 0, 100, 80
    )  # fmt: skip
    assert props["disable_safety_checker"]["type"] == "boolean"
    assert props["disable_safety_checker"]["default"] is False
    assert props["output_format"]["enum"] == ["webp", "jpg", "png"]
    assert props["output_format"]["default"] == "webp"


@pytest.mark.anyio
async def test_model_objects_follow_the_spec(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/ai/models") as resp:
        listing = await resp.json()
    methods = {"token", "time", "per_image", "per_video_output_second"}
    for model in listing["data"]:
        assert model["object"] == "model" and isinstance(model["created"], int)
        assert isinstance(model["owned_by"], str) and model["owned_by"]
        assert model["pricing"]["method"] in methods, model["id"]
        assert "request_schema" in model
    text = await _model(http, "qwen3-32b")
    assert text["request_schema"] is None  # [spec] may be null; text models have none
    assert text["pricing"]["method"] == "token"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "model_id",
    ["qwen-image-edit-plus", "flux-2-dev", "flux-2-pro", "flux-2-flex", "bytedance-seedream-4"],
)
async def test_multi_image_models_have_their_documented_ids(
    http: aiohttp.ClientSession, model_id: str
) -> None:
    schema = (await _model(http, model_id))["request_schema"]
    assert schema["properties"]["input_image"]["type"] == "array"
    assert schema["properties"]["input_image"]["items"]["type"] == "string"


@pytest.mark.anyio
@pytest.mark.parametrize("model_id", ["flux-2", "seedream"])
async def test_made_up_model_ids_do_not_exist(http: aiohttp.ClientSession, model_id: str) -> None:
    async with http.get(f"/api/ai/models/{model_id}") as resp:
        assert resp.status == 404


async def _run(http: aiohttp.ClientSession, server: LocalServer, **body: Any) -> dict[str, Any]:
    body.setdefault("prompt", "invert the colours")
    (gen_id,) = await enqueue(http, body)
    await server.wait_idle()
    return await get_row(http, gen_id)


@pytest.mark.anyio
async def test_output_format_default_and_jpg_follow_the_docs(
    http: aiohttp.ClientSession, server: LocalServer
) -> None:
    image = data_uri()
    row = await _run(http, server, model="flux-kontext-dev", input_image=image)
    assert row["status"] == "succeeded", row
    # flux-kontext-dev's default output_format is webp [doc].
    assert Image.open(io.BytesIO(await download(row["result_url"]))).format == "WEBP"
    row = await _run(http, server, model="flux-kontext-dev", input_image=image, output_format="jpg")
    assert row["status"] == "succeeded", row
    assert Image.open(io.BytesIO(await download(row["result_url"]))).format == "JPEG"
    row = await _run(
        http, server, model="qwen-image-edit-plus", input_image=[image], output_format="jpeg"
    )
    assert row["status"] == "failed"
    assert row["error_message"] == "output_format must be one of webp, jpg, png, got 'jpeg'"


@pytest.mark.anyio
async def test_match_input_image_keeps_the_inputs_shape(
    http: aiohttp.ClientSession, server: LocalServer
) -> None:
    image = data_uri(image_bytes((30, 10)))
    row = await _run(
        http, server, model="flux-kontext-dev", input_image=image,
        aspect_ratio="match_input_image", num_inference_steps=4,
    )  # fmt: skip
    assert row["status"] == "succeeded", row
    assert Image.open(io.BytesIO(await download(row["result_url"]))).size == (30, 10)
    row = await _run(
        http, server, model="flux-kontext-dev", input_image=image, num_inference_steps=3
    )
    assert row["status"] == "failed"
    assert row["error_message"] == "num_inference_steps must be >= 4, got 3"

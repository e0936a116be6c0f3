"""Input checks that run before anything is sent."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from oxedit import InvalidRequestError
from oxedit._resources.inputs import build_payload, image_to_uri, sniff_mime
from oxedit._resources.validate import FALLBACK, Schema

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 16
WEBP = b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 8


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (PNG, "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (b"BM\x00\x00", None),
        (b"", None),
    ],
)
def test_sniff_mime(data: bytes, mime: str | None) -> None:
    assert sniff_mime(data) == mime


@pytest.mark.anyio
async def test_local_file_becomes_data_uri_with_its_type(tmp_path: Path) -> None:
    path = tmp_path / "cat.jpg"
    path.write_bytes(JPEG)
    expected = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    assert await image_to_uri(path) == expected
    assert await image_to_uri(str(path)) == expected
    assert await image_to_uri(JPEG) == expected


@pytest.mark.anyio
async def test_urls_and_data_uris_pass_through() -> None:
    assert await image_to_uri("https://example.com/a.png") == "https://example.com/a.png"
    uri = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert await image_to_uri(uri) == uri


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("missing.png", "'missing.png': no such file"),
        (b"BM\x00\x00 not an image", "is not a jpeg, png, gif or webp image"),
        ("data:text/plain;base64,aGk=", "'text/plain', not one of"),
        ("data:image/png,raw", "is not a base64 data URI"),
        ("data:image/png;base64,!!!!", "not valid base64"),
        (42, "is a int; pass a URL"),
    ],
)
async def test_bad_images_are_named(image: object, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message.replace("(", r"\(")):
        await image_to_uri(image)  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_text_file_is_rejected_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(InvalidRequestError, match="notes.txt"):
        await image_to_uri(path)


@pytest.mark.anyio
async def test_payload_for_qwen_image_edit() -> None:
    body = await build_payload(
        prompt="Add a funny hat",
        image="https://x/a.png",
        model="qwen-image-edit",
        params={"aspect_ratio": "1:1", "target_namespace": "org"},
    )
    assert body == {
        "model": "qwen-image-edit",
        "prompt": "Add a funny hat",
        "input_image": "https://x/a.png",
        "aspect_ratio": "1:1",
        "target_namespace": "org",
    }


def _checked(model: str, image: object = "https://x", **params: object) -> dict[str, object]:
    """A body checked against `model`'s offline schema, as `Client.submit` checks it."""
    body: dict[str, object] = {"model": model, "prompt": "p", "input_image": image, **params}
    Schema(model, FALLBACK[model]).check(body)
    return body


def test_bad_aspect_ratio_lists_the_allowed_values() -> None:
    with pytest.raises(InvalidRequestError) as info:
        _checked("qwen-image-edit", aspect_ratio="5:1")
    assert str(info.value) == (
        "aspect_ratio='5:1' is not one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3 "
        "(model 'qwen-image-edit')"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt": "  "}, "prompt='  ' must be a non-empty string"),
        ({"model": ""}, "model='' must be a model id"),
        ({"params": {"input_image": "x"}}, "passed as submit\\(image=...\\)"),
        ({"image": []}, "image=\\[\\] is empty"),
    ],
)
async def test_bad_parameters(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "prompt": "p",
        "image": "https://x",
        "model": "qwen-image-edit",
        "params": {},
    }
    args.update(kwargs)
    with pytest.raises(InvalidRequestError, match=message):
        await build_payload(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "params", "message"),
    [
        ("qwen-image-edit", {"image": ["https://a", "https://b"]}, "takes one image, got 2"),
        ("flux-kontext-dev", {"seed": "7"}, "seed='7' must be an integer"),
        ("flux-kontext-dev", {"guidance": True}, "must be a number"),
        ("flux-kontext-dev", {"num_inference_steps": 3}, "must be from 4 to 50"),
        ("flux-kontext-dev", {"output_format": "jpeg"}, "is not one of webp, jpg, png"),
        ("flux-kontext-dev", {"aspect_ratio": "5:1"}, "21:9, 3:2, 2:3, 4:5, 5:4, .*match_input"),
    ],
)
def test_bad_parameters_of_known_models(
    model: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequestError, match=message):
        _checked(model, **params)


@pytest.mark.parametrize(
    "model",
    ["qwen-image-edit-plus", "flux-2-dev", "flux-2-pro", "flux-2-flex", "bytedance-seedream-4"],
)
def test_multi_image_models_get_an_array(model: str) -> None:
    assert _checked(model)["input_image"] == ["https://x"]
    assert _checked(model, image=["https://x", "https://y"])["input_image"] == [
        "https://x",
        "https://y",
    ]


def test_one_image_in_a_list_is_one_image_for_single_image_models() -> None:
    assert _checked("flux-kontext-dev", image=["https://x"])["input_image"] == "https://x"
    _checked("flux-kontext-dev", aspect_ratio="match_input_image", output_format="jpg")


@pytest.mark.anyio
async def test_unknown_models_pass_params_through() -> None:
    body = await build_payload(
        prompt="p", image="https://x", model="someone-new", params={"strength": 0.3}
    )
    assert body["strength"] == 0.3

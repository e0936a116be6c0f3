"""Turning `submit(...)` arguments into a request body: images to URIs, parameters checked.

Everything here runs before a request is sent, so bad input costs nothing and loses nothing.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import anyio

from ._exceptions import InvalidRequestError

__all__ = ["ImageInput", "build_payload", "image_to_uri", "sniff_mime"]

ImageInput: TypeAlias = str | bytes | os.PathLike[str]

ASPECT_RATIOS: Final = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
OUTPUT_FORMATS: Final = ("png", "jpeg", "webp")
_MIMES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
_DATA_URI: Final = re.compile(r"data:(?P<mime>[\w/+.-]+)(?:;[\w=.-]+)*;base64,", re.ASCII)

# Parameters oxedit knows per model: name -> allowed values (a tuple), or a type. Models not
# listed here are passed through unchecked: the API validates them when the job runs.
_MODEL_PARAMS: Final[dict[str, dict[str, Any]]] = {
    "qwen-image-edit": {"aspect_ratio": ASPECT_RATIOS},
    "qwen-image-edit-plus": {"negative_prompt": str, "output_format": OUTPUT_FORMATS},
    "flux-kontext-dev": {
        "seed": int,
        "guidance": float,
        "num_inference_steps": int,
        "output_format": OUTPUT_FORMATS,
    },
}
# Models whose input_image is an array of URIs rather than one URI.
_MULTI_IMAGE_MODELS: Final = frozenset(
    {"qwen-image-edit-plus", "qwen-image-edit-2511", "flux-2", "nano-banana", "seedream"}
)
QUEUE_PARAMS: Final = frozenset(
    {"num_generations", "target_namespace", "target_repo", "target_directory"}
)
MAX_GENERATIONS: Final = 4


def sniff_mime(data: bytes) -> str | None:
    """The image MIME type from magic bytes, for the four formats the API takes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _bytes_to_uri(data: bytes, what: str) -> str:
    mime = sniff_mime(data)
    if mime is None:
        raise InvalidRequestError(
            f"{what} is not a jpeg, png, gif or webp image (starts with {data[:8]!r}); "
            "convert it to one of those formats"
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _check_data_uri(uri: str) -> str:
    match = _DATA_URI.match(uri)
    if match is None:
        raise InvalidRequestError(
            f"image={uri[:40]!r}... is not a base64 data URI; expected 'data:image/png;base64,...'"
        )
    if match["mime"] not in _MIMES:
        raise InvalidRequestError(
            f"image data URI has type {match['mime']!r}, not one of {', '.join(_MIMES)}"
        )
    try:
        head = base64.b64decode(uri[match.end() : match.end() + 64], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequestError(f"image data URI is not valid base64: {exc}") from exc
    if sniff_mime(head) not in (None, match["mime"]) and len(head) >= 12:
        raise InvalidRequestError(
            f"image data URI says {match['mime']!r} but holds {sniff_mime(head)!r}"
        )
    return uri


async def image_to_uri(image: ImageInput) -> str:
    """A URL or data URI for `image`: URL, data URI, path (str or PathLike) or raw bytes."""
    if isinstance(image, bytes | bytearray | memoryview):
        return _bytes_to_uri(bytes(image), "image bytes")
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            return image
        if image.startswith("data:"):
            return _check_data_uri(image)
    if not isinstance(image, str | os.PathLike):
        raise InvalidRequestError(
            f"image={image!r} is a {type(image).__name__}; pass a URL, a data URI, a file path "
            "or the image bytes"
        )
    path = Path(image)
    try:
        data = await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidRequestError(
            f"image={str(image)!r}: no such file; pass an existing jpeg/png/gif/webp file, "
            "an http(s) URL, a data URI or bytes"
        ) from None
    except OSError as exc:
        raise InvalidRequestError(f"image={str(image)!r} cannot be read: {exc}") from exc
    return _bytes_to_uri(data, f"image={str(image)!r}")


def _check_param(model: str, name: str, value: Any, allowed: Any) -> None:
    if isinstance(allowed, tuple):
        if value not in allowed:
            raise InvalidRequestError(
                f"{name}={value!r} is not one of {', '.join(allowed)} (model {model!r})"
            )
    elif allowed is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidRequestError(f"{name}={value!r} must be a number (model {model!r})")
    elif isinstance(value, bool) or not isinstance(value, allowed):
        raise InvalidRequestError(
            f"{name}={value!r} must be of type {allowed.__name__} (model {model!r})"
        )


def check_num_generations(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_GENERATIONS:
        raise InvalidRequestError(
            f"num_generations={value!r} must be an integer from 1 to {MAX_GENERATIONS}"
        )
    return value


async def build_payload(
    *, prompt: str, image: ImageInput | Sequence[ImageInput], model: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body for the queue or edit endpoint, after every check oxedit can make."""
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(f"model={model!r} must be a model id such as 'qwen-image-edit'")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError(f"prompt={prompt!r} must be a non-empty string")
    known = _MODEL_PARAMS.get(model, {})
    for name, value in params.items():
        if name in ("model", "prompt", "input_image"):
            raise InvalidRequestError(
                f"{name!r} is passed as submit({'image' if name == 'input_image' else name}=...)"
            )
        if name in known and value is not None:
            _check_param(model, name, value, known[name])
    if isinstance(image, list | tuple):
        uris: str | list[str] = [await image_to_uri(i) for i in image]
        if not uris:
            raise InvalidRequestError("image=[] is empty; pass at least one image")
    else:
        uris = await image_to_uri(image)  # type: ignore[arg-type]  # narrowed: not a sequence
    if model in _MULTI_IMAGE_MODELS and isinstance(uris, str):
        uris = [uris]
    elif model in _MODEL_PARAMS and model not in _MULTI_IMAGE_MODELS and isinstance(uris, list):
        if len(uris) != 1:
            raise InvalidRequestError(
                f"model {model!r} takes one image, got {len(uris)}; use e.g. "
                "'qwen-image-edit-plus' for several"
            )
        uris = uris[0]
    body = {"model": model, "prompt": prompt, "input_image": uris}
    body.update((k, v) for k, v in params.items() if v is not None)
    return body

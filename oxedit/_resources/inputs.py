"""Turning `submit(...)` arguments into a request body: images to URIs, the checks that need
no model schema (the model's own parameters are checked by `oxedit._resources.validate`).

Everything here runs before a request is sent, so bad input costs nothing and loses nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, TypeAlias

import anyio

from .. import _constants as C
from .._exceptions import InvalidRequestError

__all__ = [
    "ImageInput",
    "LargeInlineImageWarning",
    "Resolver",
    "build_payload",
    "hosted",
    "image_to_uri",
    "sniff_mime",
]

ImageInput: TypeAlias = str | bytes | os.PathLike[str]

_MIMES: Final = ("image/jpeg", "image/png", "image/gif", "image/webp")
# Tuples made once, not `bytes | bytearray` nor a tuple written in the call: either is built
# anew at each check (an object for the garbage collector, several per submit).
_BYTES: Final = (bytes, bytearray, memoryview)
_SEQUENCES: Final = (list, tuple)
_PATHS: Final = (str, os.PathLike)
_DATA_URI: Final = re.compile(r"data:(?P<mime>[\w/+.-]+)(?:;[\w=.-]+)*;base64,", re.ASCII)

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


def _mime_of(data: bytes, what: str) -> str:
    mime = sniff_mime(data)
    if mime is None:
        raise InvalidRequestError(
            f"{what} is not a jpeg, png, gif or webp image (starts with {data[:8]!r}); "
            "convert it to one of those formats"
        )
    return mime


def _bytes_to_uri(data: bytes, what: str) -> str:
    """`data` as a data URI; warns when it is large (see `image_to_uri`)."""
    _warn_if_large(len(data))
    return f"data:{_mime_of(data, what)};base64,{base64.b64encode(data).decode('ascii')}"


def _what(image: ImageInput) -> str:
    if isinstance(image, _BYTES):
        return "image bytes"
    if isinstance(image, str) and image.startswith("data:"):
        return "image data URI"
    return f"image={str(image)!r}"


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


class LargeInlineImageWarning(UserWarning):
    """An image over `LARGE_INLINE_IMAGE_BYTES` goes inline, as a data URI, in the request."""


# One text, one place: the warnings registry then shows it once per process ("once per run").
_LARGE_INLINE = (
    "an image input over 1 MB is sent inline as a data URI, and the API echoes it in every "
    "queue row it returns, so each reconciliation downloads it again; pass "
    "upload_repo='namespace/repo' (or set OXEN_UPLOAD_REPO) to upload each image once and "
    "send its URL instead"
)


def _warn_if_large(size: int) -> None:
    """Warn when an image sent inline is of more than `LARGE_INLINE_IMAGE_BYTES`."""
    if size > C.LARGE_INLINE_IMAGE_BYTES:
        warnings.warn(_LARGE_INLINE, LargeInlineImageWarning, stacklevel=1)


async def image_to_uri(image: ImageInput) -> str:
    """A URL or data URI for `image`: URL, data URI, path (str or PathLike) or raw bytes.

    A data URI of more than `LARGE_INLINE_IMAGE_BYTES` of image warns (`LargeInlineImageWarning`,
    once per process) that `upload_repo` is the way to send it.
    """
    loaded = await _load(image)
    if isinstance(loaded, bytes):
        return _bytes_to_uri(loaded, _what(image))
    if loaded.startswith("data:"):
        _warn_if_large((len(loaded) - loaded.find(",") - 1) * 3 // 4)  # its base64, decoded
    return loaded


class Resolver(Protocol):
    """What turns local image bytes into a URL (`oxedit._resources.upload.Uploader`)."""

    async def url_for(self, data: bytes) -> str: ...


async def hosted(
    image: ImageInput | Sequence[ImageInput], resolver: Resolver
) -> ImageInput | list[ImageInput]:
    """`image` (one, or a list) with every local input, a path, bytes or a data URI, replaced
    by the URL `resolver` gives its bytes; http(s) URLs stay as they are. Call it before
    `build_payload`, which then sends URLs only.

    Raises:
        InvalidRequestError: an input is not a readable jpeg, png, gif or webp image.
    """
    if not isinstance(image, _SEQUENCES):
        return await _hosted_one(image, resolver)  # type: ignore[arg-type]  # not a sequence
    try:
        async with asyncio.TaskGroup() as group:  # a failure cancels the other uploads
            tasks = [group.create_task(_hosted_one(one, resolver)) for one in image]
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None  # the first failure, as for one image
    return [task.result() for task in tasks]


async def _hosted_one(image: ImageInput, resolver: Resolver) -> ImageInput:
    loaded = await _load(image)
    if isinstance(loaded, str) and loaded.startswith("data:"):
        try:
            loaded = base64.b64decode(loaded[loaded.index(",") + 1 :], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidRequestError(f"image data URI is not valid base64: {exc}") from None
    if isinstance(loaded, str):
        return loaded
    _mime_of(loaded, _what(image))
    # No reference kept here while the upload runs: `url_for` drops its own once it is shared.
    upload = resolver.url_for(loaded)
    del loaded
    return await upload


async def _load(image: ImageInput) -> str | bytes:
    """An http(s) URL or a data URI as given (the data URI checked), or the bytes of a path
    or of raw bytes."""
    if isinstance(image, _BYTES):
        return bytes(image)
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            return image
        if image.startswith("data:"):
            return _check_data_uri(image)
    if not isinstance(image, _PATHS):
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
    return data


def drop_single_generation(params: dict[str, Any]) -> None:
    """Remove `num_generations` from `submit()`'s params: it must be 1 (one job) if given."""
    if params.get("num_generations", 1) != 1:
        raise InvalidRequestError(
            f"num_generations={params['num_generations']!r}: submit() makes one job; use "
            "submit_generations(num_generations=...) to get one job per generation"
        )
    params.pop("num_generations", None)


def check_num_generations(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_GENERATIONS:
        raise InvalidRequestError(
            f"num_generations={value!r} must be an integer from 1 to {MAX_GENERATIONS}"
        )
    return value


async def build_payload(
    *, prompt: str, image: ImageInput | Sequence[ImageInput], model: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The JSON body for the queue or edit endpoint, after the checks that need no schema.

    `input_image` is one URI for one image, a list for a list; `Schemas.check` then shapes it
    as the model takes it and checks the parameters against the model's schema.
    """
    if not isinstance(model, str) or not model:
        raise InvalidRequestError(f"model={model!r} must be a model id such as 'qwen-image-edit'")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError(f"prompt={prompt!r} must be a non-empty string")
    for name in params:
        if name in ("model", "prompt", "input_image"):
            raise InvalidRequestError(
                f"{name!r} is passed as submit({'image' if name == 'input_image' else name}=...)"
            )
    uris: str | list[str]
    if type(image) is bytes:  # the bulk of a burst of submits: no coroutine to load them
        uris = _bytes_to_uri(image, _what(image))
    elif isinstance(image, _SEQUENCES):
        uris = [await image_to_uri(i) for i in image]
        if not uris:
            raise InvalidRequestError("image=[] is empty; pass at least one image")
    else:
        uris = await image_to_uri(image)  # type: ignore[arg-type]  # narrowed: not a sequence
    body = {"model": model, "prompt": prompt, "input_image": uris}
    for name, value in params.items():
        if value is not None:
            body[name] = value
    return body

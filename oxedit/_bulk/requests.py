"""What a batch is made of: `EditRequest` in, `BulkResult` out."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, cast, get_args
from urllib.parse import urlsplit, urlunsplit

import msgspec

from .. import _constants as C
from .._exceptions import InvalidRequestError, OxeditError

__all__ = [
    "BulkItem",
    "BulkResult",
    "BulkStatus",
    "EditRequest",
    "bulk_status",
    "canonical",
    "check_name",
    "coerce",
    "default_name",
    "file_digest",
    "identity",
    "is_local",
]


class EditRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One edit of a batch.

    Attributes:
        image: A local path, an http(s) URL or a data URI.
        prompt: The edit instruction.
        model: The model id.
        params: The model's parameters, e.g. `{"aspect_ratio": "1:1"}`.
        name: The output file's name without extension; defaults to the image's stem.
    """

    image: str
    prompt: str
    model: str = C.DEFAULT_MODEL
    params: dict[str, Any] = {}
    name: str | None = None

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> EditRequest:
        """From a manifest row: `image`, `prompt`, optional `model`/`name`, the rest params."""
        image = row.get("image")
        if not isinstance(image, str | os.PathLike) or not str(image):
            raise InvalidRequestError("has no 'image' (a path or URL)")
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidRequestError("has no 'prompt' (give one in the row, or --prompt)")
        model = row.get("model") or C.DEFAULT_MODEL
        if not isinstance(model, str):
            raise InvalidRequestError(f"model={model!r} is not a model id")
        params = {
            k: v
            for k, v in row.items()
            if k not in ("image", "prompt", "model", "name") and v not in (None, "")
        }
        name = row.get("name")
        return cls(
            image=str(image),
            prompt=prompt,
            model=model,
            params=params,
            name=check_name(str(name)) if name else None,
        )

    def encoded(self) -> bytes:
        return msgspec.json.encode(self, order="sorted")


BulkStatus = Literal["succeeded", "failed", "cancelled", "error", "unknown"]


_BULK_STATUSES: frozenset[str] = frozenset(get_args(BulkStatus))


def bulk_status(value: str) -> BulkStatus:
    """`value` (a journal's or a generation's state) as a `BulkStatus`; a state no version of
    oxedit writes is a bug, said so."""
    if value not in _BULK_STATUSES:
        raise ValueError(f"not a bulk item status: {value!r}")
    return cast(BulkStatus, value)


@dataclass(frozen=True, slots=True)
class BulkResult:
    """The outcome of one item of a batch.

    Attributes:
        index: The item's position in the input.
        request: The request.
        status: "succeeded", "failed", "cancelled" (the generation's end), "error" (never
            enqueued, or its result could not be fetched or saved: see `error`), or "unknown"
            (it may exist and its outcome is not known yet: a re-run with the same journal
            follows it and sends nothing again).
        generation_id: The generation, when one was enqueued (the first of several).
        error: What went wrong, for anything but "succeeded".
        output: Where the image was saved, when an output folder was given (the first).
        resumed: True when the item was skipped because an earlier run (same journal) already
            finished it; items that an earlier run sent and this run followed are not resumed.
        estimated_cost: What it was expected to cost when it was sent, in USD (None when it
            was not sent by this batch, or its pricing is unknown).
        cost: What it cost, from the history endpoint (None when that did not say).
        generation_ids: Every generation of the item: several for `num_generations` 2-4.
        outputs: Every saved image (`NAME-1.png`, `NAME-2.png`, ... for several).
    """

    index: int
    request: EditRequest
    status: BulkStatus
    generation_id: str | None = None
    error: str | None = None
    output: Path | None = None
    resumed: bool = False
    estimated_cost: Decimal | None = None
    cost: Decimal | None = None
    generation_ids: tuple[str, ...] = ()
    outputs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        # One generation (the usual case): the tuples mirror the single fields.
        if not self.generation_ids and self.generation_id is not None:
            object.__setattr__(self, "generation_ids", (self.generation_id,))
        if not self.outputs and self.output is not None:
            object.__setattr__(self, "outputs", (self.output,))

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


# What `Client.map` takes: requests, manifest-like mappings, or an error standing for a row
# that could not even be parsed (reported as that item's result).
BulkItem = EditRequest | Mapping[str, Any] | OxeditError


def check_name(name: str) -> str:
    """`name` if it is a plain file name (no folder part), which keeps outputs inside the
    output folder; else an `InvalidRequestError`."""
    bad = (
        not name
        or name in (".", "..")
        or any(sep in name for sep in ("/", "\\", "\0"))
        or Path(name).is_absolute()
    )
    if bad:
        raise InvalidRequestError(
            f"name={name!r} is not a plain file name: give a file name without folders, "
            "'..' or an absolute path (the output is always written inside the output folder)"
        )
    return name


def default_name(image: str) -> str:
    if image.startswith("data:"):
        return "image"
    path = urlsplit(image).path if image.startswith(("http://", "https://")) else image
    return Path(path).stem or "image"


def is_local(image: str) -> bool:
    """Whether `image` names a local file (not a URL or a data URI)."""
    return not image.startswith(("http://", "https://", "data:"))


def canonical(request: EditRequest) -> EditRequest:
    """`request` with a local image as its absolute, resolved path: what a journal stores, so
    that a later run from another folder can still read it."""
    if not request.image or not is_local(request.image):
        return request
    return msgspec.structs.replace(request, image=os.path.realpath(request.image))


def _normal_url(url: str) -> str:
    """A URL as the same resource is always written: scheme and host in lower case, no
    default port, no fragment (the server never sees it)."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:  # a bad port...: the request fails later; compare it as written
        return url
    if port is not None and (parts.scheme.lower(), port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    if parts.username or parts.password:
        host = f"{parts.netloc.rpartition('@')[0]}@{host}"
    return urlunsplit((parts.scheme.lower(), host, parts.path or "/", parts.query, ""))


def file_digest(path: str) -> str:
    """The SHA-256 of a file's content, in hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def identity(request: EditRequest, digest: Callable[[str], str] = file_digest) -> bytes:
    """What makes an item of a batch the same item in every run, whichever folder it runs
    from and however its image path is spelled: the image's content (a local file's SHA-256,
    a URL as normalised, a data URI itself), the prompt, model, parameters and output name.
    Reads a local image (`digest(path)`); a file that cannot be read is identified by its
    resolved path (the item fails before anything is sent anyway)."""
    image = request.image
    if image.startswith("data:"):
        source = "data:" + hashlib.sha256(image.encode("utf-8", "surrogatepass")).hexdigest()
    elif not is_local(image):
        source = _normal_url(image)
    else:
        path = os.path.realpath(image) if image else image
        try:
            source = "sha256:" + digest(path)
        except (OSError, ValueError):
            source = "path:" + path
    name = request.name or (default_name(image) if image else None)
    return msgspec.json.encode(
        {
            "image": source,
            "prompt": request.prompt,
            "model": request.model,
            "params": request.params,
            "name": name,
        },
        order="sorted",
    )


def coerce(item: Any) -> EditRequest | OxeditError:
    """A batch item as a request, or the error that stands for it (reported as its result)."""
    if isinstance(item, EditRequest | OxeditError):
        return item
    if isinstance(item, Mapping):
        try:
            return EditRequest.from_mapping(item)
        except InvalidRequestError as exc:
            return InvalidRequestError(f"row {dict(item)!r} {exc}")
    return InvalidRequestError(
        f"{item!r} is not an edit request; pass oxedit.EditRequest or a mapping with "
        "'image' and 'prompt'"
    )

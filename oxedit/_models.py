"""Wire shapes (msgspec Structs) and the public `Generation`.

The client ignores unknown fields everywhere (the API evolves) and accepts both spellings the
docs use: `model` / `model_name`, `url` / `result_url`, `request_schema` / `json_request_schema`.
Decoders are built once, here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypeVar

import msgspec

from ._display import show_image
from ._exceptions import ClientStateError

__all__ = [
    "TERMINAL_STATUSES",
    "CompletionEvent",
    "CompletionEventId",
    "EditResult",
    "EnqueueResponse",
    "Generation",
    "GenerationRow",
    "Model",
    "QueueList",
    "ResultReader",
    "Status",
    "generation_of_event",
    "generation_of_row",
]

Status = Literal["queued", "processing", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "cancelled"})
_B = TypeVar("_B", "Generation", "EditResult")


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the wire shapes: immutable, keyword-only, unknown fields ignored.

    The shapes decoded once or more per job (`gc=False`: an enqueue answer, a completion
    event, a queue row) hold only strings, numbers and lists of such shapes, so they can never
    be part of a reference cycle: untracked, they do not count toward the garbage collector's
    next collection, of which 50,000 jobs cause enough already.
    """


class EnqueuedGeneration(_Wire, frozen=True, kw_only=True, gc=False):
    generation_id: str
    status: str = "queued"


class EnqueueResponse(_Wire, frozen=True, kw_only=True, gc=False):
    generations: list[EnqueuedGeneration]


class GenerationRow(_Wire, frozen=True, kw_only=True, gc=False):
    """A row of `GET /api/ai/queue[/{id}]`."""

    generation_id: str
    status: str
    model_name: str | None = None
    model: str | None = None
    prompt: str | None = None
    media_type: str | None = None
    result_url: str | None = None
    url: str | None = None
    error_message: str | None = None
    error: str | None = None
    enqueued_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    retried_from_id: str | None = None  # [spec v0.257.0] kill & retry


class QueueList(_Wire, frozen=True, kw_only=True):
    count: int = 0
    generations: list[GenerationRow]


class RawQueueList(_Wire, frozen=True, kw_only=True):
    """The list with each row as a plain dict (its echoed request parameters included)."""

    generations: list[Any]


class CompletionEvent(_Wire, frozen=True, kw_only=True, gc=False):
    """The data of a `media_generation_completed` event."""

    generation_id: str
    status: str
    media_type: str | None = None
    model: str | None = None
    url: str | None = None
    error: str | None = None
    completed_at: float | None = None  # not documented for events; used when present


class CompletionEventId(_Wire, frozen=True, kw_only=True, gc=False):
    """Only the id of a completion event: all that is decoded of another process's event
    (msgspec skips the rest without building it)."""

    generation_id: str


class ImageResult(_Wire, frozen=True, kw_only=True):
    url: str | None = None
    b64_json: str | None = None


class Model(_Wire, frozen=True, kw_only=True):
    """A model of `GET /api/ai/models[/{id}]`."""

    id: str
    display_name: str | None = None
    capabilities: dict[str, Any] = {}
    pricing: dict[str, Any] = {}
    request_schema: dict[str, Any] | None = None
    json_request_schema: dict[str, Any] | None = None

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the model's parameters, under whichever name the API used."""
        return self.request_schema or self.json_request_schema or {}


class ModelList(_Wire, frozen=True, kw_only=True):
    data: list[Model] = []


class ResultReader(Protocol):
    """What downloads a result: the client that produced it (`Client.read` / `Client.save`)."""

    async def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes: ...

    async def save(
        self, result: Generation | EditResult, path: str | os.PathLike[str], *, index: int = 0
    ) -> Path: ...


class _Bound:
    """The reader of a result, held in a slot outside the fields: never encoded or compared."""

    __slots__ = ("_reader",)

    def _owner(self) -> ResultReader:
        reader: ResultReader | None = getattr(self, "_reader", None)
        if reader is None:
            raise ClientStateError(
                f"this {type(self).__name__} was not made by an oxedit.Client; call "
                "client.read(result) or client.save(result, path) instead"
            )
        return reader


def _bundle(result: Generation | EditResult) -> dict[str, Any] | None:
    """Jupyter's MIME bundle of a result: its image inline when its reader can fetch it without
    the notebook's own event loop (`SyncClient`'s results); None leaves the text repr (an async
    `Client`'s results: `await gen.show()` does not block the loop)."""
    bundle = getattr(getattr(result, "_reader", None), "display_bundle", None)
    return bundle(result) if bundle is not None else None


def bind(result: _B, reader: ResultReader | None) -> _B:
    """Attach `reader` to a result (`object.__setattr__`: the dataclass is frozen)."""
    _set(result, "_reader", reader)
    return result


def rebound(result: _B, reader: ResultReader) -> _B:
    """A copy of `result` read by `reader` (the original keeps its own)."""
    return bind(replace(result), reader)


_set = object.__setattr__
_new = object.__new__


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation(_Bound):
    """A generation as oxedit hands it back.

    `await job` returns one with status "succeeded" and its `url`; `client.get(id)` returns one
    in any status. Fields the source did not carry are None: the documented event has no
    timestamps, so a generation resolved from one has `enqueued_at` etc. unset
    (`client.get(id)` has them). `retried_from` is set when the generation a job enqueued was
    cancelled and re-created as this one (the API's kill & retry): `id` is then the new row's.

    Example:
        ```python
        gen = await job
        await gen.save("out.png")
        ```
    """

    id: str
    status: Status
    url: str | None = None
    error: str | None = None
    model: str | None = None
    prompt: str | None = None
    enqueued_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    retried_from: str | None = None


    def retried(self, original: str) -> Generation:
        """This generation, as the successor of `original` (kill & retry)."""
        copy = replace(self, retried_from=original)
        return bind(copy, getattr(self, "_reader", None))

    async def read(self) -> bytes:
        """Download the result image (see `Client.read`)."""
        return await self._owner().read(self)

    async def save(self, path: str | os.PathLike[str]) -> Path:
        """Download the result image to `path`, atomically (see `Client.save`)."""
        return await self._owner().save(self, path)

    async def show(self) -> None:
        """Download the result image and show it: inline in a notebook (`await gen.show()`),
        else in the system's image viewer."""
        show_image(await self.read(), f"generation {self.id}")

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> Any:
        return _bundle(self)


def generation_of_row(row: GenerationRow, reader: ResultReader | None = None) -> Generation:
    """The `Generation` a queue row describes (the wire shape stays private)."""
    return _generation(
        reader,
        row.generation_id,
        row.status,
        row.result_url or row.url,
        row.error_message or row.error,
        row.model_name or row.model,
        row.prompt,
        row.enqueued_at,
        row.started_at,
        row.completed_at,
    )


def generation_of_event(event: CompletionEvent, reader: ResultReader | None = None) -> Generation:
    """The `Generation` a completion event describes (no timestamps: the event has none)."""
    return _generation(
        reader,
        event.generation_id,
        event.status,
        event.url,
        event.error,
        event.model,
        None,
        None,
        None,
        event.completed_at,
    )


def _generation(
    reader: ResultReader | None,
    generation_id: str,
    status: str,
    url: str | None,
    error: str | None,
    model: str | None,
    prompt: str | None,
    enqueued_at: float | None,
    started_at: float | None,
    completed_at: float | None,
) -> Generation:
    # Built slot by slot through the slots' own setters, not the frozen dataclass's keyword
    # `__init__` (three times the cost) nor `object.__setattr__` (half again), paid once for
    # every job that settles.
    gen = _new(Generation)
    _ID(gen, generation_id)
    _STATUS(gen, status)
    _URL(gen, url)
    _ERROR(gen, error)
    _MODEL(gen, model)
    _PROMPT(gen, prompt)
    _ENQUEUED_AT(gen, enqueued_at)
    _STARTED_AT(gen, started_at)
    _COMPLETED_AT(gen, completed_at)
    _RETRIED_FROM(gen, None)
    _READER(gen, reader)
    return gen


# The setters of `Generation`'s slots, each by its name.
_SLOTS = Generation.__dict__
_ID = _SLOTS["id"].__set__
_STATUS = _SLOTS["status"].__set__
_URL = _SLOTS["url"].__set__
_ERROR = _SLOTS["error"].__set__
_MODEL = _SLOTS["model"].__set__
_PROMPT = _SLOTS["prompt"].__set__
_ENQUEUED_AT = _SLOTS["enqueued_at"].__set__
_STARTED_AT = _SLOTS["started_at"].__set__
_COMPLETED_AT = _SLOTS["completed_at"].__set__
_RETRIED_FROM = _SLOTS["retried_from"].__set__
_READER = _Bound.__dict__["_reader"].__set__


enqueue_decoder: Final = msgspec.json.Decoder(EnqueueResponse)
row_decoder: Final = msgspec.json.Decoder(GenerationRow)
raw_rows_decoder: Final = msgspec.json.Decoder(dict[str, Any])
queue_list_decoder: Final = msgspec.json.Decoder(QueueList)
raw_list_decoder: Final = msgspec.json.Decoder(RawQueueList)
event_decoder: Final = msgspec.json.Decoder(CompletionEvent)
event_id_decoder: Final = msgspec.json.Decoder(CompletionEventId)
model_decoder: Final = msgspec.json.Decoder(Model)
model_list_decoder: Final = msgspec.json.Decoder(ModelList)
json_encoder: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True, kw_only=True)
class EditResult(_Bound):
    """The answer of the synchronous edit endpoint (`Client.edit`).

    Example:
        ```python
        result = await client.edit(prompt="Mirror it", image="cat.png")
        await result.save("mirrored.png")
        ```
    """

    model: str | None = None
    created: float | None = None
    images: list[ImageResult] = field(default_factory=list)
    image_url: str | None = None  # older example pages read this instead of images[0].url

    def __post_init__(self) -> None:
        if not self.images and self.image_url:
            _set(self, "images", [ImageResult(url=self.image_url)])

    @property
    def url(self) -> str | None:
        """The first image's URL (None when the images came back as base64)."""
        return self.images[0].url if self.images else None

    async def read(self, index: int = 0) -> bytes:
        """The bytes of image `index`, decoded locally or downloaded."""
        return await self._owner().read(self, index=index)

    async def save(self, path: str | os.PathLike[str], index: int = 0) -> Path:
        """Write image `index` to `path`, atomically."""
        return await self._owner().save(self, path, index=index)

    async def show(self, index: int = 0) -> None:
        """Show image `index`: inline in a notebook, else in the system's image viewer."""
        show_image(await self.read(index), f"edit result ({self.model}) image {index}")

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> Any:
        return _bundle(self)


edit_decoder: Final = msgspec.json.Decoder(EditResult)

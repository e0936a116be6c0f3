"""Wire shapes (msgspec Structs) and the public `Generation`.

The client ignores unknown fields everywhere (the API evolves) and accepts both spellings the
docs use: `model` / `model_name`, `url` / `result_url`, `request_schema` / `json_request_schema`.
Decoders are built once, here.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

__all__ = [
    "TERMINAL_STATUSES",
    "CompletionEvent",
    "EditResult",
    "EnqueueResponse",
    "Generation",
    "GenerationRow",
    "Model",
    "QueueList",
    "Status",
]

Status = Literal["queued", "processing", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "cancelled"})


class _Wire(msgspec.Struct, frozen=True, kw_only=True):
    """Base of the wire shapes: immutable, keyword-only, unknown fields ignored."""


class EnqueuedGeneration(_Wire, frozen=True, kw_only=True):
    generation_id: str
    status: str = "queued"


class EnqueueResponse(_Wire, frozen=True, kw_only=True):
    generations: list[EnqueuedGeneration]


class GenerationRow(_Wire, frozen=True, kw_only=True):
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


class CompletionEvent(_Wire, frozen=True, kw_only=True):
    """The data of a `media_generation_completed` event."""

    generation_id: str
    status: str
    media_type: str | None = None
    model: str | None = None
    url: str | None = None
    error: str | None = None
    completed_at: float | None = None  # not documented for events; used when present


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


class Generation(msgspec.Struct, frozen=True, kw_only=True, dict=True):
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
    status: str
    url: str | None = None
    error: str | None = None
    model: str | None = None
    prompt: str | None = None
    enqueued_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    retried_from: str | None = None

    @classmethod
    def from_row(cls, row: GenerationRow) -> Generation:
        return cls(
            id=row.generation_id,
            status=row.status,
            url=row.result_url or row.url,
            error=row.error_message or row.error,
            model=row.model_name or row.model,
            prompt=row.prompt,
            enqueued_at=row.enqueued_at,
            started_at=row.started_at,
            completed_at=row.completed_at,
        )

    @classmethod
    def from_event(cls, event: CompletionEvent) -> Generation:
        return cls(
            id=event.generation_id,
            status=event.status,
            url=event.url,
            error=event.error,
            model=event.model,
            completed_at=event.completed_at,
        )

    async def read(self) -> bytes:
        """Download the result image (see `Client.read`)."""
        from ._client import owner_of

        return await owner_of(self).read(self)

    async def save(self, path: Any) -> Any:
        """Download the result image to `path`, atomically (see `Client.save`)."""
        from ._client import owner_of

        return await owner_of(self).save(self, path)


enqueue_decoder: Final = msgspec.json.Decoder(EnqueueResponse)
row_decoder: Final = msgspec.json.Decoder(GenerationRow)
raw_rows_decoder: Final = msgspec.json.Decoder(dict[str, Any])
queue_list_decoder: Final = msgspec.json.Decoder(QueueList)
raw_list_decoder: Final = msgspec.json.Decoder(RawQueueList)
event_decoder: Final = msgspec.json.Decoder(CompletionEvent)
model_decoder: Final = msgspec.json.Decoder(Model)
model_list_decoder: Final = msgspec.json.Decoder(ModelList)
json_encoder: Final = msgspec.json.Encoder()


class EditResult(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """The answer of the synchronous edit endpoint (`Client.edit`).

    Example:
        ```python
        result = await client.edit(prompt="Mirror it", image="cat.png")
        await result.save("mirrored.png")
        ```
    """

    model: str | None = None
    created: float | None = None
    images: list[ImageResult] = []
    image_url: str | None = None  # older example pages read this instead of images[0].url

    def __post_init__(self) -> None:
        if not self.images and self.image_url:
            msgspec.structs.force_setattr(self, "images", [ImageResult(url=self.image_url)])

    @property
    def url(self) -> str | None:
        """The first image's URL (None when the images came back as base64)."""
        return self.images[0].url if self.images else None

    async def read(self, index: int = 0) -> bytes:
        """The bytes of image `index`, decoded locally or downloaded."""
        from ._client import owner_of

        return await owner_of(self).read(self, index=index)

    async def save(self, path: Any, index: int = 0) -> Any:
        """Write image `index` to `path`, atomically."""
        from ._client import owner_of

        return await owner_of(self).save(self, path, index=index)


edit_decoder: Final = msgspec.json.Decoder(EditResult)

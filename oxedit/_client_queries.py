"""The `Client` methods that read rows and results: `get`, `list`, `models`, `model`,
`cancel`, the blocking `edit`, and `read`/`save`.

A mixin only so that `_client.py` stays a thin facade; it holds no state and relies on the
`Client` it is mixed into for its `_tracker`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _constants as C
from ._exceptions import InvalidRequestError, OxeditError
from ._models import EditResult, Generation, Model, bind
from ._resources.edit import blocking_edit
from ._resources.inputs import ImageInput, build_payload

if TYPE_CHECKING:
    from ._engine.tracker import Tracker

__all__ = ["QueryMethods"]

_list = list  # `list` below shadows the builtin inside the class body


class QueryMethods:
    """Rows, models, cancellation, the blocking edit and results, for `Client`."""

    if TYPE_CHECKING:  # provided by `Client`
        _tracker: Tracker

    async def cancel(self, generation_id: str) -> Generation:
        """Cancel a generation by id; returns its row afterwards (see `Job.cancel`)."""
        outcome = await self._tracker.cancel(generation_id)
        if isinstance(outcome, OxeditError):
            raise outcome
        return outcome

    # -- queries -----------------------------------------------------------------------------

    async def get(self, generation_id: str) -> Generation:
        """The generation's row as the API has it now (`GET /api/ai/queue/{id}`)."""
        return await self._tracker.get(generation_id)

    async def list(
        self, *, status: str | None = None, model: str | None = None, **filters: str
    ) -> _list[Generation]:
        """Rows of `GET /api/ai/queue`: the active ones by default, or filtered by `status`,
        `model`, `media_type`, `namespace`, `repo`, `folder`."""
        return await self._tracker.list(status, model, **filters)

    async def models(self) -> _list[Model]:
        """Every model of `GET /api/ai/models`."""
        self._tracker.require_open()
        return await self._tracker.api.models()

    async def model(self, model_id: str) -> Model:
        """One model with its request schema; `NotFoundError` for an unknown id."""
        return await self._tracker.model(model_id)

    # -- synchronous edit --------------------------------------------------------------------

    async def edit(
        self,
        *,
        prompt: str,
        image: ImageInput | Sequence[ImageInput],
        model: str = C.DEFAULT_MODEL,
        response_format: str = "url",
        **params: Any,
    ) -> EditResult:
        """One blocking edit (`POST /api/ai/images/edit`): no queue, no event stream.

        Refusals (429/503) are retried; a lost response is not (it may have been billed) and
        raises `AmbiguousRequestError`.
        """
        self._tracker.require_open()
        if response_format not in ("url", "b64_json"):
            raise InvalidRequestError(f"response_format={response_format!r} is not url/b64_json")
        image = await self._tracker.hosted(image)
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        await self._tracker.schemas.check(payload)
        payload["response_format"] = response_format
        return bind(await blocking_edit(self._tracker.api, payload), self._tracker)

    # -- results -----------------------------------------------------------------------------

    async def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes:
        """Download a result's image (image `index` of an `EditResult`).

        Presigned URLs expire: on 403/404/410 from the file host, the generation's row is read
        again for a fresh URL, once. The API key is sent only to the API's own host.
        """
        return await self._tracker.read(result, index=index)

    async def save(
        self, result: Generation | EditResult, path: str | os.PathLike[str], *, index: int = 0
    ) -> Path:
        """Download a result and write it to `path` atomically (a crash leaves no partial file).
        Parent folders are created. Returns the path."""
        return await self._tracker.save(result, path, index=index)

"""`Client`: enqueue edits, await them over one shared event stream, fetch the results.

A thin facade: the job lifecycle is `_tracker.Tracker`'s, the HTTP is `_api`/`_transport`'s.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import _constants as C
from ._api import Api, ClientStats
from ._bulk import BulkRun
from ._client_cost import CostMethods
from ._config import Limits, ReconcilePolicy, Timeouts, resolve_api_key, resolve_base_url
from ._cost import to_amount
from ._edit import blocking_edit
from ._exceptions import InvalidRequestError, OxeditError
from ._inputs import ImageInput, build_payload, check_num_generations, drop_single_generation
from ._job import AsCompleted, Job
from ._models import EditResult, Generation, Model, bind
from ._requests import BulkItem
from ._retry import RetryPolicy
from ._tracker import Tracker
from ._transport import Transport

__all__ = ["Client"]

_list = list  # `Client.list` shadows the builtin inside the class body


class Client(CostMethods):
    """The async client. Use it as an async context manager.

    Args:
        api_key: Defaults to `OXEN_API_KEY`, then the `oxen` CLI's `auth_config.toml`.
        base_url: Defaults to `OXEN_BASE_URL`, then https://hub.oxen.ai.
        timeouts, limits, retry, reconcile: Settings objects; see their docs.

    Example:
        ```python
        async with oxedit.Client() as client:
            job = await client.submit(prompt="Add a funny hat", image="cat.png")
            gen = await job
            await gen.save("cat-hat.png")
        ```
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
        retry: RetryPolicy | None = None,
        reconcile: ReconcilePolicy | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        api_key = resolve_api_key(api_key, self.base_url)
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.reconcile_policy = reconcile or ReconcilePolicy()
        self.stats = ClientStats()
        transport = Transport(
            base_url=self.base_url, api_key=api_key, timeouts=self.timeouts, limits=self.limits
        )
        api = Api(transport, self.retry, self.stats)
        self._tracker = Tracker(transport, api, self.timeouts, self.limits, self.reconcile_policy)

    def __repr__(self) -> str:
        return f"<oxedit.Client {self.base_url} {self._tracker.state.value}>"

    async def __aenter__(self) -> Self:
        await self._tracker.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the event stream and every connection. Pending jobs end with an error.

        Calls racing it end with `ClientStateError`: those not sent yet at once; an enqueue
        already sent gets its answer first (at most `Timeouts.total`), and the ids it created
        are on the error (`generation_ids`). Every session is closed, whatever happens.
        """
        await self._tracker.close()

    # -- enqueue -----------------------------------------------------------------------------

    async def submit(
        self,
        *,
        prompt: str,
        image: ImageInput | Sequence[ImageInput],
        model: str = C.DEFAULT_MODEL,
        **params: Any,
    ) -> Job:
        """Enqueue one edit; returns as soon as it is enqueued.

        Args:
            prompt: The edit instruction.
            image: A URL, a data URI, a local file (path or str), or the image bytes; a list for
                models that take several images. Local images are sent as data URIs.
            model: The model id.
            **params: The model's parameters (e.g. `aspect_ratio="1:1"`) and queue parameters
                (`target_namespace`), checked against the model's schema before sending.
        """
        drop_single_generation(params)
        self._tracker.require_open()
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        return await self._tracker.submit(payload)

    async def submit_generations(
        self,
        *,
        prompt: str,
        image: ImageInput | Sequence[ImageInput],
        num_generations: int,
        model: str = C.DEFAULT_MODEL,
        **params: Any,
    ) -> list[Job]:
        """Enqueue one request for `num_generations` (1-4) generations; one job for each."""
        n = check_num_generations(num_generations)
        if n > 1:
            params["num_generations"] = n
        self._tracker.require_open()
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        return await self._tracker.enqueue(payload, n)

    # -- jobs --------------------------------------------------------------------------------

    def job(self, generation_id: str) -> Job:
        """A job for a generation enqueued elsewhere (another process, an earlier run).

        It is reconciled through the queue endpoints at once, then followed like any other.
        """
        return self._tracker.follow(generation_id)

    def as_completed(self, jobs: Iterable[Job]) -> AsCompleted:
        """Iterate over `jobs` in the order they finish (each yielded job is done).

        Example: `async for job in client.as_completed(jobs): gen = await job` (in a `try`
        for `oxedit.GenerationError`).
        """
        return AsCompleted(jobs)

    def map(
        self,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        concurrency: int = C.DEFAULT_BULK_CONCURRENCY,
        journal: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        retry_failed: bool = False,
        max_cost: Decimal | float | str | None = None,
        unknown_cost: Decimal | float | str | None = None,
    ) -> BulkRun:
        """Run many edits, at most `concurrency` in flight, as a `BulkRun` (its docstring has
        the arguments): `async with client.map(reqs, journal="j.sqlite") as run: async for
        result in run: ...`. One bad item gives an "error" result; it never stops the batch."""
        self._tracker.require_open()
        return BulkRun(
            self._tracker, requests, concurrency=concurrency, journal=journal,
            output_dir=output_dir, retry_failed=retry_failed,
            max_cost=to_amount(max_cost, "max_cost"),
            unknown_cost=to_amount(unknown_cost, "unknown_cost"),
        )  # fmt: skip

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

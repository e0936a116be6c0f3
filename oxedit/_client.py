"""`Client`: enqueue edits, await them over one shared event stream, fetch the results.

The facade, whole in this file: every public method of the async client. A job's life is the
engine's (`_engine.tracker.Tracker` owns it), the endpoints are `_resources`', the HTTP is
`_http`'s; `_bulk` runs `map`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import AsyncIterable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, Unpack

from . import _constants as C
from ._bulk.cost import Estimate, estimate, to_amount
from ._bulk.requests import BulkItem
from ._bulk.run import BulkRun
from ._bulk.shard import Shard
from ._config import (
    HubProfile,
    Limits,
    ReconcilePolicy,
    Timeouts,
    resolve_api_key,
    resolve_base_url,
    timeouts_for,
)
from ._engine.job import AsCompleted, Job
from ._engine.ratelimit import SharedPace
from ._engine.tracker import State, Tracker
from ._exceptions import ClientStateError, InvalidRequestError, OxeditError
from ._http.api import Api, ClientStats, Counters
from ._http.retry import RetryPolicy
from ._http.sessions import HttpSettings
from ._http.transport import Transport
from ._models import EditResult, Generation, Model, bind
from ._resources.edit import blocking_edit
from ._resources.history import HistoryEntry, HistoryPage, history_entry, history_page
from ._resources.inputs import (
    ImageInput,
    build_payload,
    check_num_generations,
    drop_single_generation,
)
from ._resources.upload import UploadStats, resolve_upload_repo
from ._resources.validate import DiskCache

__all__ = ["Client"]

_list = list  # `Client.list` shadows the builtin inside the class body


class Client:
    """The async client. Use it as an async context manager.

    Args:
        api_key: Defaults to `OXEN_API_KEY`, then the `oxen` CLI's `auth_config.toml`.
        base_url: Defaults to `OXEN_BASE_URL`, then https://hub.oxen.ai.
        timeouts, limits, retry, reconcile, **http (`HttpSettings`: proxy, trust_env,
            http_session, default_headers, event_hooks): settings; see their docs.
        upload_repo: "namespace/repo" (default `OXEN_UPLOAD_REPO`): local inputs are uploaded
            there once each (named by their hash) and jobs send their URLs, instead of data
            URIs that the API echoes in every row; the repository is created if missing,
            private unless `upload_repo_public=True` (inputs are usually users' photos).
        hub: Where the hub differs from oxedit's defaults (`HubProfile`, as `oxedit doctor`
            finds it; the CLI applies what doctor remembered).
        cache_schemas: Keep model schemas on disk for a few minutes, shared by processes
            (`$OXEDIT_CACHE_DIR`, else `~/.cache/oxedit`): short-lived programs, such as each
            `oxedit` command, need not fetch them again.

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
        upload_repo: str | None = None,
        upload_repo_public: bool = False,
        hub: HubProfile | None = None,
        cache_schemas: bool = False,
        **http: Unpack[HttpSettings],
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        api_key = resolve_api_key(api_key, self.base_url)
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.reconcile_policy = reconcile or ReconcilePolicy()
        self._counters = Counters()  # shared with `with_options` views
        transport = Transport(
            base_url=self.base_url,
            api_key=api_key,
            timeouts=self.timeouts,
            limits=self.limits,
            **http,
        )
        hub = hub or HubProfile()
        api = Api(transport, self.retry, self._counters)
        if hub.edit_field is not None:
            api.edit_image_field = hub.edit_field
        api.history_first_page = hub.history_first_page
        self._tracker = tracker = Tracker(
            transport, api, self.timeouts, self.limits, self.reconcile_policy,
            resolve_upload_repo(upload_repo), upload_public=upload_repo_public,
        )  # fmt: skip
        if hub.metadata_route is not None and tracker.uploader is not None:
            tracker.uploader.metadata_route = hub.metadata_route
        if cache_schemas:
            tracker.schemas.disk = DiskCache.for_base_url(self.base_url)

    def with_options(
        self,
        *,
        timeout: float | Timeouts | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> Client:
        """This client with other settings for the requests made through it: the same
        connections, event stream, pacing and jobs (like openai-python's `with_options`).

        Its life is this client's: `async with` on it does nothing, and it closes with this one.

        Args:
            timeout: Seconds a request may take in all (and wait for each read), or `Timeouts`.
            max_retries: Retries of a refused or lost request, for this client's calls.
            retry: A whole `RetryPolicy` (`max_retries` then applies on top of it).

        Example:
            ```python
            patient = client.with_options(timeout=300, max_retries=8)
            job = await patient.submit(prompt="Add a funny hat", image="cat.png")
            ```
        """
        view = copy.copy(self)
        view.timeouts = timeouts_for(timeout, self.timeouts)
        view.retry = retry or self.retry
        if max_retries is not None:
            view.retry = dataclasses.replace(view.retry, max_retries=max_retries)
        tracker = self._tracker
        view._tracker = tracker.derive(tracker.api.derive(view.retry, view.timeouts))
        return view

    def share_rate(self, pace: SharedPace) -> None:
        """Pace this client's enqueues by a rate budget it shares with other processes (as
        `oxedit.ray`'s actors share one): `pace` is asked before each enqueue is sent and
        told how each was answered, instead of this client learning the account's limit on
        its own (its slow start still bounds what it has in flight). Before it is opened.

        Raises:
            ClientStateError: The client is already open (or closed).
        """
        if self._tracker.state is not State.UNOPENED:
            raise ClientStateError("share_rate() must be called before the client is opened")
        self._tracker.shared_pace = pace

    @property
    def stats(self) -> ClientStats:
        """What this client (with its `with_options` views) has done so far: a frozen
        snapshot, taken now; read the property again for newer figures."""
        return self._counters.snapshot()

    @property
    def upload_stats(self) -> UploadStats | None:
        """What the input uploads did so far (None without `upload_repo`)."""
        uploader = self._tracker.uploader
        return uploader.stats if uploader is not None else None

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
        tracker = self._tracker
        if "num_generations" in params:
            drop_single_generation(params)
        tracker.require_open()
        if tracker.uploader is not None:
            image = await tracker.hosted(image)
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        # The payload holds what they held: a submit waiting for its turn keeps neither (the
        # keyword dict is one more object per parked submit, the image bytes its size).
        del params, image
        # `tracker.enqueue` in steps (see `Tracker.send`): a bad request raises now, and the
        # turn is waited for in this frame, the enqueue's made once it came.
        schemas = tracker.check(payload)
        waits = tracker.must_wait()
        if waits:
            await tracker.turn()
        (job,) = await tracker.send(payload, 1, schemas, turn_taken=waits)
        return job

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
        image = await self._tracker.hosted(image)
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        return await self._tracker.enqueue(payload, n)

    # -- jobs --------------------------------------------------------------------------------

    def job(self, generation_id: str) -> Job:
        """A job for a generation enqueued elsewhere (another process, an earlier run).

        It is reconciled through the queue endpoints at once, then followed like any other.
        """
        return self._tracker.follow(generation_id)

    def as_completed(self, jobs: Iterable[Job]) -> AsCompleted:
        """Iterate over `jobs` in the order they finish (each yielded job is done): `async for
        job in client.as_completed(jobs): gen = await job` (in a `try` for GenerationError)."""
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
        shard: Shard | str | None = None,
    ) -> BulkRun:
        """Run many edits, at most `concurrency` in flight, as a `BulkRun` (its docstring has
        the arguments): `async with client.map(reqs, journal="j.sqlite") as run: async for
        result in run: ...`. One bad item gives an "error" result; it never stops the batch.

        `shard="i/N"` (or `Shard(i, N)`) runs only this shard's items, chosen by each item's
        identity: N processes given 1/N ... N/N cover every item exactly once (what `oxedit
        batch --shard` does)."""
        self._tracker.require_open()
        if isinstance(shard, str):
            shard = Shard.parse(shard)
        return BulkRun(
            self._tracker, requests, concurrency=concurrency, journal=journal,
            output_dir=output_dir, retry_failed=retry_failed,
            max_cost=to_amount(max_cost, "max_cost"),
            unknown_cost=to_amount(unknown_cost, "unknown_cost"), shard=shard,
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

    async def has_model(self, model_id: str) -> bool:
        """Whether the API knows `model_id`: False only when the models endpoint says it does
        not exist. Answered from the schema cache that every request's check uses (one fetch
        per model and client)."""
        self._tracker.require_open()
        return await self._tracker.schemas.exists(model_id)

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

    # -- money -------------------------------------------------------------------------------

    async def estimate(
        self,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        unknown_cost: Decimal | float | str | None = None,
    ) -> Estimate:
        """Check every item as `map` would and price the valid ones from their models'
        pricing; sends nothing (only the models are read).

        Args:
            requests: What `map` would take.
            unknown_cost: USD to assume per generation of a model whose pricing gives no
                exact price (otherwise `Estimate.cost` is None for a batch with one).

        Example:
            ```python
            estimate = await client.estimate(requests)
            print(estimate.items, estimate.generations, estimate.cost, estimate.errors)
            ```
        """
        self._tracker.require_open()
        return await estimate(self, requests, to_amount(unknown_cost, "unknown_cost"))

    async def history(
        self, *, page: int = 1, page_size: int = C.DEFAULT_HISTORY_PAGE_SIZE
    ) -> HistoryPage:
        """One page (from 1; `page_size` up to 1000) of the billing history,
        `GET /api/ai/generations`: generations with what each cost, and the `total_cost`."""
        tracker = self._tracker
        tracker.require_open()
        return await history_page(
            tracker.api, page=page, page_size=page_size, bind=lambda g: bind(g, tracker)
        )

    async def history_entry(self, generation_id: str) -> HistoryEntry:
        """One generation's billing history row (`GET /api/ai/generations/{id}`);
        `NotFoundError` when the history does not have it."""
        tracker = self._tracker
        tracker.require_open()
        return await history_entry(tracker.api, generation_id, bind=lambda g: bind(g, tracker))

"""`Client`: enqueue edits, await them over one shared event stream, fetch the results.

A thin facade: the job lifecycle is `_tracker.Tracker`'s, the HTTP is `_api`/`_transport`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import AsyncIterable, Iterable, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, Unpack

from . import _constants as C
from ._api import Api, ClientStats
from ._bulk import BulkRun
from ._client_cost import CostMethods
from ._client_queries import QueryMethods
from ._config import (
    Limits,
    ReconcilePolicy,
    Timeouts,
    resolve_api_key,
    resolve_base_url,
    timeouts_for,
)
from ._cost import to_amount
from ._inputs import ImageInput, build_payload, check_num_generations, drop_single_generation
from ._job import AsCompleted, Job
from ._models import json_encoder
from ._requests import BulkItem
from ._retry import RetryPolicy
from ._sessions import HttpSettings
from ._tracker import Tracker
from ._transport import Transport
from ._upload import UploadStats, resolve_upload_repo

__all__ = ["Client"]

_list = list  # `Client.list` shadows the builtin inside the class body


class Client(QueryMethods, CostMethods):
    """The async client. Use it as an async context manager.

    Args:
        api_key: Defaults to `OXEN_API_KEY`, then the `oxen` CLI's `auth_config.toml`.
        base_url: Defaults to `OXEN_BASE_URL`, then https://hub.oxen.ai.
        timeouts, limits, retry, reconcile, **http (`HttpSettings`: proxy, trust_env,
            http_session, default_headers, event_hooks): settings; see their docs.
        upload_repo: "namespace/repo" (default `OXEN_UPLOAD_REPO`): local inputs are uploaded
            there once each (named by their hash) and jobs send their URLs, instead of data
            URIs that the API echoes in every row; the repository is created if missing.

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
        **http: Unpack[HttpSettings],
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        api_key = resolve_api_key(api_key, self.base_url)
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.reconcile_policy = reconcile or ReconcilePolicy()
        self.stats = ClientStats()
        transport = Transport(
            base_url=self.base_url,
            api_key=api_key,
            timeouts=self.timeouts,
            limits=self.limits,
            **http,
        )
        api = Api(transport, self.retry, self.stats)
        self._tracker = Tracker(
            transport, api, self.timeouts, self.limits, self.reconcile_policy,
            resolve_upload_repo(upload_repo),
        )  # fmt: skip

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
        view._tracker = tracker.derive(
            Api(tracker.api.transport, view.retry, self.stats, timeouts=view.timeouts)
        )
        return view

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
        # Flat down to the enqueue: each frame parked is 10,000 objects at 10,000 submits.
        tracker = self._tracker
        drop_single_generation(params)
        enqueuer = tracker.require_open().enqueuer
        if tracker.uploader is not None:
            image = await tracker.hosted(image)
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        if not tracker.schemas.cached(payload):
            await tracker.schemas.check(payload)  # the first of a model fetches its schema
        body = json_encoder.encode(payload)  # 1: the generations this request asks for
        (pending,) = await enqueuer.enqueue(payload, body, 1, api=tracker.api)
        return tracker.job(pending)

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

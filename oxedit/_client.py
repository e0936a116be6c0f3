"""`Client`: enqueue edits, await them over one shared event stream, fetch the results."""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, Unpack

from . import _constants as C
from ._api import Api, ClientStats
from ._atomic import save_atomic
from ._bulk import BulkRun
from ._client_cost import CostMethods
from ._config import Limits, ReconcilePolicy, Timeouts, resolve_api_key, resolve_base_url
from ._cost import to_amount
from ._edit import blocking_edit
from ._enqueue import Enqueuer
from ._exceptions import (
    ClientStateError,
    GenerationExpired,
    InvalidRequestError,
    NotFoundError,
    OxeditError,
)
from ._inputs import ImageInput, build_payload, check_num_generations, drop_single_generation
from ._job import AsCompleted, Job
from ._listener import Listener
from ._models import TERMINAL_STATUSES, EditResult, Generation, Model, json_encoder
from ._ratelimit import AdaptiveRate
from ._registry import Outcome, Pending, Registry
from ._requests import BulkItem
from ._results import Downloader
from ._retry import RetryPolicy
from ._schedule import CheckSchedule
from ._transport import HttpSettings, Transport
from ._validate import Schemas

__all__ = ["Client", "owner_of"]

_R = TypeVar("_R", Generation, EditResult)
_list = list  # `Client.list` shadows the builtin inside the class body


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


# A result knows the client that can download it: kept in the instance's __dict__ (the
# Structs have `dict=True`), outside the fields, so it is never encoded or compared.
_OWNER = "_oxedit_client"


def owner_of(obj: Generation | EditResult) -> Client:
    client = obj.__dict__.get(_OWNER)
    if not isinstance(client, Client) or client._state is not _State.OPENED:
        raise ClientStateError(
            f"{type(obj).__name__} is not bound to an open oxedit.Client; call "
            "client.read(result) or client.save(result, path) inside `async with Client()`"
        )
    return client


class Client(CostMethods):
    """The async client. Use it as an async context manager.

    Args:
        api_key: Defaults to `OXEN_API_KEY`, then the `oxen` CLI's `auth_config.toml`.
        base_url: Defaults to `OXEN_BASE_URL`, then https://hub.oxen.ai.
        timeouts, limits, retry, reconcile, **http (`HttpSettings`): settings; see their docs.

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
        **http: Unpack[HttpSettings],
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._api_key = resolve_api_key(api_key, self.base_url)
        self.timeouts = timeouts or Timeouts()
        self.limits = limits or Limits()
        self.retry = retry or RetryPolicy()
        self.reconcile_policy = reconcile or ReconcilePolicy()
        self.stats = ClientStats()
        self._state = _State.UNOPENED
        self._transport = Transport(
            base_url=self.base_url,
            api_key=self._api_key,
            timeouts=self.timeouts,
            limits=self.limits,
            **http,
        )
        self._api = Api(self._transport, self.retry, self.stats)
        self._downloader = Downloader(self._transport, self._api, self.retry, self.stats)
        self._schemas = Schemas(self._api.model)  # checks every request against its model
        self._registry: Registry | None = None
        self._listener: Listener | None = None
        self._enqueuer: Enqueuer | None = None

    def __repr__(self) -> str:
        return f"<oxedit.Client {self.base_url} {self._state.value}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise ClientStateError(
                f"this Client is {self._state.value}; a Client can be opened only once, "
                "create a new one"
            )
        self._registry = Registry(
            early_ttl=2 * self.timeouts.read,
            schedule=CheckSchedule(self.reconcile_policy),
            on_settle=self._transport.hooks.settle_callback(),
        )
        self._listener = Listener(
            self._api,
            self._registry,
            self.reconcile_policy,
            max_event_bytes=self.limits.max_event_bytes,
        )
        self._enqueuer = Enqueuer(
            self._api,
            self._registry,
            self.reconcile_policy,
            self._listener,
            self._register,
            request_deadline=self.timeouts.total,
            pace=AdaptiveRate(
                initial=self.limits.initial_rate, maximum=self.limits.max_rate, stats=self.stats
            ),
        )
        await self._transport.open()
        self._state = _State.OPENED
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
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        try:
            self._transport.begin_close()
            if self._listener is not None:
                await self._listener.close()
            if self._enqueuer is not None:
                await self._enqueuer.close(self.timeouts.total)
            if self._registry is not None:
                self._registry.fail_closed()
        finally:
            await self._transport.close()

    def _require_open(self) -> tuple[Registry, Listener, Enqueuer]:
        if self._state is not _State.OPENED:
            hint = (
                "use `async with oxedit.Client() as client:`"
                if self._state is _State.UNOPENED
                else "it was closed: create a new Client"
            )
            raise ClientStateError(f"the client is {self._state.value}; {hint}")
        assert self._registry is not None and self._listener and self._enqueuer
        return self._registry, self._listener, self._enqueuer

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
        _, _, enqueuer = self._require_open()
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        # Flat on purpose (no helper awaited): 10,000 parked submits, 10,000 fewer frames.
        if not self._schemas.cached(payload):
            await self._schemas.check(payload)  # the first of a model fetches its schema
        (pending,) = await enqueuer.enqueue(payload, json_encoder.encode(payload), 1)
        return Job(self, pending.id, pending.future)

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
        self._require_open()
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        return await self._enqueue_payload(payload, n)

    async def _enqueue_payload(
        self, payload: dict[str, Any], n: int, on_send: Callable[[float], None] | None = None
    ) -> _list[Job]:
        _, _, enqueuer = self._require_open()
        await self._schemas.check(payload)  # the model's schema, fetched once per client
        body = json_encoder.encode(payload)
        pendings = await enqueuer.enqueue(payload, body, n, on_send=on_send)
        return [Job(self, p.id, p.future) for p in pendings]

    def _register(
        self, generation_id: str, epoch: int, model: str | None = None, namespace: str | None = None
    ) -> Pending:
        """Start waiting for a generation enqueued while the stream was at `epoch`."""
        registry, listener, _ = self._require_open()
        pending = registry.add(generation_id, model, namespace)
        listener.vouch(generation_id, epoch)
        return pending

    # -- jobs --------------------------------------------------------------------------------

    def job(self, generation_id: str) -> Job:
        """A job for a generation enqueued elsewhere (another process, an earlier run).

        It is reconciled through the queue endpoints at once, then followed like any other.
        """
        _, listener, _ = self._require_open()
        listener.start()
        pending = self._register(generation_id, -1)
        return Job(self, generation_id, pending.future)

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
        self._require_open()
        return BulkRun(
            self, requests, concurrency=concurrency, journal=journal, output_dir=output_dir,
            retry_failed=retry_failed, max_cost=to_amount(max_cost, "max_cost"),
            unknown_cost=to_amount(unknown_cost, "unknown_cost"),
        )  # fmt: skip

    async def _cancel(self, generation_id: str) -> Outcome:
        registry, _, _ = self._require_open()
        generation_id = registry.current(generation_id)  # a retried row, when followed to one
        pending = registry.get(generation_id)
        try:
            await self._api.delete(generation_id)
            row = await self._api.get_row(generation_id)
        except NotFoundError:
            registry.fail(generation_id, GenerationExpired(generation_id))
            raise GenerationExpired(generation_id) from None
        generation = self._bound(Generation.from_row(row))
        if row.status in TERMINAL_STATUSES:
            registry.resolve(generation)
        if pending is not None and pending.future.done():
            return pending.future.result()
        return generation

    async def cancel(self, generation_id: str) -> Generation:
        """Cancel a generation by id; returns its row afterwards (see `Job.cancel`)."""
        outcome = await self._cancel(generation_id)
        if isinstance(outcome, OxeditError):
            raise outcome
        return outcome

    # -- queries -----------------------------------------------------------------------------

    async def get(self, generation_id: str) -> Generation:
        """The generation's row as the API has it now (`GET /api/ai/queue/{id}`)."""
        self._require_open()
        return self._bound(Generation.from_row(await self._api.get_row(generation_id)))

    async def list(
        self, *, status: str | None = None, model: str | None = None, **filters: str
    ) -> _list[Generation]:
        """Rows of `GET /api/ai/queue`: the active ones by default, or filtered by `status`,
        `model`, `media_type`, `namespace`, `repo`, `folder`."""
        self._require_open()
        rows = await self._api.list_rows(status=status, model=model, **filters)
        return [self._bound(Generation.from_row(row)) for row in rows]

    async def models(self) -> _list[Model]:
        """Every model of `GET /api/ai/models`."""
        self._require_open()
        return await self._api.models()

    async def model(self, model_id: str) -> Model:
        """One model with its request schema; `NotFoundError` for an unknown id."""
        self._require_open()
        return await self._api.model(model_id)

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
        self._require_open()
        if response_format not in ("url", "b64_json"):
            raise InvalidRequestError(
                f"response_format={response_format!r} is not one of url, b64_json"
            )
        payload = await build_payload(prompt=prompt, image=image, model=model, params=params)
        await self._schemas.check(payload)
        payload["response_format"] = response_format
        return self._bound(await blocking_edit(self._api, payload))

    # -- results -----------------------------------------------------------------------------

    def _bound(self, obj: _R) -> _R:
        obj.__dict__[_OWNER] = self
        return obj

    async def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes:
        """Download a result's image (image `index` of an `EditResult`).

        Presigned URLs expire: on 403/404/410 from the file host, the generation's row is read
        again for a fresh URL, once. The API key is sent only to the API's own host.
        """
        self._require_open()
        return await self._downloader.read(result, index=index)

    async def save(
        self, result: Generation | EditResult, path: str | os.PathLike[str], *, index: int = 0
    ) -> Path:
        """Download a result and write it to `path` atomically (a crash leaves no partial file).
        Parent folders are created. Returns the path."""
        data = await self.read(result, index=index)
        target = Path(path)
        await save_atomic(target, data)
        return target

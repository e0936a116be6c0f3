"""`Tracker`: the one owner of a job's life, from its enqueue to its outcome.

It wires the registry, the listener and the enqueuer when the client opens, and owns what
happens to a generation id afterwards: following it, cancelling it, adopting what a lost
response created, downloading its result, and failing what is still pending on close. `Job`,
`BulkRun` and the results depend on it (through small protocols), never on `Client`.
"""

from __future__ import annotations

import copy
import enum
import os
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .._atomic import save_atomic
from .._config import Limits, ReconcilePolicy, Timeouts
from .._exceptions import ClientStateError, GenerationExpired, NotFoundError
from .._http.api import Api
from .._http.transport import Transport
from .._models import (
    TERMINAL_STATUSES,
    EditResult,
    Generation,
    Model,
    generation_of_row,
)
from .._resources.inputs import ImageInput, hosted
from .._resources.results import Downloader
from .._resources.upload import Uploader
from .._resources.validate import Schemas
from .enqueue import Enqueuer, SchemaCheck
from .job import DerivedJob, Job, handed_out
from .listener import Listener
from .ratelimit import AdaptiveRate, SharedPace
from .reconciler import Reconciler
from .registry import Outcome, Registry
from .schedule import CheckSchedule

__all__ = ["State", "Tracker"]


class State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


class _Parts(NamedTuple):
    registry: Registry
    listener: Listener
    enqueuer: Enqueuer


class _Life:
    """The state and parts of one client, shared with the trackers derived from it."""

    __slots__ = ("parts", "state")

    def __init__(self) -> None:
        self.state = State.UNOPENED
        self.parts: _Parts | None = None


class Tracker:
    """Follows every generation of one client; see the module docstring."""

    def __init__(
        self,
        transport: Transport,
        api: Api,
        timeouts: Timeouts,
        limits: Limits,
        reconcile: ReconcilePolicy,
        upload_repo: str | None = None,
        *,
        upload_public: bool = False,
    ) -> None:
        self.api = api
        # Local inputs go to this repository once each, and jobs send their URLs (None: sent
        # inline as data URIs).
        self.uploader = (
            Uploader(api, upload_repo, public=upload_public) if upload_repo is not None else None
        )
        self._life = _Life()
        self._owner = True  # False for a tracker derived by `derive`: its parent owns the life
        self._job: type[Job] = Job  # what `derive` makes: results read through the derived client
        self._transport = transport
        self._timeouts = timeouts
        self._limits = limits
        self._reconcile = reconcile
        self._downloader = Downloader(transport, api)
        self.schemas = Schemas(api.model)  # checks every request against its model
        #: A rate budget shared with other processes (`oxedit.ray`), set before `open`: it
        #: paces the enqueues instead of this client's own adaptive rate.
        self.shared_pace: SharedPace | None = None

    @property
    def state(self) -> State:
        return self._life.state

    def derive(self, api: Api) -> Tracker:
        """A tracker sharing this one's life, jobs, stream and connections, whose own
        requests use `api` (its retry policy and timeouts): `Client.with_options`."""
        view = copy.copy(self)
        view.api = api
        view._downloader = Downloader(self._transport, api)
        view.schemas = self.schemas.using(api.model)
        view.uploader = self.uploader.using(api) if self.uploader is not None else None
        view._job = DerivedJob
        view._owner = False
        return view

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if not self._owner:  # `async with client.with_options(...)`: the parent's life
            if self.state is State.OPENED:
                return
            raise ClientStateError(
                f"the client this one was derived from (with_options) is {self.state.value}; "
                "open that one: `async with oxedit.Client() as client:`"
            )
        if self.state is not State.UNOPENED:
            raise ClientStateError(
                f"this Client is {self.state.value}; a Client can be opened only once, "
                "create a new one"
            )
        registry = Registry(
            early_bytes=self._limits.max_early_event_bytes,
            schedule=CheckSchedule(self._reconcile),
            reader=self,
            on_settle=self._transport.hooks.settle_callback(),
            on_foreign=self.api.stats.count_foreign_events,
        )
        listener = Listener(
            self.api,
            registry,
            self._reconcile,
            Reconciler(self.api, registry),
            max_event_bytes=self._limits.max_event_bytes,
        )
        pace = AdaptiveRate(
            initial=self._limits.initial_rate,
            maximum=self._limits.max_rate,
            stats=self.api.stats,
            shared=self.shared_pace,
            max_window=self._limits.max_connections,
        )
        enqueuer = Enqueuer(
            self.api,
            registry,
            self._reconcile,
            listener,
            request_deadline=self._timeouts.total,
            pace=pace,
        )
        await self._transport.open()
        self._life.parts = _Parts(registry, listener, enqueuer)
        self._life.state = State.OPENED

    async def close(self) -> None:
        """Stop the stream, let sent enqueues be answered, fail what is pending; every
        session is closed, whatever happens."""
        if self.state is State.CLOSED or not self._owner:
            return  # a derived tracker's parent closes what they share
        self._life.state = State.CLOSED
        try:
            if self._life.parts is not None:  # their requests need the transport still open
                await self._life.parts.enqueuer.settle_orphans(self._timeouts.total)
            self._transport.begin_close()
            if self._life.parts is not None:
                registry, listener, enqueuer = self._life.parts
                await listener.close()
                await enqueuer.close(self._timeouts.total)
                registry.fail_closed()
            if self.uploader is not None:
                await self.uploader.aclose()
        finally:
            await self._transport.close()

    def require_open(self) -> _Parts:
        """The open client's parts; `ClientStateError` before opening and after closing."""
        life = self._life
        parts = life.parts
        if life.state is not State.OPENED or parts is None:
            hint = (
                "use `async with oxedit.Client() as client:`"
                if self.state is State.UNOPENED
                else "it was closed: create a new Client"
            )
            raise ClientStateError(f"the client is {self.state.value}; {hint}")
        return parts

    # -- enqueue and follow ------------------------------------------------------------------

    async def hosted(
        self, image: ImageInput | Sequence[ImageInput]
    ) -> ImageInput | Sequence[ImageInput]:
        """`image` with local inputs uploaded and replaced by their URLs, when the client has an
        `upload_repo`; else as given (sent inline)."""
        self.require_open()
        if self.uploader is None:
            return image
        return await hosted(image, self.uploader)

    def enqueue(
        self, payload: dict[str, Any], n: int, on_send: Callable[[float], None] | None = None
    ) -> Coroutine[Any, Any, list[Job]]:
        """The one enqueue path (`submit_generations`, `map`; `submit` takes it in steps, see
        `send`): check `payload` against its model's schema, then POST it for `n`
        generations, one job each; `on_send(unix_time)` before each POST.

        Not a coroutine itself: it returns the enqueuer's, so a parked `submit()` holds no
        frame of it (10,000 parked submits, 10,000 fewer objects for the garbage collector).
        """
        schemas = self.check(payload)
        enqueuer = self.require_open().enqueuer
        # Waiting for its turn, it waits in a small frame (see `Enqueuer.enqueue_in_turn`).
        enqueue = enqueuer.enqueue_in_turn if enqueuer.pace.must_wait() else enqueuer.enqueue
        return enqueue(
            payload, n, owner=self, job=self._job, on_send=on_send, api=self.api, schemas=schemas
        )

    def check(self, payload: dict[str, Any]) -> SchemaCheck | None:
        """Check `payload` against its model's cached schema (a bad request raises now);
        None once checked. The first requests of a model, whose schema is not loaded yet,
        are checked by their enqueue once its turn came (so that a burst waits once, in line,
        not first for the schema and then for its turn): for them, the schemas to check
        with; the stream starts connecting meanwhile."""
        if self.schemas.cached(payload):
            return None
        self.require_open().listener.start()
        return self.schemas

    def must_wait(self) -> bool:
        """Whether an enqueue must wait for its turn first (see `turn`)."""
        return self.require_open().enqueuer.pace.must_wait()

    def turn(self) -> Coroutine[Any, Any, None]:
        """Wait for an enqueue's turn (in order, see `AdaptiveRate.acquire`); the enqueue must
        then be made at once (`send(..., turn_taken=True)`). Called right after
        `must_wait()`, which checked that the client is open."""
        parts = self._life.parts
        assert parts is not None  # opened: `must_wait()` said so just now
        return parts.enqueuer.pace.acquire()

    def send(
        self, payload: dict[str, Any], n: int, schemas: SchemaCheck | None, *, turn_taken: bool
    ) -> Coroutine[Any, Any, list[Job]]:
        """`enqueue` in steps, as `submit()` takes it: `schemas = check(payload)`, then
        `await turn()` if `must_wait()`, then this (`turn_taken`: after the turn). A parked
        submit then waits in its own frame and `acquire`'s: the enqueue's (some 25 live
        slots, which a full collection visits for every parked submit) is made once its turn
        came, with no frame between them (`Enqueuer.enqueue_in_turn`'s)."""
        return self.require_open().enqueuer.enqueue(
            payload, n, owner=self, job=self._job, api=self.api, schemas=schemas,
            turn_taken=turn_taken,
        )  # fmt: skip

    def follow(self, generation_id: str) -> Job:
        """Follow a generation enqueued elsewhere: reconciled at once, then like any other."""
        _, listener, _ = self.require_open()
        listener.start()
        created = self._job(self, generation_id)
        return handed_out(created, listener.follow(generation_id, -1, record=created))

    async def adopt_unrecorded(
        self, requests: list[tuple[dict[str, Any], float]], claimed: set[str]
    ) -> list[Job | None]:
        """See `Enqueuer.adopt_unrecorded`: the jobs of this client it adopted."""
        return await self.require_open().enqueuer.adopt_unrecorded(
            requests, claimed, self, self._job
        )

    async def cancel(self, generation_id: str) -> Outcome:
        """Cancel remotely and settle the job with the server's truth (see `Job.cancel`)."""
        registry = self.require_open().registry
        generation_id = registry.current(generation_id)  # a retried row, when followed to one
        pending = registry.get(generation_id)
        try:
            await self.api.delete(generation_id)
            row = await self.api.get_row(generation_id)
        except NotFoundError:
            registry.fail(generation_id, GenerationExpired(generation_id))
            raise GenerationExpired(generation_id) from None
        generation = generation_of_row(row, self)
        if row.status in TERMINAL_STATUSES:
            registry.resolve(generation)
        settled = pending._result() if pending is not None else None
        return generation if settled is None else settled  # what the job settled with

    # -- lookups and results -----------------------------------------------------------------

    async def get(self, generation_id: str) -> Generation:
        self.require_open()
        return generation_of_row(await self.api.get_row(generation_id), self)

    async def list(self, status: str | None, model: str | None, **filters: str) -> list[Generation]:
        self.require_open()
        rows = await self.api.list_rows(status=status, model=model, **filters)
        return [generation_of_row(row, self) for row in rows]

    async def model(self, model_id: str) -> Model:
        self.require_open()
        return await self.api.model(model_id)

    async def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes:
        self.require_open()
        return await self._downloader.read(result, index=index)

    async def save(
        self, result: Generation | EditResult, path: str | os.PathLike[str], *, index: int = 0
    ) -> Path:
        data = await self.read(result, index=index)
        target = Path(path)
        await save_atomic(target, data)
        return target

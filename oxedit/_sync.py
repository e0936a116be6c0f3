"""`SyncClient`: the blocking face of `Client`, for scripts and notebooks.

Not a second implementation: one `Client` runs on one event loop in a background thread that
the `SyncClient` owns (its "portal"), and each blocking call hands a coroutine of that client
to the loop and waits for its answer. So it works where `asyncio.run` cannot (inside a running
loop: a Jupyter cell, an async framework's sync callback), from any number of threads at once,
and with every guarantee of `Client`: one event stream, no polling when healthy, nothing billed
twice.

Ctrl-C (`KeyboardInterrupt`) while a call blocks interrupts it at once, and what the call
leaves behind is never left running unfollowed, by the rule `Client` applies to a cancelled
`submit`: the caller said it does not want the result, so it is cancelled. An interrupted
`submit` waits (at most `SYNC_INTERRUPT_GRACE`) for the answer of a POST already sent and
cancels what it created (past that, the submit is cancelled and `Client`'s own search finds and
cancels it); an interrupted `job.result()` cancels that job, if this client submitted it; an
interrupted batch (`map`) stops, and cancels its unfinished generations unless it has a journal
(the next run with that journal follows them, as the batch docs say).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence, Sized
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from . import _constants as C
from ._bulk.cost import Estimate
from ._bulk.requests import BulkItem, BulkResult
from ._bulk.run import BulkRun
from ._client import Client
from ._config import Timeouts
from ._display import BatchBar, Card, grid_html, image_bundle, in_notebook, thumbnail_uri
from ._engine.job import AsCompleted, Job
from ._exceptions import ClientStateError, InvalidRequestError, OxeditError
from ._http.retry import RetryPolicy
from ._models import EditResult, Generation, Model, bind
from ._resources.history import HistoryEntry, HistoryPage
from ._resources.inputs import ImageInput

__all__ = ["BulkResults", "SyncAsCompleted", "SyncBulkRun", "SyncClient", "SyncJob"]

log = logging.getLogger("oxedit")

T = TypeVar("T")
_R = TypeVar("_R", Generation, EditResult)
_list = list  # `SyncClient.list` shadows the builtin inside the class body


class _Portal:
    """One event loop in a daemon thread, running one open `Client` until `close()`.

    A daemon thread, so a client nobody closed never keeps the process alive; `SyncClient`
    closes it at exit anyway (`weakref.finalize`), so its stream and sessions end cleanly.
    """

    def __init__(self, factory: Callable[[], Client]) -> None:
        self._lock = threading.Lock()  # orders every scheduling against `close()`
        self._closing = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.client: Client
        self._thread = threading.Thread(
            target=self._main, args=(factory,), name="oxedit-sync", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def _main(self, factory: Callable[[], Client]) -> None:
        asyncio.run(self._serve(factory))

    async def _serve(self, factory: Callable[[], Client]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            client = factory()
            await client.__aenter__()
        except BaseException as exc:  # e.g. ConfigurationError: the constructor's caller gets it
            self._error = exc
            self._ready.set()
            return
        self.client = client
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            # Calls still running get the `Client`'s answers to a racing `aclose()`; those
            # not started by then are cancelled by `asyncio.run` (`ClientStateError` below).
            await client.aclose()

    def on_loop_thread(self) -> bool:
        return threading.get_ident() == self._thread.ident

    @property
    def closed(self) -> bool:
        return self._closing

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `coro` on the loop; its future (this never blocks)."""
        if self.on_loop_thread():
            coro.close()
            raise ClientStateError(
                "a SyncClient was called from its own event loop (in an event hook?): that "
                "would wait for itself; use the async oxedit.Client there"
            )
        with self._lock:  # scheduled before a racing close's stop, or refused: never lost
            if self._closing:
                coro.close()
                raise ClientStateError("the SyncClient is closed; create a new one")
            assert self._loop is not None
            return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for it; Ctrl-C cancels it and re-raises."""
        future = self.submit(coro)
        try:
            return wait(future)
        except KeyboardInterrupt:
            future.cancel()
            raise

    def settle(self, coro: Coroutine[Any, Any, object], what: str) -> None:
        """After a Ctrl-C: run `coro` (a cleanup) and wait for it at most
        `SYNC_INTERRUPT_GRACE`; a second Ctrl-C stops waiting. Failures are logged."""
        try:
            future = self.submit(coro)
        except ClientStateError:
            return  # closed meanwhile: `Client.aclose` ended what was pending
        done, _ = concurrent.futures.wait([future], C.SYNC_INTERRUPT_GRACE)
        if not done:
            future.cancel()
            log.warning("gave up waiting to %s after %g s", what, C.SYNC_INTERRUPT_GRACE)
        elif not future.cancelled() and future.exception() is not None:
            log.warning("could not %s: %s", what, future.exception())

    def close(self) -> None:
        """Close the client and stop the loop; the first caller does it, the others wait."""
        with self._lock:
            first, self._closing = not self._closing, True
            if first and self._loop is not None and self._stop is not None:
                self._loop.call_soon_threadsafe(self._stop.set)
        if not self.on_loop_thread():  # the finalizer may run anywhere, even on the loop
            self._thread.join()


def wait(future: concurrent.futures.Future[T], timeout: float | None = None) -> T:
    """The future's result; a call the closing client cancelled is a `ClientStateError`."""
    try:
        return future.result(timeout)
    except concurrent.futures.CancelledError:
        raise ClientStateError("the SyncClient was closed while this call ran") from None


class _Reader:
    """What the `SyncClient`'s results download through: the `ResultReader` of `Generation`
    and `EditResult` (`await gen.read()` works from any event loop, a notebook's included,
    since the download runs on the client's own loop), and a blocking read for display."""

    __slots__ = ("_portal",)

    def __init__(self, portal: _Portal) -> None:
        self._portal = portal

    async def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes:
        client = self._portal.client
        return await asyncio.wrap_future(self._portal.submit(client.read(result, index=index)))

    async def save(
        self, result: Generation | EditResult, path: str | os.PathLike[str], *, index: int = 0
    ) -> Path:
        coro = self._portal.client.save(result, path, index=index)
        return await asyncio.wrap_future(self._portal.submit(coro))

    def display_bundle(self, result: Generation | EditResult) -> dict[str, Any] | None:
        """Jupyter's MIME bundle of a result: its image inline, downloaded on the client's own
        loop, so the notebook's loop is never waited for. None (the text repr) when there is
        no image to show, or when called on the client's loop itself."""
        portal = self._portal
        if portal.on_loop_thread() or portal.closed:
            return None
        if isinstance(result, Generation) and (result.status != "succeeded" or not result.url):
            return None
        if isinstance(result, EditResult) and not result.images:
            return None
        text = repr(result)
        try:
            data = self._portal.run(self._portal.client.read(result))
        except OxeditError as exc:
            return {"text/plain": f"{text}\n(image not shown: {exc})"}
        return image_bundle(data, text)


class SyncJob:
    """A generation enqueued through `SyncClient`: `job.result()` blocks until it finishes.

    Example:
        ```python
        job = client.submit(prompt="Add a funny hat", image="cat.png")
        gen = job.result(timeout=300)
        client.save(gen, "cat-hat.png")
        ```
    """

    __slots__ = ("_client", "_owned", "job")

    def __init__(self, client: SyncClient, job: Job, *, owned: bool) -> None:
        self._client = client
        self._owned = owned  # submitted by this client: an interrupted wait cancels it
        #: The underlying async `Job` (for code running on the client's own loop).
        self.job = job

    @property
    def id(self) -> str:
        """The generation id."""
        return self.job.id

    def __repr__(self) -> str:
        return repr(self.job).replace("<Job", "<SyncJob", 1)

    def done(self) -> bool:
        """Whether the outcome is known (`result()` will not block)."""
        return self.job.done()

    def result(
        self, timeout: float | None = None, *, cancel_on_timeout: bool = False
    ) -> Generation:
        """Wait for the generation to finish; its `Generation` (status "succeeded").

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.
            cancel_on_timeout: When the timeout expires, cancel the generation remotely.

        Raises:
            JobTimeout: the timeout expired (`.cancelled` says whether it was cancelled).
            GenerationFailed, GenerationCancelled: the generation ended without a result.
            KeyboardInterrupt: Ctrl-C; a job this client submitted is cancelled first
                (nothing keeps running that nobody waits for).
        """
        client = self._client
        portal = client._portal
        future = portal.submit(self.job.wait(timeout, cancel_on_timeout=cancel_on_timeout))
        try:
            gen = wait(future)
        except KeyboardInterrupt:
            future.cancel()
            if self._owned and not self.job.done():
                portal.settle(self.job.cancel(), f"cancel generation {self.id}")
            raise
        return client._bind(gen)

    def cancel(self) -> Generation:
        """Cancel the generation remotely; its row afterwards (see `Job.cancel`)."""
        return self._client._bind(self._client._portal.run(self.job.cancel()))


class SyncAsCompleted:
    """Iterator over jobs in completion order (see `SyncClient.as_completed`)."""

    def __init__(self, client: SyncClient, jobs: Iterable[SyncJob]) -> None:
        self._client = client
        by_job = {id(job.job): job for job in jobs}
        self._by_job = by_job

        async def make() -> AsCompleted:  # its queue belongs to the client's loop
            return AsCompleted(job.job for job in by_job.values())

        self._iterator = client._portal.run(make())

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> SyncJob:
        try:
            job = self._client._portal.run(self._iterator.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None
        return self._by_job[id(job)]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop iterating (nothing was started for it: nothing else to clean up)."""
        with contextlib.suppress(ClientStateError):
            self._client._portal.run(self._iterator.aclose())


class BulkResults(_list[BulkResult]):
    """The results of a batch, in input order; in a notebook it shows as the before/after
    grid of its first items (the compact form of the report's cards)."""

    def __init__(self, results: Iterable[BulkResult], fetch: Callable[[str], bytes | None]):
        super().__init__(sorted(results, key=lambda r: r.index))
        self._fetch = fetch  # an output's bytes by generation id, when none was saved

    def _repr_html_(self) -> str:
        shown = self[: C.SYNC_GRID_ITEMS]
        cards = [self._card(result) for result in shown]
        counts: dict[str, int] = {}
        for result in self:
            counts[result.status] = counts.get(result.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return grid_html(cards, len(self) - len(shown), summary)

    def _card(self, result: BulkResult) -> Card:
        request = result.request
        image = request.image
        local = not image.startswith(("data:", "http://", "https://"))
        title = request.name or (Path(image).stem if local else f"item {result.index}")
        before = _picture_src(request.image)
        after = None
        if result.ok:
            data = None
            if result.output is not None:
                with contextlib.suppress(OSError):
                    data = result.output.read_bytes()
            elif result.generation_id is not None:
                data = self._fetch(result.generation_id)
            after = thumbnail_uri(data) if data is not None else None
        note = None if result.ok else result.error or result.status
        return Card(f"{title}: {request.prompt}", result.status, before, after, note)


def _picture_src(image: str) -> str | None:
    """An input as a thumbnail: a local file's or a data URI's, and a URL as itself."""
    if image.startswith(("http://", "https://")):
        return image
    if image.startswith("data:"):
        import base64

        _, _, payload = image.partition(",")
        try:
            return thumbnail_uri(base64.b64decode(payload))
        except ValueError:
            return None
    try:
        return thumbnail_uri(Path(image).read_bytes())
    except OSError:
        return None


class SyncBulkRun:
    """A batch (`SyncClient.map`): iterate it for `BulkResult`s in completion order, or call
    `results()` for all of them. In a notebook, a cell ending in `client.map(...)` runs it
    with a live bar and shows the before/after grid.

    Leaving it early (`with` block, `break` then `close()`, Ctrl-C) stops the batch: what is
    in flight is cancelled, remotely too unless the batch has a journal (then the next run with
    that journal follows it).
    """

    def __init__(self, client: SyncClient, run: BulkRun, *, journal: bool) -> None:
        self._client = client
        self._run = run
        self._journal = journal
        self._seen: list[BulkResult] = []
        self._finished = False
        self._total: int | None = None

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> BulkResult:
        return self._next(None)

    def _next(self, tick: Callable[[], None] | None) -> BulkResult:
        if self._finished:
            raise StopIteration
        portal = self._client._portal
        future = portal.submit(self._run.__anext__())
        try:
            # The caller's thread redraws the bar between waits: a notebook's output is its.
            while (
                tick is not None and not concurrent.futures.wait([future], C.SYNC_PROGRESS_TICK)[0]
            ):
                tick()
            result = wait(future)
        except StopAsyncIteration:
            self._finished = True
            raise StopIteration from None
        except KeyboardInterrupt:
            future.cancel()
            self._stop()
            raise
        except BaseException:
            self._finished = True
            raise
        self._seen.append(result)
        return result

    def results(self, *, progress: bool | None = None) -> BulkResults:
        """Run the batch to its end; every result, in input order.

        Args:
            progress: Show a live bar (rich): None shows it in a notebook only.
        """
        show = in_notebook() if progress is None else progress
        if not show:
            for _ in self:
                pass
            return self._collected()
        with BatchBar(self._total, notebook=in_notebook()) as bar:
            for result in self._seen:
                bar.add(result.ok)
            while True:
                try:
                    result = self._next(bar.refresh)
                except StopIteration:
                    break
                bar.add(result.ok)
        return self._collected()

    def _collected(self) -> BulkResults:
        client = self._client

        def fetch(generation_id: str) -> bytes | None:
            try:
                return client.read(client.get(generation_id))
            except OxeditError:
                return None

        return BulkResults(self._seen, fetch)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.results(progress=True))  # type: ignore[no-untyped-call]

    @property
    def stopped(self) -> str | None:
        """Why the batch stopped sending before the end of its input (see `BulkRun`)."""
        return self._run.stopped

    def __enter__(self) -> Self:
        self._client._portal.run(self._run.__aenter__())  # starts sending, as `async with`
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the batch (see the class docstring); nothing if it ran to its end."""
        if not self._finished:
            self._client._portal.run(self._abort())
            self._finished = True

    def _stop(self) -> None:
        self._finished = True
        self._client._portal.settle(self._abort(), "stop the batch")

    async def _abort(self) -> None:
        run = self._run
        await run.aclose()
        # After it closed: an enqueue answered while it closed registered its job by then.
        unfinished = set(run.unfinished)
        if self._journal or not unfinished:
            return
        client = self._client._client
        outcomes = await asyncio.gather(
            *(client.cancel(generation_id) for generation_id in unfinished),
            return_exceptions=True,
        )
        for generation_id, outcome in zip(unfinished, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.warning("could not cancel generation %s: %s", generation_id, outcome)


class SyncClient:
    """The blocking client, for scripts and notebooks: `Client`'s surface, without `await`.

    It runs one `Client` on an event loop in a background thread of its own, so it works in a
    plain script, from several threads at once, and inside a running event loop (a Jupyter
    cell, an async framework's sync callback) where `asyncio.run` fails. Every guarantee of
    `Client` holds: one event stream, no polling when healthy, nothing billed twice. Ctrl-C
    while a call blocks interrupts it and cancels what it leaves behind (see `oxedit._sync`).

    Args:
        Those of `Client` (`api_key`, `base_url`, `timeouts`, `limits`, `retry`, `reconcile`,
        `upload_repo`, `proxy`, `trust_env`, `default_headers`, `event_hooks`), except
        `http_session` (a session belongs to one event loop: the client's is its own).
        Event hooks run on the client's thread.

    Example:
        ```python
        with oxedit.SyncClient() as client:
            job = client.submit(prompt="Add a funny hat", image="cat.png")
            gen = job.result()
            client.save(gen, "cat-hat.png")
        ```
    """

    def __init__(self, **settings: Any) -> None:
        if settings.get("http_session") is not None:
            raise InvalidRequestError(
                "http_session= cannot be given to a SyncClient: an aiohttp session belongs to "
                "the event loop it was made on, and the SyncClient runs its own; use proxy=, "
                "default_headers= and event_hooks=, or the async oxedit.Client"
            )
        self._portal = _Portal(lambda: Client(**settings))
        self._client = self._portal.client
        self._reader = _Reader(self._portal)
        self._owner = True
        self._finalizer = weakref.finalize(self, self._portal.close)

    # -- life ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._client.base_url

    @property
    def stats(self) -> Any:
        """A `ClientStats` snapshot of the underlying client (with its `with_options` views)."""
        return self._client.stats

    def __repr__(self) -> str:
        state = "closed" if self._portal.closed else "open"
        return f"<oxedit.SyncClient {self.base_url} {state}>"

    def __enter__(self) -> Self:
        if self._portal.closed:
            raise ClientStateError("the SyncClient is closed; create a new one")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the event stream and every connection, and stop the client's thread.

        Safe from any thread, any number of times (the first does it, the others wait for
        it). Calls blocked meanwhile end with `Client.aclose`'s answers (`ClientStateError`);
        later calls raise `ClientStateError`. A `with_options` view closes nothing: its life is
        its parent's.
        """
        if self._owner:
            if self._portal.on_loop_thread():
                raise ClientStateError(
                    "a SyncClient cannot be closed from its own event loop (an event hook?)"
                )
            self._finalizer()

    def with_options(
        self,
        *,
        timeout: float | Timeouts | None = None,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
    ) -> SyncClient:
        """This client with other settings for its requests (see `Client.with_options`): the
        same thread, stream and jobs; closing it does nothing."""
        view = object.__new__(SyncClient)
        view._portal = self._portal
        view._client = self._client.with_options(
            timeout=timeout, max_retries=max_retries, retry=retry
        )
        view._reader = self._reader
        view._owner = False
        return view

    def _bind(self, result: _R) -> _R:
        return bind(result, self._reader)

    # -- enqueue -------------------------------------------------------------------------------

    def submit(
        self,
        *,
        prompt: str,
        image: ImageInput | Sequence[ImageInput],
        model: str = C.DEFAULT_MODEL,
        **params: Any,
    ) -> SyncJob:
        """Enqueue one edit (see `Client.submit`); returns once it is enqueued."""
        coro = self._client.submit(prompt=prompt, image=image, model=model, **params)
        (job,) = self._enqueue(coro)
        return job

    def submit_generations(
        self,
        *,
        prompt: str,
        image: ImageInput | Sequence[ImageInput],
        num_generations: int,
        model: str = C.DEFAULT_MODEL,
        **params: Any,
    ) -> _list[SyncJob]:
        """Enqueue one request for `num_generations` (1-4) generations; one job for each."""
        return self._enqueue(
            self._client.submit_generations(
                prompt=prompt, image=image, num_generations=num_generations, model=model, **params
            )
        )

    def _enqueue(self, coro: Coroutine[Any, Any, Job | _list[Job]]) -> _list[SyncJob]:
        portal = self._portal
        future = portal.submit(coro)
        try:
            created = wait(future)
        except KeyboardInterrupt:
            # A POST already sent is answered within `Timeouts.total`: wait a little for it
            # and cancel what it created. Past that, cancelling the submit hands it to the
            # `Client`, which finds and cancels what it created in the background.
            done, _ = concurrent.futures.wait([future], C.SYNC_INTERRUPT_GRACE)
            if not done:
                future.cancel()
            elif not future.cancelled() and future.exception() is None:
                jobs = _jobs(future.result())
                portal.settle(_cancel_all(jobs), "cancel the interrupted submit's generations")
            raise
        return [SyncJob(self, job, owned=True) for job in _jobs(created)]

    def edit(
        self,
        *,
        prompt: str,
        image: ImageInput | Sequence[ImageInput],
        model: str = C.DEFAULT_MODEL,
        response_format: str = "url",
        **params: Any,
    ) -> EditResult:
        """One blocking edit (see `Client.edit`)."""
        coro = self._client.edit(
            prompt=prompt, image=image, model=model, response_format=response_format, **params
        )
        return self._bind(self._portal.run(coro))

    # -- jobs ----------------------------------------------------------------------------------

    def job(self, generation_id: str) -> SyncJob:
        """A job for a generation enqueued elsewhere (see `Client.job`). An interrupted
        `result()` of it does not cancel it: it is not this client's."""

        async def follow() -> Job:  # the job's future belongs to the client's loop
            return self._client.job(generation_id)

        return SyncJob(self, self._portal.run(follow()), owned=False)

    def as_completed(self, jobs: Iterable[SyncJob]) -> SyncAsCompleted:
        """Iterate over `jobs` in the order they finish (each yielded job is done)."""
        return SyncAsCompleted(self, jobs)

    def cancel(self, generation_id: str) -> Generation:
        """Cancel a generation by id; its row afterwards (see `Client.cancel`)."""
        return self._bind(self._portal.run(self._client.cancel(generation_id)))

    def get(self, generation_id: str) -> Generation:
        """The generation's row as the API has it now (see `Client.get`)."""
        return self._bind(self._portal.run(self._client.get(generation_id)))

    def list(
        self, *, status: str | None = None, model: str | None = None, **filters: str
    ) -> _list[Generation]:
        """Rows of `GET /api/ai/queue` (see `Client.list`)."""
        rows = self._portal.run(self._client.list(status=status, model=model, **filters))
        return [self._bind(row) for row in rows]

    def models(self) -> _list[Model]:
        """Every model of `GET /api/ai/models`."""
        return self._portal.run(self._client.models())

    def model(self, model_id: str) -> Model:
        """One model with its request schema."""
        return self._portal.run(self._client.model(model_id))

    # -- results -------------------------------------------------------------------------------

    def read(self, result: Generation | EditResult, *, index: int = 0) -> bytes:
        """Download a result's image (see `Client.read`)."""
        return self._portal.run(self._client.read(result, index=index))

    def save(
        self, result: Generation | EditResult, path: str | os.PathLike[str], *, index: int = 0
    ) -> Path:
        """Download a result to `path`, atomically (see `Client.save`)."""
        return self._portal.run(self._client.save(result, path, index=index))

    # -- batches and money ---------------------------------------------------------------------

    def map(
        self,
        requests: Iterable[BulkItem],
        *,
        concurrency: int = C.DEFAULT_BULK_CONCURRENCY,
        journal: str | os.PathLike[str] | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        retry_failed: bool = False,
        max_cost: Decimal | float | str | None = None,
        unknown_cost: Decimal | float | str | None = None,
    ) -> SyncBulkRun:
        """Run many edits (see `Client.map` and `SyncBulkRun`).

        Example:
            ```python
            for result in client.map(requests, output_dir="out"):
                print(result.index, result.status)
            ```
        """
        client = self._client

        async def make() -> BulkRun:  # its queue and task belong to the client's loop
            return client.map(
                requests, concurrency=concurrency, journal=journal, output_dir=output_dir,
                retry_failed=retry_failed, max_cost=max_cost, unknown_cost=unknown_cost,
            )  # fmt: skip

        run = SyncBulkRun(self, self._portal.run(make()), journal=journal is not None)
        run._total = len(requests) if isinstance(requests, Sized) else None
        return run

    def estimate(
        self, requests: Iterable[BulkItem], *, unknown_cost: Decimal | float | str | None = None
    ) -> Estimate:
        """What a batch would send and cost (see `Client.estimate`); sends nothing."""
        return self._portal.run(self._client.estimate(requests, unknown_cost=unknown_cost))

    def history(
        self, *, page: int = 1, page_size: int = C.DEFAULT_HISTORY_PAGE_SIZE
    ) -> HistoryPage:
        """One page of the billing history (see `Client.history`)."""
        return self._portal.run(self._client.history(page=page, page_size=page_size))

    def history_entry(self, generation_id: str) -> HistoryEntry:
        """One generation's billing history row (see `Client.history_entry`)."""
        return self._portal.run(self._client.history_entry(generation_id))


def _jobs(created: Job | _list[Job]) -> _list[Job]:
    return created if isinstance(created, _list) else [created]


async def _cancel_all(jobs: _list[Job]) -> None:
    outcomes = await asyncio.gather(*(job.cancel() for job in jobs), return_exceptions=True)
    for job, outcome in zip(jobs, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            log.warning("could not cancel generation %s: %s", job.id, outcome)

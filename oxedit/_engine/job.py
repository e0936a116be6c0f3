"""`Job`: one enqueued generation, awaitable for its result."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from typing import Any, Protocol, Self, cast

from .._exceptions import (
    JobPendingError,
    JobTimeout,
    OxeditError,
)
from .._models import Generation, ResultReader, rebound
from .registry import Outcome, Pending, error_of

__all__ = ["AsCompleted", "DerivedJob", "Job", "JobOwner", "handed_out"]


class JobOwner(Protocol):
    """What follows a job for it: the client's lifecycle owner (`_tracker.Tracker`)."""

    async def cancel(self, generation_id: str) -> Outcome: ...


def _unwrap(outcome: Outcome) -> Generation:
    error = error_of(outcome)
    if error is not None:
        raise error
    return cast(Generation, outcome)


class _Waiter(asyncio.Future[None]):
    """What a `Job.wait`, or an `await job` while another is awaiting it already, suspends
    on: the callback on the job's shared future (`Pending._as_future`) that wakes its caller.
    Cancelling the caller cancels this, never that future."""

    __slots__ = ()

    def __call__(self, _: object) -> None:
        if not self.done():  # the caller may have given up meanwhile
            self.set_result(None)


# The context the wake-up callbacks run in: they read no context variable, so one shared
# context per thread (a context cannot be entered twice at once; each thread runs its own
# loop's callbacks one by one) instead of a copy of the caller's made for every wait.
_contexts = threading.local()


def _callback_context() -> contextvars.Context:
    context: contextvars.Context | None = getattr(_contexts, "context", None)
    if context is None:
        context = _contexts.context = contextvars.Context()
    return context


class _Settled:
    """`await _Settled(job)`: wait for `job` to settle without letting the caller's
    cancellation reach it, and return its outcome (`Job.wait`; `Job._settled` does the same
    inline)."""

    __slots__ = ("_job",)

    def __init__(self, job: Pending) -> None:
        self._job = job

    def __await__(self) -> Generator[Any, None, Outcome]:
        job = self._job
        if job._outcome is None:
            future = job._as_future()
            waiter = _Waiter(loop=future.get_loop())
            future.add_done_callback(waiter, context=_callback_context())
            try:
                yield from waiter.__await__()
            finally:
                future.remove_done_callback(waiter)  # nothing to remove once it ran
        outcome = job._result()
        assert outcome is not None  # its future is done once it settled
        return outcome


class Job(Pending):
    """A generation enqueued by `Client.submit`.

    `await job` waits for it to finish and returns the `Generation` (status "succeeded");
    it raises `GenerationFailed` or `GenerationCancelled` otherwise. Awaiting is cheap and
    can be repeated: the result comes from the client's one shared event stream.

    Example:
        ```python
        job = await client.submit(prompt="Add a funny hat", image="cat.png")
        gen = await job.wait(timeout=300, cancel_on_timeout=True)
        ```
    """

    # The job is what the registry keeps while it is pending (one object per job). A second
    # handle on a job already followed (another client's view of it, `client.job(id)` from a
    # derived client) reads the state of the one kept: `_record` (None: this one; a reference
    # to itself would be a cycle, each job freed by the garbage collector, not on its release).
    __slots__ = ("_owner", "_record", "id")

    def __init__(self, owner: JobOwner, generation_id: str, record: Pending | None = None):
        # `Pending.__init__`'s fields, set here: a call fewer for each job made.
        self._next = self._waiter = self._outcome = self._future = None
        self._owner = owner
        self.id = generation_id
        self._record = record

    def __repr__(self) -> str:
        outcome = (self._record or self)._result()
        if outcome is None:
            state = "pending"
        else:
            state = "error" if isinstance(outcome, OxeditError) else outcome.status
        return f"<Job {self.id} {state}>"

    def done(self) -> bool:
        """Whether the outcome is known (no waiting needed)."""
        return (self._record or self)._outcome is not None

    def result(self) -> Generation:
        """The outcome of a finished job, as `await job` gives it; raises if not done yet."""
        outcome = (self._record or self)._result()
        if outcome is None:
            raise JobPendingError(f"job {self.id} is still pending; await it first")
        return _unwrap(outcome)

    def __await__(self) -> Generator[Any, None, Generation]:
        # The common `await job` (the first caller, or the next one after it gave up): the
        # task awaits a plain future of its own (`Pending._waiter`), which the registry hands
        # the outcome as the job settles. Cancelling the task cancels that future, never the
        # job. A plain future, not a subclass: the task suspends on it and resumes from it
        # along asyncio's C paths, as a raw client's task does (a subclass that was its own
        # iterator saved an object per awaiting task but took 2.5x as long to resume: a
        # Python `__next__` raising StopIteration, and the task's slow path for subclasses).
        record = self._record or self
        waiter = record._waiter
        if record._outcome is None and (waiter is None or waiter.done()):
            waiter = record._waiter = asyncio.get_running_loop().create_future()
            return waiter.__await__()
        return self._settled()

    def _settled(self) -> Generator[Any, None, Generation]:
        """`await job` when it is done already, or another caller is awaiting it: `_Settled`
        inlined (one generator fewer per waiting caller)."""
        record = self._record or self
        if record._outcome is None:
            future = record._as_future()
            waiter = _Waiter(loop=future.get_loop())
            future.add_done_callback(waiter, context=_callback_context())
            try:
                yield from waiter.__await__()
            finally:
                future.remove_done_callback(waiter)  # nothing to remove once it ran
        outcome = record._result()
        assert outcome is not None  # its future is done once it settled
        return _unwrap(outcome)

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - a per-job deadline is the API's point
        *,
        cancel_on_timeout: bool = False,
    ) -> Generation:
        """Wait for the generation to finish.

        Args:
            timeout: Seconds to wait at most; None waits as long as it takes.
            cancel_on_timeout: When the timeout expires, cancel the generation remotely
                (`DELETE`) so it stops costing. If it finished in the meantime, its result is
                returned as usual.

        Raises:
            JobTimeout: the timeout expired (`.cancelled` says whether it was cancelled).
            GenerationFailed, GenerationCancelled: the generation ended without a result.
        """
        record = self._record or self
        outcome: Outcome | None = record._result()
        if outcome is not None:
            return _unwrap(outcome)
        try:
            # a caller giving up must not cancel the job's shared future (see `_Settled`)
            if timeout is None:
                outcome = await _Settled(record)
            else:
                async with asyncio.timeout(timeout):
                    outcome = await _Settled(record)
        except TimeoutError:
            if not cancel_on_timeout:
                raise JobTimeout(self.id, timeout or 0.0, cancelled=False) from None
            outcome = await self._owner.cancel(self.id)
            if isinstance(outcome, Generation) and outcome.status == "cancelled":
                raise JobTimeout(self.id, timeout or 0.0, cancelled=True) from None
        return _unwrap(outcome)

    async def cancel(self) -> Generation:
        """Cancel the generation remotely and settle the job with the server's truth.

        Returns the generation as the API has it afterwards: status "cancelled", or the
        terminal status it reached before the cancellation arrived.
        """
        outcome = await self._owner.cancel(self.id)
        if isinstance(outcome, OxeditError):
            raise outcome
        return outcome


class DerivedJob(Job):
    """A job of a client derived with `with_options`: its results are read through that
    client (its retry policy and timeouts), not through the client that settled them."""

    __slots__ = ()

    def _own(self, generation: Generation) -> Generation:
        return rebound(generation, cast("ResultReader", self._owner))

    def result(self) -> Generation:
        return self._own(super().result())

    def __await__(self) -> Generator[Any, None, Generation]:
        return self._own((yield from super().__await__()))

    async def wait(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - as `Job.wait`
        *,
        cancel_on_timeout: bool = False,
    ) -> Generation:
        return self._own(await super().wait(timeout, cancel_on_timeout=cancel_on_timeout))

    async def cancel(self) -> Generation:
        return self._own(await super().cancel())


def handed_out(created: Job, kept: Pending) -> Job:
    """The job to hand out for `created` once registered: `kept`, what the registry keeps
    under its id, is `created` itself, or a job followed already (then a view of it)."""
    if kept is created:
        return created
    return type(created)(created._owner, created.id, kept)


class AsCompleted:
    """Async iterator over jobs in completion order; creates no task, so leaving early leaves
    nothing behind (its callbacks are removed on exhaustion, `aclose()` or exit)."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        self._jobs = list(jobs)
        self._done: asyncio.Queue[Job] = asyncio.Queue()
        self._remaining = len(self._jobs)
        self._callbacks: list[tuple[asyncio.Future[None], Callable[[Any], None]]] = []
        for job in self._jobs:
            future = (job._record or job)._as_future()
            callback = self._make_callback(job)
            future.add_done_callback(callback)
            self._callbacks.append((future, callback))

    def _make_callback(self, job: Job) -> Callable[[Any], None]:
        return lambda _: self._done.put_nowait(job)

    def __aiter__(self) -> AsyncIterator[Job]:
        return self

    async def __anext__(self) -> Job:
        if self._remaining <= 0:
            self._detach()
            raise StopAsyncIteration
        try:
            job = await self._done.get()
        except BaseException:
            self._detach()
            raise
        self._remaining -= 1
        return job

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._detach()

    def _detach(self) -> None:
        for future, callback in self._callbacks:
            future.remove_done_callback(callback)
        self._callbacks.clear()
        self._remaining = 0

"""The one place where a job's outcome is decided.

Each pending generation id maps to its `Pending`, which is the job itself. `resolve` pops the
id and settles it, so a duplicate event, a late event, or a reconciliation that races an event is
ignored here, not at every caller. Events for ids not known yet are kept while an enqueue that
may still announce them is unanswered: the docs say an event can overtake the enqueue response
that announces its id.

Built to hold a million pending jobs: one object per pending job (the `Job` itself, its
outcome a value, a future made only for whoever needs one), checks found from structures
ordered by due time (a tick costs what is due, not what is pending), and foreign events
(other processes' jobs on the same account) dropped after decoding their id alone.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import TypeAlias

import msgspec

from .. import _constants as C
from .._clock import loop_clock
from .._config import ReconcilePolicy
from .._exceptions import ClientStateError, GenerationCancelled, GenerationFailed, OxeditError
from .._models import (
    TERMINAL_STATUSES,
    CompletionEvent,
    Generation,
    GenerationRow,
    ResultReader,
    event_decoder,
    event_id_decoder,
    generation_of_event,
    generation_of_row,
)
from .schedule import CheckSchedule

__all__ = ["COMPLETED", "Outcome", "Pending", "Registry", "error_of"]

log = logging.getLogger("oxedit")

COMPLETED = "media_generation_completed"  # the event type that settles a job

# A job ends with the generation (any terminal status) or with an error, delivered as a value:
# a future holding an exception nobody retrieved would be logged when collected.
Outcome: TypeAlias = Generation | OxeditError


class _Cohort(list[str]):
    """Jobs of one model and namespace registered within `C.COHORT_SPAN` s of each other.

    It holds what they share (their registration time, model, namespace, the reader of
    their results: one float for the cohort, not one per job) and, until their first check,
    the ids they were registered under, in registration order: each model's cohorts are due
    for a first check front to back. Ids, not the jobs: a settled job is freed as soon as its
    caller lets it go, however long the others registered with it stay pending.
    """

    __slots__ = ("at", "live", "model", "namespace", "reader")

    def __init__(
        self,
        at: float,
        model: str | None,
        namespace: str | None,
        reader: ResultReader | None,
    ) -> None:
        super().__init__()
        self.at = at  # loop time of the first registration
        self.model = model
        self.namespace = namespace  # the one they were billed to (None: the user's own)
        self.reader = reader
        self.live = 0  # members not settled yet; at 0 the list is emptied

    def leave(self) -> None:
        """A member settled: once none is left, the ids go."""
        self.live -= 1
        if not self.live:
            self.clear()


class Pending:
    """A generation this client is waiting for, as the registry keeps it: one object per job,
    and the job itself (`Job` is a `Pending`: `_engine.job`), so that a pending job costs one
    object, as a raw client's future does.

    Its registration time, model and namespace live on its cohort. Its outcome is a value,
    not a future's: a future is made only for whoever needs one (`Job.wait`, a second
    `await job`, `as_completed`); the first `await job` is woken through `_waiter`, which is
    handed the outcome. Settled by its completion event while nobody awaits it, it keeps the
    decoded event (which the garbage collector does not track) until the outcome is read
    (`_result`): 50,000 jobs settled before anyone awaits them leave nothing for a collection
    to promote.
    """

    __slots__ = ("_cohort", "_future", "_key", "_next", "_outcome", "_waiter")

    # The id the registry follows it under: the enqueued one, or the row it was retried as
    # after a kill & retry (`Job.id` keeps the enqueued one).
    _key: str
    _cohort: _Cohort
    # The bucket of `Registry._later` it is due in after its first check; None until then.
    _next: list[str] | None
    # The plain future the first `await job` waits on (`_engine.job`), given the outcome as
    # it settles (its result, or the error `await job` raises): its task resumes after one
    # loop callback, as one awaiting a raw client's future does. Cancelled (its caller gave
    # up), it stays until the job settles or the next `await job` replaces it.
    _waiter: asyncio.Future[Generation] | None
    _outcome: Outcome | CompletionEvent | None  # None while pending; read it with `_result`
    _future: asyncio.Future[None] | None  # done as it settles; made on first need

    def __init__(self) -> None:
        self._next = None
        self._waiter = None
        self._outcome = None
        self._future = None

    def _result(self) -> Outcome | None:
        """The outcome (None while pending); the generation a completion event settled it
        with is made on this first read."""
        outcome = self._outcome
        if isinstance(outcome, CompletionEvent):
            outcome = self._outcome = generation_of_event(outcome, self._cohort.reader)
        return outcome

    def _as_future(self) -> asyncio.Future[None]:
        """A future done as it settles (done already if it has), made on first need."""
        future = self._future
        if future is None:
            future = self._future = asyncio.get_running_loop().create_future()
            if self._outcome is not None:
                future.set_result(None)
        return future


def error_of(outcome: Outcome) -> OxeditError | None:
    """What `await job` raises for this outcome (None: it returns the generation)."""
    if isinstance(outcome, OxeditError):
        return outcome
    if outcome.status == "failed":
        return GenerationFailed(outcome.id, outcome.error)
    if outcome.status == "cancelled":
        return GenerationCancelled(outcome.id)
    return None


# What a job found due is marked with until it is filed again (`Registry.due`).
_DUE: list[str] = []


class Registry:
    def __init__(
        self,
        *,
        schedule: CheckSchedule | None = None,
        early_bytes: int = C.DEFAULT_MAX_EARLY_EVENT_BYTES,
        early_limit: int = C.EARLY_EVENT_LIMIT,
        known_ttl: float = C.KNOWN_ID_TTL,
        reader: ResultReader | None = None,
        on_settle: Callable[[str, Outcome, float], None] | None = None,
        on_foreign: Callable[[int], None] | None = None,
    ) -> None:
        # Called with how many events were dropped as no job of this client's: on arrival, or
        # when an early event no enqueue claimed leaves the buffer (`ClientStats.foreign_events`).
        self._on_foreign = on_foreign
        self.reader = reader  # what downloads the generations settled here (the client)
        loop = asyncio.get_running_loop()
        self._now = loop_clock(loop)  # the loop's clock
        self._call_soon = loop.call_soon
        # What the deferred part of settling runs in (`_account`): it reads no context
        # variable, and the registry's callbacks run one at a time on its loop.
        self._context = contextvars.Context()
        # Called once per settled job (the `settled` event hook): the id it was enqueued as,
        # its outcome, and the seconds since its registration.
        self._on_settle = on_settle
        self._pending: dict[str, Pending] = {}
        self.schedule = schedule or CheckSchedule(ReconcilePolicy())
        # Checks. First ones: each model's cohorts, oldest first (the front is due first,
        # whatever the model's latency teaches meanwhile). Later ones: buckets of jobs by the
        # tick their check falls in, and a heap of those ticks. Settled or rescheduled jobs
        # are skipped when their bucket comes up, never searched for.
        self._cohorts: dict[tuple[str | None, str | None], _Cohort] = {}
        self._fresh: dict[str | None, deque[_Cohort]] = {}
        self._later: dict[int, list[str]] = {}  # ids, as a cohort holds them
        self._ticks: list[int] = []
        # Ids this client enqueued that are not pending any more, so that a lost enqueue's
        # recovery never adopts them (pending ones are known from `_pending`). Two sets, the
        # older dropped every `known_ttl`: each id is kept at least that long, with no
        # timestamp per id.
        self._known: set[str] = set()
        self._known_old: set[str] = set()
        self._known_since = self._now()
        self._known_ttl = known_ttl
        self._moved: dict[str, str] = {}  # enqueued id -> the retried row followed now
        self._origins: dict[str, str] = {}  # ... and back
        # Early events: id -> the event's raw data, in arrival order, with `_early_runs`
        # saying which enqueues were in flight when each run of them came (see `keep_early`).
        self._early: dict[str, bytes] = {}
        self._early_order: deque[str] = deque()
        self._early_runs: deque[list[int]] = deque()  # [latest enqueue started, ids in run]
        self._early_size = 0
        self._early_bytes = early_bytes
        self._early_limit = early_limit
        self._ours = False  # the last event `events` read was about a job pending here
        self._started = 0  # enqueues started so far: the number of the latest
        self._flights: set[int] = set()  # the numbers of those in flight
        self._oldest = 0  # the lowest of them (while there is one)

    def __len__(self) -> int:
        return len(self._pending)

    def ids(self) -> list[str]:
        """The ids of every pending job (a copy: settling while iterating is safe)."""
        return list(self._pending)

    def route(self, generation_id: str) -> tuple[str | None, str | None] | None:
        """The model and namespace a pending job was enqueued with (None: not pending)."""
        pending = self._pending.get(generation_id)
        if pending is None:
            return None
        return pending._cohort.model, pending._cohort.namespace

    def billed_to(self, namespace: str | None) -> list[str]:
        """The ids of the pending jobs billed to `namespace` (None: the user's own)."""
        return [key for key, p in self._pending.items() if p._cohort.namespace == namespace]

    def is_early(self, generation_id: str) -> bool:
        """Whether an event for `generation_id` came before its enqueue's answer (kept)."""
        return generation_id in self._early

    def knows(self, generation_id: str) -> bool:
        return (
            generation_id in self._pending
            or generation_id in self._known
            or generation_id in self._known_old
        )

    def move(self, generation_id: str, successor: str) -> Pending | None:
        """Follow a pending job to the row that re-created it (kill & retry): it settles with
        that row's outcome, which says `retried_from`."""
        pending = self._pending.pop(generation_id, None)
        if pending is None:
            return None
        origin = self._origins.pop(generation_id, generation_id)
        pending._key = successor
        self._origins[successor] = origin
        self._moved[origin] = successor
        self._pending[successor] = pending
        self._remember(generation_id)
        # Due as a new job of its age would be (at once if past its first check).
        cohort = pending._cohort
        first = cohort.at + self.schedule.first_check(cohort.model)
        self._put(pending, max(first, self._now()))
        return pending

    def current(self, generation_id: str) -> str:
        """The id a job enqueued as `generation_id` is followed under now."""
        return self._moved.get(generation_id, generation_id)

    def claim(self, generation_id: str) -> None:
        """Mark an id as this client's without following it (no recovery may adopt it)."""
        self._remember(generation_id)

    def get(self, generation_id: str) -> Pending | None:
        return self._pending.get(generation_id)

    # -- enqueues in flight and early events ---------------------------------------------------

    def enqueue_started(self) -> int:
        """An enqueue starts: events for unknown ids are kept until it ends. Returns its
        number, for `enqueue_finished`."""
        number = self._started = self._started + 1
        flights = self._flights
        if not flights:
            self._oldest = number
        flights.add(number)
        return number

    def enqueue_finished(self, number: int) -> None:
        """The enqueue `number` ended: the events that only it could still claim go."""
        flights = self._flights
        flights.discard(number)
        if number == self._oldest and flights:
            # Found again only when the oldest ends: once in as many as are in flight.
            self._oldest = min(flights)
        if self._early_order:  # else nothing kept (every early event is in the order)
            self._evict_early()

    def early_size(self) -> tuple[int, int]:
        """Early events kept now, and the bytes they are counted as."""
        return len(self._early), self._early_size

    def event(self, data: bytes) -> bool:
        """A `media_generation_completed` event's data: settles its job (True), or is kept
        while an enqueue that may announce its id is unanswered, or dropped.

        Only the id is decoded until it matters: most events on a shared account are other
        processes' jobs. Raises `msgspec.DecodeError` / `ValidationError` when malformed.
        """
        generation_id = event_id_decoder.decode(data).generation_id
        pending = self._pending.get(generation_id)
        if pending is None:
            if self._flights:
                if generation_id not in self._early:
                    self._keep_early(generation_id, data)
            elif self._on_foreign is not None and not self.knows(generation_id):
                self._on_foreign(1)
            return False
        return self._resolve_event(event_decoder.decode(data))

    def events(self, datas: list[bytes]) -> int:
        """Several events' data, in arrival order (a chunk of the stream): each as `event`
        would take it, with what other processes' events cost per event done once for all
        of them (counting the dropped ones, accounting for the kept ones and evicting).

        A malformed event is logged and skipped. Returns how many were well-formed.

        While the events are this client's (the last one was), each is decoded whole at once
        rather than its id first and then whole: one decode, not two, for nearly every event
        of a client alone on its account. Once one is not, ids come first again (most events
        of an account shared with other processes are theirs).
        """
        decode, whole = event_id_decoder.decode, event_decoder.decode
        pending, early, order = self._pending, self._early, self._early_order
        foreign = kept = kept_bytes = malformed = 0
        ours = self._ours
        settled: list[Pending] = []
        for data in datas:
            try:
                event = None
                if ours:
                    try:  # noqa: SIM105 - `suppress()` would be two calls more per event
                        event = whole(data)
                    except (msgspec.DecodeError, msgspec.ValidationError):
                        pass  # read as any other below: by its id first
                generation_id = (event or decode(data)).generation_id
                if generation_id in pending:
                    ours = True
                    self._resolve_event(event or whole(data), settled)
                    continue
                ours = False
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                log.warning("ignoring a malformed %s event: %s", COMPLETED, exc)
                malformed += 1
                continue
            if generation_id in self._known or generation_id in self._known_old:
                continue  # ours, settled already: a duplicate or late event
            if not self._flights:
                foreign += 1
            elif generation_id not in early:
                early[generation_id] = data
                order.append(generation_id)
                kept += 1
                kept_bytes += len(data)
        self._ours = ours
        if settled:
            # The rest of settling them waits until the tasks woken above have run: this
            # callback is queued after their wake-ups (the chunk's last job is woken a
            # latency sample, a cohort count and a clock read per job earlier).
            self._call_soon(self._account, settled, self._now(), context=self._context)
        if foreign and self._on_foreign is not None:
            self._on_foreign(foreign)
        if kept:
            # Over the bounds for as long as this chunk is read at most: the oldest go now,
            # as they would have one by one (but for a duplicate, in the same chunk, of an
            # event they would have evicted meanwhile: not kept twice).
            self._kept_early(kept, kept_bytes)
        return len(datas) - malformed

    def _keep_early(self, generation_id: str, data: bytes) -> None:
        if generation_id in self._known or generation_id in self._known_old:
            return  # ours, settled already: a duplicate or late event
        self._early[generation_id] = data
        self._early_order.append(generation_id)
        self._kept_early(1, len(data))

    def _kept_early(self, count: int, size: int) -> None:
        """`count` events of `size` bytes in all were just added to the early buffer."""
        runs = self._early_runs
        if runs and runs[-1][0] == self._started:
            runs[-1][1] += count
        else:  # an enqueue started since the last one came: a new run
            runs.append([self._started, count])
        self._early_size += size + count * C.EARLY_EVENT_OVERHEAD
        if self._early_size > self._early_bytes or len(self._early) > self._early_limit:
            self._evict_early()  # what no enqueue in flight can claim goes when one ends

    def _evict_early(self) -> None:
        """Drop, oldest first, what no enqueue in flight can claim (all those in flight when
        it came have ended), then what exceeds the bounds."""
        flights, early, runs, order = (
            self._flights,
            self._early,
            self._early_runs,
            self._early_order,
        )
        if not flights:
            if early or order:
                if early and self._on_foreign is not None:
                    self._on_foreign(len(early))
                early.clear()
                order.clear()
                runs.clear()
                self._early_size = 0
            return
        oldest = self._oldest
        max_bytes, max_count = self._early_bytes, self._early_limit
        size = self._early_size
        overhead = C.EARLY_EVENT_OVERHEAD
        dropped = 0
        while runs and (runs[0][0] < oldest or len(early) > max_count or size > max_bytes):
            run = runs[0]
            data = early.pop(order.popleft(), None)
            if data is not None:  # else claimed meanwhile
                size -= len(data) + overhead
                dropped += 1
            run[1] -= 1
            if not run[1]:
                runs.popleft()
        self._early_size = size
        if dropped and self._on_foreign is not None:
            self._on_foreign(dropped)

    # -- registration and settling ---------------------------------------------------------------

    def add(
        self,
        generation_id: str,
        model: str | None = None,
        namespace: str | None = None,
        record: Pending | None = None,
    ) -> Pending:
        """Start waiting for `generation_id`; resolves at once if its event came first.

        `record`: the object to keep for it (a new `Job`; a bare `Pending` if None). Returns
        what is kept: the job already pending under that id, if there is one.
        """
        pending = self._pending.get(generation_id)
        if pending is not None:
            return pending
        now = self._now()
        route = (model, namespace)
        cohort = self._cohorts.get(route)
        if cohort is None or now - cohort.at >= C.COHORT_SPAN:
            cohort = self._cohorts[route] = _Cohort(now, model, namespace, self.reader)
            fresh = self._fresh.get(model)
            if fresh is None:
                fresh = self._fresh[model] = deque()
            fresh.append(cohort)
        pending = Pending() if record is None else record
        pending._key = generation_id
        pending._cohort = cohort
        cohort.append(generation_id)
        cohort.live += 1
        self._pending[generation_id] = pending
        if self._early:
            data = self._early.pop(generation_id, None)
            if data is not None:
                self._early_size -= len(data) + C.EARLY_EVENT_OVERHEAD
                try:
                    self.event(data)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    # Its check through the queue endpoints settles it instead.
                    log.warning("ignoring a malformed early event for %s: %s", generation_id, exc)
        return pending

    def resolve_row(self, row: GenerationRow) -> bool:
        """Settle a job from its queue row, when the row is terminal (every check that reads a
        row ends here); False when it was not pending or is still active."""
        return self.resolve(generation_of_row(row, self.reader))

    def resolve(self, outcome: Generation, *, event: bool = False) -> bool:
        """Settle a job from a terminal generation; False when it was not pending.

        `event`: the outcome came from a completion event, so its delay since registration
        is the model's latency.
        """
        if outcome.status not in TERMINAL_STATUSES:
            return False
        pending = self._pending.pop(outcome.id, None)
        if pending is None:
            return False
        if event:
            cohort = pending._cohort
            self.schedule.observe(cohort.model, self._now() - cohort.at)
        origin = self._origin(outcome.id)
        if origin != outcome.id:  # settled by the row it was retried as
            outcome = outcome.retried(origin)
        self._settle(pending, outcome, origin)
        return True

    def _resolve_event(self, event: CompletionEvent, settled: list[Pending] | None = None) -> bool:
        """`resolve` from a completion event: the generation it describes is made when the
        outcome is read (`Pending._result`) or handed to the waiting `await job`, unless a
        `settled` hook or a retried row needs it now.

        `settled`: where to leave the job for `_account` (`events` runs it once the woken
        tasks have); None: at once.
        """
        if event.status not in TERMINAL_STATUSES:
            return False
        if self._on_settle is not None or self._origins:
            return self.resolve(generation_of_event(event, self.reader), event=True)
        pending = self._pending.pop(event.generation_id, None)
        if pending is None:
            return False
        self._wake(pending, event)
        self._known.add(pending._key)  # at once: a duplicate in the same chunk is ours
        if settled is None:
            self._account([pending], self._now())
        else:
            settled.append(pending)
        return True

    def _account(self, settled: list[Pending], at: float) -> None:
        """What settling jobs by their events leaves once they are woken: each one's delay
        since registration (as of `at`, when its event was read) is a latency sample of its
        model, and it leaves its cohort."""
        observe = self.schedule.observe
        for pending in settled:
            cohort = pending._cohort
            observe(cohort.model, at - cohort.at)
            cohort.leave()
        self._turn_known(at)

    def fail(self, generation_id: str, error: OxeditError) -> bool:
        """Settle a job with an error (expired row, client closed, fatal stream error)."""
        pending = self._pending.pop(generation_id, None)
        if pending is None:
            return False
        self._settle(pending, error, self._origin(generation_id))
        return True

    def _origin(self, generation_id: str) -> str:
        """The id a job settling as `generation_id` was enqueued as (forgetting the move)."""
        if not self._origins:
            return generation_id
        origin = self._origins.pop(generation_id, None)
        if origin is None:
            return generation_id
        self._moved.pop(origin, None)
        return origin

    def _settle(self, pending: Pending, outcome: Outcome, origin: str) -> None:
        """Settle a job just popped from the pending ones (so this runs once per job,
        whatever duplicates or races come after); `_resolve_event` does the same in two
        steps, `_wake` and `_account`."""
        self._wake(pending, outcome)
        cohort = pending._cohort
        cohort.leave()
        self._remember(pending._key)
        if self._on_settle is not None:
            self._on_settle(origin, outcome, self._now() - cohort.at)

    def _wake(self, pending: Pending, outcome: Outcome | CompletionEvent) -> None:
        """Hand a job just popped from the pending ones its outcome, and wake whoever awaits
        it. `outcome` is an event only when no `settled` hook is set (`_resolve_event`)."""
        waiter = pending._waiter
        if waiter is not None and isinstance(outcome, CompletionEvent):
            # Awaited: what it resumes with is made now, and handed to the waiter.
            outcome = generation_of_event(outcome, pending._cohort.reader)
        pending._outcome = outcome
        future = pending._future
        if future is not None and not future.done():
            future.set_result(None)
        if waiter is not None:
            pending._waiter = None  # a settled job keeps no waiter alive
            if not waiter.done():  # else cancelled: its caller gave up
                if isinstance(outcome, Generation) and outcome.status == "succeeded":
                    waiter.set_result(outcome)  # nearly every job
                else:
                    assert not isinstance(outcome, CompletionEvent)  # made above
                    error = error_of(outcome)  # failed, cancelled, or an error
                    assert error is not None  # only a terminal generation settles a job
                    waiter.set_exception(error)

    def fail_closed(self) -> None:
        """The client closed: each pending job ends with an error naming its id."""
        for generation_id in list(self._pending):
            self.fail(
                generation_id,
                ClientStateError(
                    f"the client was closed while generation {generation_id} was pending; it "
                    f"may still run remotely: follow it with client.job({generation_id!r}) in "
                    "a new client",
                    generation_ids=(generation_id,),
                ),
            )

    def fail_all(self, error: OxeditError) -> int:
        ids = list(self._pending)
        for generation_id in ids:
            self.fail(generation_id, error)
        return len(ids)

    # -- checks ----------------------------------------------------------------------------------

    def due(self) -> list[str]:
        """The ids of the pending jobs due for a check through the queue endpoints (see
        `CheckSchedule`).

        Costs what is due, not what is pending. Each job returned is rescheduled at once as if
        found still active now (`checked` after the check sets it again), so no job ever
        drops out of the schedule, whatever happens to its check.
        """
        now = self._now()
        found: list[Pending] = []
        pending = self._pending
        first = self.schedule.first_check
        for model, cohorts in self._fresh.items():
            if not cohorts:
                continue
            limit = now - first(model)
            while cohorts and cohorts[0].at <= limit:
                cohort = cohorts.popleft()
                if self._cohorts.get((cohort.model, cohort.namespace)) is cohort:
                    del self._cohorts[(cohort.model, cohort.namespace)]
                for key in cohort:
                    p = pending.get(key)
                    if p is not None and p._next is None and p._cohort is cohort:
                        p._next = _DUE  # found once, whatever its id's repeats
                        found.append(p)
                cohort.clear()
        ticks = self._ticks
        if ticks:
            tick = math.floor(now / self.schedule.tick)
            while ticks and ticks[0] <= tick:
                bucket = self._later.pop(heapq.heappop(ticks))
                for key in bucket:
                    p = pending.get(key)
                    if p is not None and p._next is bucket:
                        p._next = _DUE  # so that `_put` below files it again
                        found.append(p)
        for p in found:
            self._recheck(p, now)
        return [p._key for p in found]

    def checked(self, generation_id: str) -> None:
        """The queue says the job is still active (or could not say): schedule its next check
        from its age."""
        pending = self._pending.get(generation_id)
        if pending is not None:
            self._recheck(pending, self._now())

    def due_at(self, generation_id: str) -> float | None:
        """Loop time of the job's next check, to a reconcile tick (None: not pending)."""
        pending = self._pending.get(generation_id)
        if pending is None:
            return None
        if pending._next is None:
            cohort = pending._cohort
            return cohort.at + self.schedule.first_check(cohort.model)
        for tick, bucket in self._later.items():
            if bucket is pending._next:
                return tick * self.schedule.tick
        raise AssertionError("a scheduled job is in no bucket")  # pragma: no cover

    def _recheck(self, pending: Pending, now: float) -> None:
        cohort = pending._cohort
        self._put(pending, self.schedule.next_due(born=cohort.at, now=now, model=cohort.model))

    def _put(self, pending: Pending, due: float) -> None:
        # The bucket of the tick `due` falls in: found at most one tick early, never late.
        tick = math.floor(due / self.schedule.tick)
        bucket = self._later.get(tick)
        if bucket is None:
            bucket = self._later[tick] = []
            heapq.heappush(self._ticks, tick)
        if pending._next is not bucket:
            pending._next = bucket
            bucket.append(pending._key)

    def _remember(self, generation_id: str) -> None:
        self._turn_known(self._now())
        self._known.add(generation_id)

    def _turn_known(self, now: float) -> None:
        """Every `known_ttl`, the older known ids go and the newer become the older."""
        if now - self._known_since >= self._known_ttl:
            self._known_old, self._known = self._known, set()
            self._known_since = now

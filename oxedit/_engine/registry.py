"""The one place where a job's outcome is decided.

Each pending generation id maps to a future. `resolve` pops the id and sets the future, so a
duplicate event, a late event, or a reconciliation that races an event is ignored here, not at
every caller. Events for ids not known yet are kept for a while: the docs say an event can
overtake the enqueue response that announces its id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TypeAlias

from .. import _constants as C
from .._config import ReconcilePolicy
from .._exceptions import ClientStateError, OxeditError
from .._models import TERMINAL_STATUSES, Generation, ResultReader
from .schedule import CheckSchedule

__all__ = ["Outcome", "Pending", "Registry"]

# A job ends with the generation (any terminal status) or with an error, delivered as a value:
# a future holding an exception nobody retrieved would be logged when collected.
Outcome: TypeAlias = Generation | OxeditError


class Pending:
    """A generation this client is waiting for."""

    __slots__ = ("born", "due", "future", "id", "model", "namespace", "origin")

    def __init__(
        self,
        generation_id: str,
        future: asyncio.Future[Outcome],
        born: float,
        model: str | None,
        namespace: str | None,
    ) -> None:
        self.id = generation_id
        self.future = future
        self.born = born  # loop time of its registration (its enqueue response)
        self.model = model
        self.namespace = namespace  # the one it was billed to (None: the user's own)
        # The id it was enqueued as, once followed to a row retried from it (kill & retry).
        self.origin: str | None = None
        # When to ask the queue endpoints about it if no event came by then; 0 until its first
        # check, which depends on the model's latency as learned meanwhile.
        self.due = 0.0


class Registry:
    def __init__(
        self,
        *,
        early_ttl: float,
        schedule: CheckSchedule | None = None,
        early_limit: int = C.EARLY_EVENT_LIMIT,
        known_ttl: float = C.KNOWN_ID_TTL,
        reader: ResultReader | None = None,
        on_settle: Callable[[str, Outcome, float], None] | None = None,
    ) -> None:
        self.reader = reader  # what downloads the generations settled here (the client)
        self._loop = asyncio.get_running_loop()
        # Called once per settled job (the `settled` event hook): the id it was enqueued as,
        # its outcome, and the seconds since its registration.
        self._on_settle = on_settle
        self._pending: dict[str, Pending] = {}
        # Ids this client enqueued lately (pending or not), so that a lost enqueue's recovery
        # never adopts them; older ones are forgotten, keeping a long-lived client bounded.
        self._known: dict[str, float] = {}
        self._known_ttl = known_ttl
        self.schedule = schedule or CheckSchedule(ReconcilePolicy())
        self._early: dict[str, tuple[float, Generation]] = {}  # insertion order = arrival order
        self._early_ttl = early_ttl
        self._early_limit = early_limit
        self._enqueues_in_flight = 0
        self._moved: dict[str, str] = {}  # enqueued id -> the retried row followed now

    def __len__(self) -> int:
        return len(self._pending)

    def __iter__(self) -> Iterator[Pending]:
        return iter(list(self._pending.values()))

    def is_early(self, generation_id: str) -> bool:
        """Whether an event for `generation_id` came before its enqueue's answer (kept)."""
        return generation_id in self._early

    def knows(self, generation_id: str) -> bool:
        return generation_id in self._known or generation_id in self._pending

    def move(self, generation_id: str, successor: str) -> Pending | None:
        """Follow a pending job to the row that re-created it (kill & retry): it settles with
        that row's outcome, which says `retried_from`."""
        pending = self._pending.pop(generation_id, None)
        if pending is None:
            return None
        origin = pending.origin or generation_id
        pending.id, pending.origin, pending.due = successor, origin, 0.0
        self._moved[origin] = successor
        self._pending[successor] = pending
        self._remember(successor, self._loop.time())
        return pending

    def current(self, generation_id: str) -> str:
        """The id a job enqueued as `generation_id` is followed under now."""
        return self._moved.get(generation_id, generation_id)

    def claim(self, generation_id: str) -> None:
        """Mark an id as this client's without following it (no recovery may adopt it)."""
        self._remember(generation_id, self._loop.time())

    def get(self, generation_id: str) -> Pending | None:
        return self._pending.get(generation_id)

    def enqueue_started(self) -> None:
        self._enqueues_in_flight += 1

    def enqueue_finished(self) -> None:
        self._enqueues_in_flight -= 1
        if not self._enqueues_in_flight:
            self._early.clear()  # nothing can claim them any more

    def add(
        self, generation_id: str, model: str | None = None, namespace: str | None = None
    ) -> Pending:
        """Start waiting for `generation_id`; resolves at once if its event came first."""
        pending = self._pending.get(generation_id)
        if pending is not None:
            return pending
        now = self._loop.time()
        self._remember(generation_id, now)
        pending = Pending(generation_id, self._loop.create_future(), now, model, namespace)
        self._pending[generation_id] = pending
        early = self._early.pop(generation_id, None)
        if early is not None:
            self.resolve(early[1])
        return pending

    def resolve(self, outcome: Generation, *, event: bool = False) -> bool:
        """Settle a job from a terminal generation; False when it was not pending.

        An event for an id not known (yet) is kept while an enqueue is in flight, so the
        enqueue response that follows can claim it. `event`: the outcome came from a
        completion event, so its delay since registration is the model's latency.
        """
        if outcome.status not in TERMINAL_STATUSES:
            return False
        pending = self._pending.pop(outcome.id, None)
        if pending is None:
            if self._enqueues_in_flight and outcome.id not in self._known:
                self._keep_early(outcome)
            return False
        if event:
            self.schedule.observe(pending.model, self._loop.time() - pending.born)
        if pending.origin is not None:  # settled by the row it was retried as
            self._moved.pop(pending.origin, None)
            outcome = outcome.retried(pending.origin)
        self._settle(pending, outcome)
        return True

    def fail(self, generation_id: str, error: OxeditError) -> bool:
        """Settle a job with an error (expired row, client closed, fatal stream error)."""
        pending = self._pending.pop(generation_id, None)
        if pending is None:
            return False
        self._settle(pending, error)
        return True

    def _settle(self, pending: Pending, outcome: Outcome) -> None:
        """The one place a job settles: it was just popped from the pending ones, so this
        runs once per job, whatever duplicates or races come after."""
        if not pending.future.done():
            pending.future.set_result(outcome)
        if self._on_settle is not None:
            self._on_settle(pending.origin or pending.id, outcome, self._loop.time() - pending.born)

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

    def due(self) -> list[Pending]:
        """Pending jobs due for a check through the queue endpoints (see `CheckSchedule`)."""
        now = self._loop.time()
        first = self.schedule.first_check
        return [p for p in self._pending.values() if (p.due or p.born + first(p.model)) <= now]

    def checked(self, generation_id: str) -> None:
        """The queue says the job is still active (or could not say): schedule its next check
        from its age."""
        pending = self._pending.get(generation_id)
        if pending is not None:
            pending.due = self.schedule.next_due(
                born=pending.born, now=self._loop.time(), model=pending.model
            )

    def _remember(self, generation_id: str, now: float) -> None:
        known = self._known
        known[generation_id] = now
        cutoff = now - self._known_ttl
        while known:
            oldest_id, added = next(iter(known.items()))
            if added > cutoff:
                break
            del known[oldest_id]

    def _keep_early(self, outcome: Generation) -> None:
        now = self._loop.time()
        early = self._early
        early.pop(outcome.id, None)
        early[outcome.id] = (now, outcome)
        # Oldest first: drop what has outlived any enqueue that could claim it, or the excess.
        cutoff = now - self._early_ttl
        while early:
            oldest_id, (arrived, _) = next(iter(early.items()))
            if arrived > cutoff and len(early) <= self._early_limit:
                break
            del early[oldest_id]

"""The one shared event stream, and the reconciliation that covers what it cannot see.

One task holds `GET /api/events` open and resolves jobs from `media_generation_completed`
events. The API replays nothing, so whenever the stream (re)connects, every job still pending is
reconciled through the queue endpoints; the same path checks each pending job as it ages with no
event (cancellations have none, and an event can be lost), on the schedule of `CheckSchedule`.
Neither task ever dies of an error: a failed check is logged and the job checked again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from .. import _constants as C
from .._config import ReconcilePolicy
from .._exceptions import (
    AuthenticationError,
    ClientStateError,
    GenerationExpired,
    NotFoundError,
    OxeditError,
    PermissionDeniedError,
    TransportError,
)
from .._http.api import Api
from .._http.retry import backoff
from .._http.sse import DropWarnings, SSEDecoder
from .._models import TERMINAL_STATUSES, Generation, GenerationRow, event_decoder
from .reconcile_cost import ReconcileCost
from .registry import Pending, Registry

__all__ = ["Listener"]

log = logging.getLogger("oxedit")

COMPLETED = "media_generation_completed"


class Listener:
    def __init__(
        self, api: Api, registry: Registry, policy: ReconcilePolicy, *, max_event_bytes: int
    ) -> None:
        self._api = api
        self._registry = registry
        self._policy = policy
        self._max_event_bytes = max_event_bytes
        self._drops = DropWarnings(max_event_bytes)  # one throttle across reconnects
        self._cost = ReconcileCost()  # per-id GETs or a list, by the bytes each costs
        self.epoch = 0  # increments on every confirmed (re)connection
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._fatal: OxeditError | None = None
        self._last_error: OxeditError | None = None
        # Consecutive connections that failed, or answered and died before they were healthy.
        self._failures = 0
        self._attempt = 0
        self._refused_since: float | None = None
        self._recheck: set[str] = set()
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        """Open now, and not in a streak of connections that died before they were healthy
        (then `ready()` decides)."""
        return self._connected.is_set() and self._failures <= self._api.retry.max_retries

    def start(self) -> None:
        if not self._tasks and self._fatal is None:
            self._tasks = [
                asyncio.create_task(self._stream_forever(), name="oxedit-events"),
                asyncio.create_task(self._reconcile_forever(), name="oxedit-reconcile"),
            ]

    async def ready(self) -> int:
        """Wait until the stream is open and confirmed; returns its epoch.

        Raises the stream's error when it failed for good (401/403 on the first connection,
        the client closed), or when more connections in a row than the retry policy allows
        failed or died before they were healthy (a byte, or a keep-alive period); it keeps
        trying in the background, and a healthy connection ends the streak.
        """
        self.start()
        while True:
            if self._fatal is not None:
                raise self._fatal
            if self._last_error is not None and self._failures > self._api.retry.max_retries:
                raise self._last_error
            if self._connected.is_set():
                return self.epoch
            await self._changed.wait()

    def follow(
        self,
        generation_id: str,
        sent_epoch: int,
        model: str | None = None,
        namespace: str | None = None,
    ) -> Pending:
        """Start waiting for a generation whose POST was sent while the stream was at
        `sent_epoch` (-1: unknown, so it is reconciled at once)."""
        if self._registry.is_early(generation_id):  # counted as another process's on arrival
            self._api.stats.foreign_events -= 1
        pending = self._registry.add(generation_id, model, namespace)
        self.vouch(generation_id, sent_epoch)
        return pending

    def vouch(self, generation_id: str, sent_epoch: int) -> None:
        """Called when a job is registered: if the stream was down at any moment since its
        POST was sent, its event may be lost, so it is reconciled once the stream is back."""
        if sent_epoch != self.epoch or not self._connected.is_set():
            self._recheck.add(generation_id)
            self._kick.set()

    async def close(self) -> None:
        """Stop both tasks; a `ready()` waiting now or later raises `ClientStateError`."""
        if self._fatal is None:
            self._fatal = ClientStateError(
                "the client was closed while waiting for the event stream; nothing was sent"
            )
        self._connected.clear()
        self._notify()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # close() itself was cancelled
            except Exception:  # a bug: it must not keep close() from closing the sessions
                log.exception("background task %s failed", task.get_name())
        self._drops.flush()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _stream_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            healthy = False
            error: OxeditError
            try:
                async with self._api.transport.stream("/api/events") as chunks:
                    self._on_connected()
                    opened = loop.time()
                    decoder = SSEDecoder(
                        max_event_bytes=self._max_event_bytes, warnings=self._drops
                    )
                    async for chunk in chunks:
                        if not healthy:
                            healthy = True
                            self._on_healthy()
                        for event in decoder.feed(chunk):
                            if event.event == COMPLETED:
                                self._on_completed(event.data)
                    if not healthy and loop.time() - opened >= C.STREAM_HEALTHY_AFTER:
                        healthy = True
                        self._on_healthy()
                error = TransportError("the event stream ended")
                log.info("event stream ended; reconnecting")
            except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
                if self._refused_for_good(loop.time()):
                    log.error("event stream refused: %s", exc)
                    self._fatal = exc
                    self._connected.clear()
                    self._registry.fail_all(exc)
                    self._notify()
                    return
                log.warning("event stream refused on a reconnect: %s; retrying", exc)
                error = exc
            except OxeditError as exc:
                log.info("event stream lost: %s; reconnecting", exc)
                error = exc
            except Exception as exc:  # a bug must not end the stream for every job
                log.exception("event stream failed unexpectedly; reconnecting")
                error = OxeditError(f"event stream failed: {exc!r}")
            self._last_error = error
            self._connected.clear()
            self._failures += 1
            self._notify()
            await asyncio.sleep(
                backoff(
                    self._attempt,
                    initial=C.RECONNECT_BACKOFF_INITIAL,
                    maximum=C.RECONNECT_BACKOFF_MAX,
                )
            )
            self._attempt += 1

    def _refused_for_good(self, now: float) -> bool:
        """A refusal of the first connection is final; one of a reconnect (the key worked a
        moment ago) only once refusals went on for `refused_stream_grace` seconds."""
        if self.epoch == 0:
            return True
        if self._refused_since is None:
            self._refused_since = now
        return now - self._refused_since >= self._policy.refused_stream_grace

    def _on_connected(self) -> None:
        self.epoch += 1
        self._api.stats.event_connections += 1
        if self.epoch > 1:
            # Nothing fired while we were away is replayed: ask the queue about every job.
            self._recheck.update(p.id for p in self._registry)
            self._kick.set()
        self._connected.set()
        self._notify()

    def _on_healthy(self) -> None:
        self._failures = 0
        self._attempt = 0
        self._refused_since = None
        self._last_error = None

    def _on_completed(self, data: bytes) -> None:
        try:
            event = event_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring a malformed %s event: %s", COMPLETED, exc)
            return
        stats = self._api.stats
        stats.events += 1
        registry = self._registry
        resolved = registry.resolve(Generation.from_event(event, registry.reader), event=True)
        if not resolved and not registry.knows(event.generation_id):
            # Another process's, or this one's ahead of its enqueue's answer (kept a moment):
            # then `follow` takes it back.
            stats.foreign_events += 1

    async def _reconcile_forever(self) -> None:
        registry = self._registry
        tick = registry.schedule.tick
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._kick.wait()
            self._kick.clear()
            ids, self._recheck = self._recheck, set()
            ids.update(p.id for p in registry.due())
            ids = {i for i in ids if registry.get(i) is not None}
            if not ids:
                continue
            try:
                await self.reconcile(ids)
            except asyncio.CancelledError:
                raise
            except Exception:  # never die: every lost event after this would hang its job
                log.exception("could not reconcile %d pending job(s); will retry", len(ids))
                for generation_id in ids:
                    registry.checked(generation_id)

    async def reconcile(self, ids: set[str]) -> None:
        """Settle every id in `ids` whose row is terminal; reschedule those still active.

        Many ids are checked with one list per namespace they were billed to (the list shows
        only the user's own unless asked). A failed request is logged and its ids are checked
        again later, never raised.
        """
        registry = self._registry
        stats = self._api.stats
        cost = self._cost
        todo = set(ids)
        by_namespace: dict[str | None, set[str]] = {}
        for generation_id in ids:
            if (pending := registry.get(generation_id)) is not None:
                by_namespace.setdefault(pending.namespace, set()).add(generation_id)
        for namespace, here in by_namespace.items():
            # Not worth it even if the list held only these ids: no pass over every pending
            # job (there may be 50,000) to count the namespace's.
            if not cost.use_list(namespace, len(here), len(here)):
                continue
            pendings = [p for p in registry if p.namespace == namespace]
            if not cost.use_list(namespace, len(here), len(pendings)):
                continue
            stats.poll_requests += 1
            before = stats.bytes_received
            try:
                rows = await self._api.list_rows(namespace=namespace)
            except OxeditError as exc:
                log.warning("could not list the queue to reconcile: %s", exc)
                for generation_id in here:
                    registry.checked(generation_id)
                todo -= here
                continue
            cost.listed(namespace, len(rows), stats.bytes_received - before)
            active = {row.generation_id for row in rows}
            cost.found_active(len(here), len(here & active))
            # The list vouches for every pending job in it, due or not: it cost the same.
            for pending in pendings:
                if pending.id in active:
                    registry.checked(pending.id)
            todo -= active
        queue = list(todo)
        cancelled: list[GenerationRow] = []

        async def worker() -> None:
            while queue:
                generation_id = queue.pop()
                if registry.get(generation_id) is None:
                    continue  # an event settled it meanwhile
                stats.poll_requests += 1
                try:
                    row = await self._api.get_row(generation_id)
                except NotFoundError:
                    registry.fail(generation_id, GenerationExpired(generation_id))
                    continue
                except Exception as exc:  # logged, and checked again later; never fatal
                    log.warning("could not check generation %s: %s", generation_id, exc)
                    registry.checked(generation_id)
                    continue
                if row.status == "cancelled":
                    cancelled.append(row)  # it may have been re-created: see below
                elif row.status in TERMINAL_STATUSES:
                    registry.resolve(Generation.from_row(row, registry.reader))
                else:
                    registry.checked(generation_id)

        fetched, before, settled = len(queue), stats.bytes_received, len(registry)
        await asyncio.gather(*(worker() for _ in range(min(C.RECONCILE_CONCURRENCY, len(queue)))))
        if fetched:
            cost.fetched(fetched, stats.bytes_received - before)
            cost.found_active(fetched, fetched - (settled - len(registry)) - len(cancelled))
        if cancelled:
            await self._follow_retries(cancelled)

    async def _follow_retries(self, cancelled: list[GenerationRow]) -> None:
        """Settle cancelled rows, unless a row was re-created from one (kill & retry: its
        `retried_from_id` names it): then follow that row. One set of lists serves every
        cancelled row of a (model, namespace): active rows first, since a retry is new."""
        registry = self._registry
        for _ in range(C.MAX_RETRY_HOPS):  # a retry may be retried in turn
            successors: dict[str, GenerationRow] = {}
            groups: dict[tuple[str | None, str | None], set[str]] = {}
            for row in cancelled:
                pending = registry.get(row.generation_id)
                namespace = pending.namespace if pending is not None else None
                groups.setdefault((row.model_name or row.model, namespace), set()).add(
                    row.generation_id
                )
            for (model, namespace), wanted in groups.items():
                for status in (None, "succeeded", "failed", "cancelled"):
                    self._api.stats.poll_requests += 1
                    try:
                        rows = await self._api.list_rows(
                            status=status, model=model, namespace=namespace
                        )
                    except OxeditError as exc:
                        log.warning("could not look for retried generations: %s", exc)
                        for generation_id in wanted:
                            registry.checked(generation_id)  # asked again at its next check
                        cancelled = [r for r in cancelled if r.generation_id not in wanted]
                        break
                    for other in rows:
                        if other.retried_from_id in wanted:
                            successors[other.retried_from_id] = other
                    if wanted <= successors.keys():
                        break
            again = []
            for row in cancelled:
                successor = successors.get(row.generation_id)
                if successor is None:
                    registry.resolve(Generation.from_row(row, registry.reader))
                    continue
                registry.move(row.generation_id, successor.generation_id)
                log.info(
                    "generation %s was retried as %s", row.generation_id, successor.generation_id
                )
                if successor.status == "cancelled":
                    again.append(successor)
                elif successor.status in TERMINAL_STATUSES:
                    registry.resolve(Generation.from_row(successor, registry.reader))
                else:
                    registry.checked(successor.generation_id)
            if not again:
                return
            cancelled = again
        for row in cancelled:
            registry.resolve(Generation.from_row(row, registry.reader))

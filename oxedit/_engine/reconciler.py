"""Reconciliation: what the event stream cannot see, asked of the queue endpoints.

The API replays no event, has none for cancellations, and an event can be lost. So every job
still pending when the stream (re)connects, and every job that ages with no event (on the
schedule of `CheckSchedule`), is checked through `GET /api/ai/queue` (one list per namespace,
when that costs fewer bytes) and `GET /api/ai/queue/{id}`. A row cancelled by a kill & retry is
followed to the row that replaced it. The task never dies of an error: a failed check is logged
and the job checked again later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from .. import _constants as C
from .._exceptions import GenerationExpired, NotFoundError, OxeditError
from .._http.api import Api
from .._models import TERMINAL_STATUSES, GenerationRow
from .reconcile_cost import ReconcileCost
from .registry import Registry

__all__ = ["Reconciler", "stop"]

log = logging.getLogger("oxedit")


class Reconciler:
    """Checks pending jobs through the queue endpoints: those the stream asks about
    (`recheck`, after a reconnect or an enqueue that straddled a gap) and those due."""

    def __init__(self, api: Api, registry: Registry) -> None:
        self._api = api
        self._registry = registry
        self._cost = ReconcileCost()  # per-id GETs or a list, by the bytes each costs
        self._recheck: set[str] = set()
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._reconcile_forever(), name="oxedit-reconcile")

    def recheck(self, ids: Iterable[str]) -> None:
        """Check these jobs at the next round, now rather than at their scheduled time."""
        self._recheck.update(ids)
        self._kick.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        await stop(task)

    async def _reconcile_forever(self) -> None:
        registry = self._registry
        tick = registry.schedule.tick
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(tick):
                    await self._kick.wait()
            self._kick.clear()
            ids, self._recheck = self._recheck, set()
            ids.update(registry.due())
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
            if (route := registry.route(generation_id)) is not None:
                by_namespace.setdefault(route[1], set()).add(generation_id)
        for namespace, here in by_namespace.items():
            # Not worth it even if the list held only these ids: no pass over every pending
            # job (there may be 50,000) to count the namespace's.
            if not cost.use_list(namespace, len(here), len(here)):
                continue
            pendings = registry.billed_to(namespace)
            if not cost.use_list(namespace, len(here), len(pendings)):
                continue
            stats.count_poll()
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
            for generation_id in pendings:
                if generation_id in active:
                    registry.checked(generation_id)
            todo -= active
        queue = list(todo)
        cancelled: list[GenerationRow] = []

        async def worker() -> None:
            while queue:
                generation_id = queue.pop()
                if registry.get(generation_id) is None:
                    continue  # an event settled it meanwhile
                stats.count_poll()
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
                    registry.resolve_row(row)
                else:
                    registry.checked(generation_id)

        fetched, before, settled = len(queue), stats.bytes_received, len(registry)
        await asyncio.gather(*(worker() for _ in range(min(C.RECONCILE_CONCURRENCY, len(queue)))))
        if fetched:
            cost.fetched(fetched, stats.bytes_received - before)
            cost.found_active(fetched, fetched - (settled - len(registry)) - len(cancelled))
        if cancelled:
            await self._follow_kills_and_retries(cancelled)

    async def _follow_kills_and_retries(self, cancelled: list[GenerationRow]) -> None:
        """Settle cancelled rows, unless a row was re-created from one (kill & retry: its
        `retried_from_id` names it): then follow that row. One set of lists serves every
        cancelled row of a (model, namespace): active rows first, since a retry is new."""
        registry = self._registry
        for _ in range(C.MAX_RETRY_HOPS):  # a retry may be retried in turn
            successors: dict[str, GenerationRow] = {}
            groups: dict[tuple[str | None, str | None], set[str]] = {}
            for row in cancelled:
                route = registry.route(row.generation_id)
                namespace = route[1] if route is not None else None
                groups.setdefault((row.model_name or row.model, namespace), set()).add(
                    row.generation_id
                )
            for (model, namespace), wanted in groups.items():
                for status in (None, "succeeded", "failed", "cancelled"):
                    self._api.stats.count_poll()
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
                    registry.resolve_row(row)
                    continue
                registry.move(row.generation_id, successor.generation_id)
                log.info(
                    "generation %s was retried as %s", row.generation_id, successor.generation_id
                )
                if successor.status == "cancelled":
                    again.append(successor)
                elif successor.status in TERMINAL_STATUSES:
                    registry.resolve_row(successor)
                else:
                    registry.checked(successor.generation_id)
            if not again:
                return
            cancelled = again
        for row in cancelled:
            registry.resolve_row(row)


async def stop(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task of the engine and wait for it to end; a failure of its own is
    logged (it must not keep the client from closing its sessions), a cancellation of the
    caller's own goes on."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise  # the caller itself was cancelled
    except Exception:
        log.exception("background task %s failed", task.get_name())

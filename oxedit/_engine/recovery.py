"""Finding the rows a POST created when its answer never came (no idempotency key exists).

Rows echo the request's parameters, so a row that matches the request, was enqueued while
that POST could have been acted on, and is claimed by no other request of this client is
taken to be its. Identical requests still waiting for their own answers would make rows that
cannot be told apart, so a search waits for them to settle first, and searches for one body
run one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from .. import _constants as C
from .._config import ReconcilePolicy
from .._exceptions import (
    AmbiguousRequestError,
    ClientStateError,
    NotFoundError,
    OxeditError,
)
from .._http.api import Api
from .._resources.history import raw_history_page
from .._resources.inputs import QUEUE_PARAMS
from .registry import Registry

__all__ = ["Recovery", "matches_request"]

log = logging.getLogger("oxedit")

_FINISHED_STATUSES = ("succeeded", "failed", "cancelled")


def history_pages() -> Iterator[tuple[int, int]]:
    """`(page, page_size)` reading the history from its newest row on, each page twice the
    size of the last (up to `RECOVERY_MAX_PAGE_SIZE`) and starting where the last ended."""
    size = C.RECOVERY_FIRST_PAGE_SIZE
    read = 0
    while True:
        if read and size < C.RECOVERY_MAX_PAGE_SIZE and read % (2 * size) == 0:
            size *= 2
        yield read // size + 1, size
        read += size


def _is_users(row: dict[str, Any], model: str) -> bool:
    """A history row of `model` billed to the user (no organisation echoed)."""
    return (row.get("model_name") or row.get("model")) == model and not row.get("target_namespace")


def matches_request(row: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Whether a queue row could have been created by this request body.

    The API echoes the request parameters at top level; parameters it does not echo cannot
    disagree, so only the ones present are compared.
    """
    if (row.get("model_name") or row.get("model")) != payload["model"]:
        return False
    for key, value in payload.items():
        if key == "model" or key in QUEUE_PARAMS:
            continue
        if key in row and row[key] != value:
            return False
    return True


def _enqueue_order(row: dict[str, Any]) -> tuple[float, str]:
    return (row.get("enqueued_at") or 0, row["generation_id"])


def _matching(
    rows: list[dict[str, Any]],
    payload: dict[str, Any],
    window: tuple[float, float],
    taken: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """The rows, oldest first, that this request may have created and nobody has claimed:
    enqueued within `window` (Unix times: when it was sent, and when its answer was due), give
    or take the clocks' disagreement."""
    found = []
    earliest, latest = window[0] - C.CLOCK_SLACK, window[1] + C.CLOCK_SLACK
    for row in rows:
        generation_id = row.get("generation_id")
        if not isinstance(generation_id, str) or taken(generation_id):
            continue
        enqueued = row.get("enqueued_at")
        if isinstance(enqueued, int | float) and not earliest <= enqueued <= latest:
            continue
        if matches_request(row, payload):
            found.append(row)
    return found


class Recovery:
    """Searches of the queue for what lost POSTs created; `key` is a hash of the body."""

    def __init__(self, api: Api, registry: Registry, policy: ReconcilePolicy) -> None:
        self._api = api
        self._registry = registry
        self._policy = policy
        # Enqueues in progress, by request body: a plain dict, not a Counter (whose Python-level
        # `__delitem__` was 3% of a submit's CPU), so read it with `.get(key, 0)`.
        self._in_flight: dict[int, int] = {}
        self._recovering: Counter[int] = Counter()
        self._settled = asyncio.Condition()
        self._locks: dict[int, asyncio.Lock] = {}
        # Lost POSTs sent again after their window: (body, its key, sent at (Unix time),
        # watched until (loop time)).
        self._abandoned: list[tuple[dict[str, Any], int, float, float]] = []
        self._watcher: asyncio.Task[None] | None = None

    def started(self, key: int) -> None:
        in_flight = self._in_flight
        in_flight[key] = in_flight.get(key, 0) + 1

    def finished(self, key: int) -> bool:
        """An enqueue of this body ended; True when a search may be waiting for it (then
        `await notify()`: kept out of the common path, which has nothing to wake)."""
        in_flight = self._in_flight
        left = in_flight[key] - 1
        if left:
            in_flight[key] = left
        else:
            del in_flight[key]
        return bool(self._recovering)

    async def notify(self) -> None:
        async with self._settled:
            self._settled.notify_all()

    async def find(
        self,
        payload: dict[str, Any],
        n: int,
        sent_at: float,
        key: int,
        cause: OxeditError,
        *,
        claim: bool = False,
    ) -> list[dict[str, Any]]:
        """The rows a POST whose answer was lost created (up to `n`), or [] when it surely
        created none. `claim`: mark them as taken (when they are not adopted)."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._recovering[key] += 1
        async with self._settled:
            self._settled.notify_all()  # a recovery waiting for this request may go on now
        try:
            async with lock:
                # Identical requests still waiting for their own responses would make rows we
                # cannot tell apart: let them settle (answer, or be lost too) first.
                async with self._settled:
                    await self._settled.wait_for(
                        lambda: self._in_flight.get(key, 0) <= self._recovering[key]
                    )
                loop = asyncio.get_running_loop()
                closes = loop.time() + self._policy.lost_response_window
                for wait in self._gaps():
                    await asyncio.sleep(max(0.0, min(wait, closes - loop.time())))
                    last = loop.time() >= closes
                    try:
                        rows = await self._candidates(payload, sent_at, n)
                    except ClientStateError:
                        raise
                    except OxeditError as exc:
                        raise AmbiguousRequestError(
                            f"enqueue response was lost ({cause}) and the queue could not be "
                            f"checked ({exc}); the generation may or may not exist: look at "
                            "client.list() before submitting again"
                        ) from exc
                    if rows:
                        if claim:
                            for row in rows[:n]:
                                self._registry.claim(row["generation_id"])
                        return rows[:n]
                    if last:
                        return []
                raise AssertionError("unreachable: the gaps never end")  # pragma: no cover
        finally:
            self._recovering[key] -= 1
            if not self._recovering[key]:
                del self._recovering[key]
                self._locks.pop(key, None)

    def _gaps(self) -> Iterator[float]:
        """The waits before each check of a lost POST's search: the grace first, then each
        twice the last, at least 1/16 of the window (a zero grace must not spin) and at most
        `LOST_RESPONSE_MAX_GAP`; the search ends at the check at the window's close."""
        policy = self._policy
        wait = policy.lost_response_grace
        while True:
            yield wait
            wait = min(max(2 * wait, policy.lost_response_window / 16), C.LOST_RESPONSE_MAX_GAP)

    def abandoned(self, payload: dict[str, Any], key: int, sent_at: float) -> None:
        """A lost POST's window closed with no row, and it is sent again: a row it still
        commits is a second generation nobody follows. Watch the active rows for one, for
        `LOST_RESPONSE_WATCH` windows more, and cancel it on sight."""
        loop = asyncio.get_running_loop()
        horizon = C.LOST_RESPONSE_WATCH * self._policy.lost_response_window
        self._abandoned.append((payload, key, sent_at, loop.time() + horizon))
        if self._watcher is None or self._watcher.done():
            self._watcher = loop.create_task(self._watch(), name="oxedit-late-rows")

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        gap = min(self._policy.lost_response_window / 4, C.LOST_RESPONSE_MAX_GAP)
        while self._abandoned:
            await asyncio.sleep(gap)
            now = loop.time()
            self._abandoned = [entry for entry in self._abandoned if entry[3] > now]
            try:
                await self._cancel_late_rows()
            except ClientStateError:
                return
            except OxeditError as exc:
                log.warning("could not look for rows of lost enqueues: %s", exc)

    async def _cancel_late_rows(self) -> None:
        lists: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        taken: set[str] = set()
        for entry in list(self._abandoned):
            payload, key, sent_at, _ = entry
            if self._in_flight.get(key, 0):
                # A request with this body is waiting for its answer (the one sent again,
                # first of all): its row is not known yet and must not be taken for the late one.
                continue
            where = (payload["model"], payload.get("target_namespace"))
            if where not in lists:
                self._api.stats.count_poll()
                lists[where] = await self._api.list_raw(model=where[0], namespace=where[1])
            rows = _matching(
                lists[where],
                payload,
                (sent_at, time.time()),
                lambda gid: gid in taken or self._registry.knows(gid),
            )
            if not rows:
                continue
            generation_id = rows[0]["generation_id"]
            taken.add(generation_id)
            self._abandoned.remove(entry)
            self._registry.claim(generation_id)
            log.warning(
                "generation %s was created by an enqueue whose response was lost, after the "
                "%g s it was looked for, so the request had been sent again: cancelling it, "
                "so it is not billed twice (raise ReconcilePolicy.lost_response_window if "
                "this recurs)",
                generation_id,
                self._policy.lost_response_window,
            )
            await self._api.delete(generation_id)
            self._api.stats.count_late_duplicate()

    async def close(self) -> None:
        """Stop watching for late rows (the client is closing)."""
        watcher = self._watcher
        if watcher is not None and not watcher.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def _candidates(
        self, payload: dict[str, Any], sent_at: float, n: int
    ) -> list[dict[str, Any]]:
        """Rows this request may have created, active ones first: a row just created is most
        likely still queued; the finished ones are read back only as far as the window."""
        found: dict[str, dict[str, Any]] = {}
        window = (sent_at, time.time())

        def take(rows: list[dict[str, Any]]) -> bool:
            for row in _matching(rows, payload, window, self._registry.knows):
                found[row["generation_id"]] = row
            return len(found) >= n

        model, namespace = payload["model"], payload.get("target_namespace")
        self._api.stats.count_poll()
        if not take(await self._api.list_raw(model=model, namespace=namespace)):
            await self._finished(model, namespace, sent_at - C.CLOCK_SLACK, take)
        return sorted(found.values(), key=_enqueue_order)

    async def _finished(
        self,
        model: str,
        namespace: str | None,
        earliest: float,
        take: Callable[[list[dict[str, Any]]], bool],
    ) -> None:
        """Hand `take` the finished rows of `model` billed to `namespace` (None: the user's)
        enqueued from `earliest` on, a batch at a time, until it returns True.

        The history [spec] is paginated, newest first: it is read only back to `earliest`, so
        the cost follows the window, not the account's age. It does not say which namespace
        a row was billed to, so for an organisation's rows the queue's lists of finished
        rows are read instead (whole, as they are not paginated).
        """
        if namespace is None:
            try:
                await self._history(model, earliest, take)
                return
            except NotFoundError:
                pass  # a service without the history route: the lists below
        for status in _FINISHED_STATUSES:
            self._api.stats.count_poll()
            rows = await self._api.list_raw(status=status, model=model, namespace=namespace)
            if take(rows):
                return

    async def _history(
        self, model: str, earliest: float, take: Callable[[list[dict[str, Any]]], bool]
    ) -> None:
        for page, size in history_pages():
            self._api.stats.count_poll()
            rows = await raw_history_page(self._api, page=page, page_size=size)
            mine = [row for row in rows if _is_users(row, model)]
            if take(mine) or len(rows) < size:
                return
            stamps = [t for row in rows if isinstance(t := row.get("enqueued_at"), int | float)]
            if not stamps or stamps[-1] < earliest:
                return  # older than the window from here on (or it cannot be told: stop)

    async def _rows(self, model: str, namespace: str | None, since: float) -> list[dict[str, Any]]:
        """The rows of `model` billed to `namespace` (None: the user's), active ones and
        finished ones enqueued from `since` on, sorted by enqueue time."""
        rows: dict[str, dict[str, Any]] = {}

        def keep(batch: list[dict[str, Any]]) -> bool:
            for row in batch:
                if isinstance(row.get("generation_id"), str):
                    rows[row["generation_id"]] = row
            return False

        self._api.stats.count_poll()
        keep(await self._api.list_raw(model=model, namespace=namespace))
        await self._finished(model, namespace, since, keep)
        return sorted(rows.values(), key=_enqueue_order)

    async def unrecorded(
        self,
        requests: list[tuple[dict[str, Any], float]],
        claimed: set[str],
        deadline: float,
    ) -> list[dict[str, Any] | None]:
        """For requests another process recorded as about to be sent at a time, but whose
        outcome it never recorded (it crashed): the row each created, or None where none
        exists (safe to send). Rows in `claimed` belong to someone else.

        Only a row enqueued between the recorded time and the POST's deadline after it can be
        that POST's (another batch with identical requests, later, must not be adopted). The
        queue is listed once per model and namespace, and requests are matched in the order
        they were sent, so identical requests each get their own row.
        """
        await asyncio.sleep(self._policy.lost_response_grace)
        since = min((sent_at for _, sent_at in requests), default=0.0) - C.CLOCK_SLACK
        by_model: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        taken = set(claimed)
        found: list[dict[str, Any] | None] = []
        for payload, sent_at in requests:
            where = (payload["model"], payload.get("target_namespace"))
            if where not in by_model:
                by_model[where] = await self._rows(*where, since)
            rows = _matching(
                by_model[where],
                payload,
                (sent_at, sent_at + deadline),
                lambda gid: gid in taken or self._registry.knows(gid),
            )
            if rows:
                taken.add(rows[0]["generation_id"])
                found.append(rows[0])
            else:
                found.append(None)
        return found

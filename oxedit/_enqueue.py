"""`POST /api/ai/queue` without ever creating a generation twice.

The API has no idempotency key, so the policy is:
- 429 and 503 were refused before anything was created: wait (honouring `Retry-After`) and
  send again.
- No connection could be opened: nothing was sent; send again.
- The response was lost after sending (reset, timeout) or was a 500/502/504: the POST may have
  created the generation. Ask the queue endpoints whether a row matching this request appeared
  that no other request of this client has claimed; adopt it if so, and re-send only when it
  surely did not (checked twice, after a grace period).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from . import _constants as C
from ._api import Api
from ._config import ReconcilePolicy
from ._exceptions import AmbiguousRequestError, OxeditError
from ._inputs import QUEUE_PARAMS
from ._listener import Listener
from ._models import TERMINAL_STATUSES, Generation, GenerationRow, enqueue_decoder
from ._registry import Pending, Registry
from ._retry import Outcome, classify, parse_retry_after
from ._transport import ConnectionFailed, status_error

__all__ = ["Enqueuer", "matches_request"]

log = logging.getLogger("oxedit")

# A row of ours cannot predate our POST by more than the clocks' disagreement.
_CLOCK_SLACK = 120.0
_ROUTE = "POST /api/ai/queue"
_LIST_STATUSES: tuple[str | None, ...] = (None, "succeeded", "failed", "cancelled")


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
    sent_at: float,
    taken: Callable[[str], bool],
) -> list[dict[str, Any]]:
    """The rows, oldest first, that this request may have created and nobody has claimed."""
    found = []
    for row in rows:
        generation_id = row.get("generation_id")
        if not isinstance(generation_id, str) or taken(generation_id):
            continue
        enqueued = row.get("enqueued_at")
        if isinstance(enqueued, int | float) and enqueued < sent_at - _CLOCK_SLACK:
            continue
        if matches_request(row, payload):
            found.append(row)
    return found


class Enqueuer:
    def __init__(
        self,
        api: Api,
        registry: Registry,
        policy: ReconcilePolicy,
        listener: Listener,
        register: Callable[[str, int], Pending],
    ) -> None:
        self._api = api
        self._transport = api.transport
        self._registry = registry
        self._policy = policy
        self._listener = listener
        self._register = register  # starts waiting for an id; the int is the stream epoch
        self._in_flight: Counter[int] = Counter()  # enqueues in progress, by request body
        self._recovering: Counter[int] = Counter()
        self._settled = asyncio.Condition()
        self._locks: dict[int, asyncio.Lock] = {}

    async def enqueue(self, payload: dict[str, Any], body: bytes, n: int) -> list[Pending]:
        """Enqueue once; returns the registered generations (resolved already when a row
        adopted after a lost response was terminal)."""
        # One flat coroutine (no helpers awaited per request): with 10,000 submits parked,
        # every frame in the chain is 10,000 more objects for the garbage collector.
        key = hash(body)
        self._in_flight[key] += 1
        # Held until the ids are registered, so an event that overtakes the response is kept.
        self._registry.enqueue_started()
        listener = self._listener
        stats = self._api.stats
        retry = self._api.retry
        attempt = 0
        try:
            while True:
                # The stream must be up before anything is sent (events are not replayed).
                epoch = listener.epoch if listener.connected else await listener.ready()
                sent_at = time.time()
                retry_after = None
                stats.enqueue_requests += 1
                stats.count(_ROUTE)
                try:
                    resp = await self._transport.request("POST", "/api/ai/queue", body=body)
                except ConnectionFailed as exc:
                    error: OxeditError = exc
                    outcome = classify("POST", None, sent=exc.sent)
                else:
                    if resp.status == 200:
                        generations = enqueue_decoder.decode(resp.body).generations
                        return [self._register(g.generation_id, epoch) for g in generations]
                    error = status_error(resp, what="enqueue")
                    outcome = classify("POST", resp.status)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                if outcome is Outcome.DONE:
                    raise error
                if outcome is Outcome.AMBIGUOUS:
                    stats.lost_responses += 1
                    log.info("enqueue response lost (%s); checking the queue first", error)
                    adopted = await self._recover(payload, n, sent_at, key, error, epoch)
                    if adopted:
                        stats.adopted += len(adopted)
                        return adopted
                    log.info("the lost enqueue created nothing; sending it again")
                if attempt >= retry.max_retries:
                    raise error
                stats.retries += 1
                await asyncio.sleep(retry.delay(attempt, retry_after))
                attempt += 1
        finally:
            self._registry.enqueue_finished()
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]
            if self._recovering:  # a recovery may be waiting for this request to settle
                async with self._settled:
                    self._settled.notify_all()

    async def _recover(
        self,
        payload: dict[str, Any],
        n: int,
        sent_at: float,
        key: int,
        cause: OxeditError,
        epoch: int,
    ) -> list[Pending]:
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
                        lambda: self._in_flight[key] <= self._recovering[key]
                    )
                for _ in range(C.LOST_RESPONSE_CHECKS):
                    await asyncio.sleep(self._policy.lost_response_grace)
                    try:
                        rows = await self._candidates(payload, sent_at, n)
                    except OxeditError as exc:
                        raise AmbiguousRequestError(
                            f"enqueue response was lost ({cause}) and the queue could not be "
                            f"checked ({exc}); the generation may or may not exist: look at "
                            "client.list() before submitting again"
                        ) from exc
                    if rows:
                        return self._adopt(rows[:n], epoch)
                return []
        finally:
            self._recovering[key] -= 1
            if not self._recovering[key]:
                del self._recovering[key]
                self._locks.pop(key, None)

    async def _candidates(
        self, payload: dict[str, Any], sent_at: float, n: int
    ) -> list[dict[str, Any]]:
        """Rows this request may have created, active ones first: a row just created is
        most likely still queued, and the lists of finished rows hold the whole history, so
        they are asked only when the active list does not have all `n`."""
        found: dict[str, dict[str, Any]] = {}
        for status in _LIST_STATUSES:
            self._api.stats.poll_requests += 1
            rows = await self._api.list_raw(status=status, model=payload["model"])
            for row in _matching(rows, payload, sent_at, self._registry.knows):
                found[row["generation_id"]] = row
            if len(found) >= n:
                break
        return sorted(found.values(), key=_enqueue_order)

    async def _rows(self, model: str) -> list[dict[str, Any]]:
        """Every row of `model`, active or finished, sorted by enqueue time."""
        rows: dict[str, dict[str, Any]] = {}
        for status in _LIST_STATUSES:
            self._api.stats.poll_requests += 1
            for row in await self._api.list_raw(status=status, model=model):
                if isinstance(row.get("generation_id"), str):
                    rows[row["generation_id"]] = row
        return sorted(rows.values(), key=_enqueue_order)

    async def adopt_unrecorded(
        self, requests: list[tuple[dict[str, Any], float]], claimed: set[str]
    ) -> list[Pending | None]:
        """For requests another process recorded as about to be sent, but whose outcome it
        never recorded (it crashed): the generation each created, adopted, or None where
        none exists (safe to send). Rows in `claimed` belong to someone else.

        The queue is listed once per model, and requests are matched in the order they were
        sent, so identical requests each get their own row.
        """
        await asyncio.sleep(self._policy.lost_response_grace)
        by_model: dict[str, list[dict[str, Any]]] = {}
        taken = set(claimed)
        adopted: list[Pending | None] = []
        for payload, sent_at in requests:
            model = payload["model"]
            if model not in by_model:
                by_model[model] = await self._rows(model)
            rows = _matching(
                by_model[model],
                payload,
                sent_at,
                lambda gid: gid in taken or self._registry.knows(gid),
            )
            if rows:
                taken.add(rows[0]["generation_id"])
                adopted.extend(self._adopt(rows[:1], -1))  # -1: reconcile it at once
            else:
                adopted.append(None)
        return adopted

    def _adopt(self, rows: list[dict[str, Any]], epoch: int) -> list[Pending]:
        adopted = []
        for row in rows:
            gid = row["generation_id"]
            adopted.append(self._register(gid, epoch))
            if row.get("status") in TERMINAL_STATUSES:
                try:
                    decoded = msgspec.convert(row, GenerationRow)
                except msgspec.ValidationError:
                    pass  # the reconciler will read the row again
                else:
                    self._registry.resolve(Generation.from_row(decoded))
        log.info("adopted %d generation(s) created by a POST whose response was lost", len(rows))
        return adopted

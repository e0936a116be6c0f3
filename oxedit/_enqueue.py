"""`POST /api/ai/queue` without ever creating a generation twice, or one nobody follows.

The API has no idempotency key, so the policy is:
- 429 and 503 were refused before anything was created: wait (honouring `Retry-After`) and
  send again.
- No connection could be opened: nothing was sent; send again.
- The response was lost after sending (reset, timeout), was a 500/502/504, or was a 2xx whose
  body is not the documented one (HTML, `{}`, the wrong number of ids): the POST may have
  created the generation. Ask the queue endpoints whether a row matching this request appeared
  that no other request of this client has claimed; adopt it if so, and re-send only when it
  surely did not (checked twice, after a grace period).
- The caller cancelled `submit()` after the POST may have been sent: the same search runs in
  the background, and what it finds is cancelled (`DELETE`), so nothing runs unfollowed.
- The client closed meanwhile: ids that arrive are reported on the `ClientStateError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from . import _constants as C
from ._api import Api
from ._config import ReconcilePolicy
from ._exceptions import (
    AmbiguousRequestError,
    APIResponseValidationError,
    ClientStateError,
    OxeditError,
)
from ._inputs import QUEUE_PARAMS
from ._listener import Listener
from ._models import TERMINAL_STATUSES, Generation, GenerationRow, enqueue_decoder
from ._registry import Pending, Registry
from ._retry import Outcome, classify, parse_retry_after
from ._transport import ConnectionFailed, Response, is_success, status_error

__all__ = ["Enqueuer", "matches_request"]

log = logging.getLogger("oxedit")

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


def _ids(resp: Response, n: int) -> list[str] | None:
    """The ids of a success answer, or None when it is not the documented body for `n`."""
    try:
        generations = enqueue_decoder.decode(resp.body).generations
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    ids = [g.generation_id for g in generations]
    return ids if len(ids) == n and len(set(ids)) == n else None


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


class Enqueuer:
    def __init__(
        self,
        api: Api,
        registry: Registry,
        policy: ReconcilePolicy,
        listener: Listener,
        register: Callable[[str, int, str | None], Pending],
        *,
        request_deadline: float,
    ) -> None:
        self._api = api
        self._transport = api.transport
        self._registry = registry
        self._policy = policy
        self._listener = listener
        # Starts following an id; the int is the stream epoch when its POST was sent.
        self._register = register
        self._deadline = request_deadline  # the latest a POST can be acted on after sending
        self._in_flight: Counter[int] = Counter()  # enqueues in progress, by request body
        self._recovering: Counter[int] = Counter()
        self._settled = asyncio.Condition()
        self._locks: dict[int, asyncio.Lock] = {}
        self._closed = False
        self._posting = 0  # POSTs sent, or waiting for a connection slot
        self._idle = asyncio.Event()
        self._idle.set()
        self._orphans: set[asyncio.Task[None]] = set()

    async def enqueue(
        self,
        payload: dict[str, Any],
        body: bytes,
        n: int,
        *,
        on_send: Callable[[float], None] | None = None,
    ) -> list[Pending]:
        """Enqueue once; returns the registered generations (resolved already when a row
        adopted after a lost response was terminal).

        `on_send(unix_time)` is called just before each POST is sent (a journal records it:
        only a row enqueued shortly after it can be this request's).
        """
        if self._closed:
            raise ClientStateError("the client is closed; nothing was sent")
        # One flat coroutine (no helpers awaited per request): with 10,000 submits parked,
        # every frame in the chain is 10,000 more objects for the garbage collector.
        key = hash(body)
        self._in_flight[key] += 1
        # Held until the ids are registered, so an event that overtakes the response is kept.
        self._registry.enqueue_started()
        listener = self._listener
        stats = self._api.stats
        retry = self._api.retry
        model = payload["model"]
        attempt = 0
        sent_at = 0.0
        unsure = False  # a POST of this call may have created generations nobody follows
        try:
            while True:
                # The stream must be up before anything is sent (events are not replayed).
                epoch = listener.epoch if listener.connected else await listener.ready()
                sent_at = time.time()
                if on_send is not None:
                    on_send(sent_at)
                retry_after = None
                stats.enqueue_requests += 1
                stats.count(_ROUTE)
                unsure = True
                self._posting += 1
                self._idle.clear()
                try:
                    resp = await self._transport.request("POST", "/api/ai/queue", body=body)
                except ConnectionFailed as exc:
                    error: OxeditError = exc
                    outcome = classify("POST", None, sent=exc.sent)
                else:
                    if is_success(resp.status):
                        ids = _ids(resp, n)
                        if ids is not None:
                            unsure = False
                            if self._closed:
                                raise ClientStateError(
                                    "the client was closed while this enqueue was answered: "
                                    f"generation(s) {', '.join(ids)} exist and may still run; "
                                    "follow them with client.job(id) in a new client",
                                    generation_ids=tuple(ids),
                                )
                            return [self._register(g, epoch, model) for g in ids]
                        error = APIResponseValidationError(
                            f"enqueue: HTTP {resp.status} without the {n} generation id(s) "
                            f"asked for: {resp.body[:200]!r}",
                            status_code=resp.status,
                            body=resp.body[:200].decode("utf-8", "replace"),
                        )
                        outcome = Outcome.AMBIGUOUS
                    else:
                        error = status_error(resp, what="enqueue")
                        outcome = classify("POST", resp.status)
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                finally:
                    self._posting -= 1
                    if not self._posting:
                        self._idle.set()
                if outcome is not Outcome.AMBIGUOUS:
                    unsure = False
                if outcome is Outcome.DONE or self._closed:  # closed: wrapped below
                    raise error
                if outcome is Outcome.AMBIGUOUS:
                    stats.lost_responses += 1
                    log.info("enqueue response lost (%s); checking the queue first", error)
                    rows = await self._recover(payload, n, sent_at, key, error)
                    unsure = False
                    if rows:
                        adopted = self._adopt(rows, epoch)
                        stats.adopted += len(adopted)
                        return adopted
                    log.info("the lost enqueue created nothing; sending it again")
                if attempt >= retry.max_retries:
                    raise error
                stats.retries += 1
                await asyncio.sleep(retry.delay(attempt, retry_after))
                attempt += 1
        except asyncio.CancelledError:
            if unsure and not self._closed:
                self._follow_orphans(payload, n, sent_at, key)
            raise
        except OxeditError as exc:
            if self._closed and not (isinstance(exc, ClientStateError) and not unsure):
                if isinstance(exc, ClientStateError) and exc.generation_ids:
                    raise
                raise ClientStateError(
                    f"the client was closed during this enqueue ({exc})"
                    + (
                        "; it may have created a generation: look at client.list() in a new client"
                        if unsure
                        else ""
                    )
                ) from exc
            raise
        finally:
            self._registry.enqueue_finished()
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]
            if self._recovering:  # a recovery may be waiting for this request to settle
                async with self._settled:
                    self._settled.notify_all()

    async def close(self, deadline: float) -> None:
        """Refuse new enqueues; let POSTs already sent be answered (at most `deadline` s), so
        what they created is registered or reported, never silently lost."""
        self._closed = True
        for task in self._orphans:
            task.cancel()
        try:
            async with asyncio.timeout(deadline):
                await self._idle.wait()
        except TimeoutError:
            log.warning("closing with %d enqueue(s) unanswered after %g s", self._posting, deadline)
        for task in list(self._orphans):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _follow_orphans(self, payload: dict[str, Any], n: int, sent_at: float, key: int) -> None:
        task = asyncio.get_running_loop().create_task(
            self._cancel_orphans(payload, n, sent_at, key), name="oxedit-orphans"
        )
        self._orphans.add(task)
        task.add_done_callback(self._orphans.discard)

    async def _cancel_orphans(
        self, payload: dict[str, Any], n: int, sent_at: float, key: int
    ) -> None:
        """A `submit()` was cancelled after its POST may have been sent: find what it created
        and cancel it, since nobody awaits it."""
        cause = OxeditError("the submit() was cancelled while its POST was in flight")
        try:
            rows = await self._recover(payload, n, sent_at, key, cause, claim=True)
        except asyncio.CancelledError:
            log.warning(
                "the client closed before checking whether a cancelled submit() created a "
                "generation; look at client.list()"
            )
            raise
        except Exception as exc:
            log.warning("could not check what a cancelled submit() created: %s", exc)
            return
        for row in rows:
            generation_id = row["generation_id"]
            try:
                await self._api.delete(generation_id)
            except Exception as exc:
                log.warning("could not cancel orphaned generation %s: %s", generation_id, exc)
            else:
                log.info("cancelled generation %s: its submit() was cancelled", generation_id)

    async def _recover(
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
                        lambda: self._in_flight[key] <= self._recovering[key]
                    )
                for _ in range(C.LOST_RESPONSE_CHECKS):
                    await asyncio.sleep(self._policy.lost_response_grace)
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
        window = (sent_at, time.time())
        for status in _LIST_STATUSES:
            self._api.stats.poll_requests += 1
            rows = await self._api.list_raw(status=status, model=payload["model"])
            for row in _matching(rows, payload, window, self._registry.knows):
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
        """For requests another process recorded as about to be sent at a time, but whose
        outcome it never recorded (it crashed): the generation each created, adopted, or None
        where none exists (safe to send). Rows in `claimed` belong to someone else.

        Only a row enqueued between the recorded time and the POST's deadline after it can be
        that POST's (another batch with identical requests, later, must not be adopted). The
        queue is listed once per model, and requests are matched in the order they were sent,
        so identical requests each get their own row.
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
                (sent_at, sent_at + self._deadline),
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
            model = row.get("model_name") or row.get("model")
            adopted.append(self._register(gid, epoch, model if isinstance(model, str) else None))
            if row.get("status") in TERMINAL_STATUSES:
                try:
                    decoded = msgspec.convert(row, GenerationRow)
                except msgspec.ValidationError:
                    pass  # the reconciler will read the row again
                else:
                    self._registry.resolve(Generation.from_row(decoded))
        log.info("adopted %d generation(s) created by a POST whose response was lost", len(rows))
        return adopted

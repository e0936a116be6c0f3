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
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from .._config import ReconcilePolicy
from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    ClientStateError,
    OxeditError,
    ResponseTooLargeError,
    status_error,
)
from .._http.api import Api
from .._http.retry import Retrying, Verdict, classify
from .._models import TERMINAL_STATUSES, GenerationRow, enqueue_decoder, json_encoder
from .._response import Response, parse_retry_after
from .job import Job, JobOwner, handed_out
from .listener import Listener
from .ratelimit import AdaptiveRate
from .recovery import Recovery
from .registry import Registry

__all__ = ["Enqueuer", "SchemaCheck"]

log = logging.getLogger("oxedit")


class SchemaCheck(Protocol):
    """What checks a request against its model's schema (`Schemas`)."""

    def cached(self, payload: dict[str, Any]) -> bool:
        """Check it if the schema is loaded (True), without awaiting; False: `check`."""

    async def check(self, payload: dict[str, Any]) -> None:
        """Check it, fetching the schema first."""


class _NotSent(Exception):
    """An error of the checks made in an enqueue's turn (the stream, the first check of a
    model): raised as itself, never taken for a failure of a POST (nothing was sent)."""

    def __init__(self, error: OxeditError) -> None:
        super().__init__(str(error))
        self.error = error


def _ids(resp: Response, n: int) -> list[str] | None:
    """The ids of a success answer, or None when it is not the documented body for `n`."""
    try:
        generations = enqueue_decoder.decode(resp.body).generations
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if n == 1:  # nearly every enqueue: no comprehension (a function object on Python 3.11)
        return [generations[0].generation_id] if len(generations) == 1 else None
    ids = [g.generation_id for g in generations]
    return ids if len(ids) == n and len(set(ids)) == n else None


class Enqueuer:
    def __init__(
        self,
        api: Api,
        registry: Registry,
        policy: ReconcilePolicy,
        listener: Listener,
        *,
        request_deadline: float,
        pace: AdaptiveRate,
    ) -> None:
        self._api = api
        self._registry = registry
        self._policy = policy
        self._listener = listener
        self._deadline = request_deadline  # the latest a POST can be acted on after sending
        self._recovery = Recovery(api, registry, policy)
        self.pace = pace  # the adaptive enqueue rate, shared by every submit
        self._closed = False
        self._posting = 0  # POSTs sent, or waiting for a connection slot
        self._idle = asyncio.Event()
        self._idle.set()
        self._orphans: set[asyncio.Task[None]] = set()

    async def enqueue_in_turn(
        self,
        payload: dict[str, Any],
        n: int,
        *,
        owner: JobOwner,
        job: type[Job] = Job,
        on_send: Callable[[float], None] | None = None,
        api: Api | None = None,
        schemas: SchemaCheck | None = None,
    ) -> list[Job]:
        """`enqueue` for a request that must wait for its turn first (`pace.must_wait()`): it
        waits here, in a frame of a few slots, and `enqueue`'s (some 25 live slots) is made
        once its turn came. A full collection visits every parked submit's frames: with
        50,000 parked, it took 307 ms against 173 ms for as many tasks parked on a semaphore.
        Nothing is registered or counted as in flight before the turn, as `enqueue` does
        for the first submits of a model."""
        if self._closed:
            raise ClientStateError("the client is closed; nothing was sent")
        await self.pace.acquire()
        return await self.enqueue(
            payload,
            n,
            owner=owner,
            job=job,
            on_send=on_send,
            api=api,
            schemas=schemas,
            turn_taken=True,
        )

    async def enqueue(
        self,
        payload: dict[str, Any],
        n: int,
        *,
        owner: JobOwner,
        job: type[Job] = Job,
        on_send: Callable[[float], None] | None = None,
        api: Api | None = None,
        schemas: SchemaCheck | None = None,
        turn_taken: bool = False,
    ) -> list[Job]:
        """Enqueue once; returns the registered generations (resolved already when a row
        adopted after a lost response was terminal).

        `payload` was checked against its model's schema, or `schemas.check(payload)` does
        that once this enqueue's turn came (the first submits of a model, whose schema is
        being fetched: a burst of them waits once, in the pace's line, not first for the
        schema and again for its turn; the schemas are passed, not their bound `check`, which
        would be one more object for each parked submit). `on_send(unix_time)` is called just
        before each POST is sent (a journal records it: only a row enqueued shortly after it
        can be this request's). `api` gives this call's retry policy and timeouts
        (`Client.with_options`); by default the client's. `turn_taken`: `pace.acquire()`
        returned just now (in `enqueue_in_turn`, or `Tracker.turn`), for the first attempt.
        """
        if self._closed:
            raise ClientStateError("the client is closed; nothing was sent")
        # One flat coroutine (no helpers awaited per request): with 10,000 submits parked,
        # every frame in the chain is 10,000 more objects for the garbage collector.
        body: bytes | None = None  # `payload` encoded, once it is checked
        key: int | None = None  # the body's hash
        if schemas is None:
            body = json_encoder.encode(payload)
            key = hash(body)
            self._recovery.started(key)
        # Held until the ids are registered, so an event that overtakes the response is kept.
        flight = self._registry.enqueue_started()
        listener = self._listener
        pace = self.pace
        api = api or self._api
        slots = api.transport.slots
        model = payload["model"]
        namespace = payload.get("target_namespace")
        sent_at = 0.0
        unsure = False  # a POST of this call may have created generations nobody follows
        # The one retry loop (`Retrying`), made only once an attempt failed: a first try that
        # succeeds, nearly every enqueue, allocates nothing for it.
        retrying: Retrying | None = None
        try:
            while True:
                if turn_taken:  # nothing was awaited since: `sending()` below takes it
                    turn_taken = False
                elif pace.must_wait():
                    await pace.acquire()
                ticket = pace.ticket
                retry_after = None
                self._posting += 1
                if self._posting == 1:
                    self._idle.clear()
                pace.sending()
                try:
                    # The stream must be up before anything is sent (events are not
                    # replayed). Waited for in this enqueue's turn, as the first check of a
                    # model is: only the turns taken wait here, the rest of a burst in line.
                    if body is None or not listener.connected:
                        try:
                            if body is None:  # the first submits of a model: `schemas` given
                                assert schemas is not None
                                # Awaited only while the schema is not loaded: the rest of the
                                # burst is checked from the cache, with no coroutine each.
                                if not schemas.cached(payload):  # may reshape the images
                                    await schemas.check(payload)
                                body = json_encoder.encode(payload)
                                key = hash(body)
                                self._recovery.started(key)
                            epoch = listener.epoch if listener.connected else await listener.ready()
                        except OxeditError as exc:  # nothing was sent: not a POST's failure
                            raise _NotSent(exc) from None
                    else:
                        epoch = listener.epoch
                    sent_at = time.time()
                    if on_send is not None:
                        on_send(sent_at)
                    # Admitted, then a connection slot (no socket is held while waiting for
                    # it); sent only if the pace did not drop meanwhile, else queued again.
                    if not slots.take():
                        await slots.acquire()
                    try:
                        if pace.ticket != ticket:
                            continue  # nothing was sent: no attempt counted
                        # From here the POST may reach the server: cancelled now, what it may
                        # have created is searched for (cancelled while parked above, nothing
                        # was sent and nothing is).
                        assert body is not None and key is not None  # checked and encoded
                        unsure = True
                        resp = await api.send(
                            "POST", "/api/ai/queue", body, route="/api/ai/queue", slot_held=True
                        )
                    finally:
                        slots.release()
                except _NotSent as not_sent:
                    raise not_sent.error from None
                except APIConnectionError as exc:
                    error: OxeditError = exc
                    verdict = classify("POST", None, sent=exc.sent)
                except ResponseTooLargeError as exc:  # not read: it may have named ids
                    error, verdict = exc, Verdict.AMBIGUOUS
                else:
                    if 200 <= resp.status < 300:  # `is_success`, without a call
                        pace.succeeded()
                        ids = _ids(resp, n)
                        if ids is not None:
                            unsure = False
                            if self._closed:
                                raise _answered_after_close(ids)
                            # A loop, not a comprehension: on Python 3.11 a comprehension
                            # would turn four locals into closure cells for this coroutine's
                            # whole life, four more objects per parked submit for the GC.
                            registered = []
                            for generation_id in ids:
                                created = job(owner, generation_id)
                                kept = listener.follow(
                                    generation_id, epoch, model, namespace, created
                                )
                                # `handed_out`, without a call for the usual case
                                registered.append(
                                    created if kept is created else handed_out(created, kept)
                                )
                            return registered
                        error, verdict = _without_ids(resp, n), Verdict.AMBIGUOUS
                    else:
                        error, verdict, retry_after = self._refused(resp, api, sent_at)
                finally:
                    pace.answered()
                    self._posting -= 1
                    if not self._posting:
                        self._idle.set()
                if verdict is not Verdict.AMBIGUOUS:
                    unsure = False
                if verdict is Verdict.DONE or self._closed:  # closed: wrapped below
                    raise error
                if verdict is Verdict.AMBIGUOUS:
                    assert key is not None  # a POST was sent: its body was encoded
                    adopted = await self._after_lost_response(
                        payload, n, sent_at, key, error, epoch, owner, job, api
                    )
                    unsure = False
                    if adopted:
                        return adopted
                    verdict = Verdict.RETRY  # it surely created nothing: safe to send again
                if retrying is None:
                    retrying = api.retrying()
                await retrying.after(error, verdict, retry_after)  # raises when it gives up
        except asyncio.CancelledError:
            if unsure and key is not None and not self._closed:
                self._start_cancelling_orphans(payload, n, sent_at, key)
            raise
        except OxeditError as exc:
            if self._closed and not (isinstance(exc, ClientStateError) and not unsure):
                if isinstance(exc, ClientStateError) and exc.generation_ids:
                    raise
                raise _closed_during(exc, unsure) from exc
            raise
        finally:
            self._registry.enqueue_finished(flight)
            if key is not None and self._recovery.finished(key):
                await self._recovery.notify()

    # -- the rare paths of `enqueue`, out of its body ---------------------------------------

    def _refused(
        self, resp: Response, api: Api, sent_at: float
    ) -> tuple[OxeditError, Verdict, float | None]:
        """A non-2xx answer: its error, whether to send again, its `Retry-After`; a refusal
        (429/503) tells the shared pace."""
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if resp.status in (429, 503):
            api.stats.count_refusal()
            self.pace.refused(
                sent_at, retry_after, status=resp.status, cap=api.retry.retry_after_max
            )
        return status_error(resp, what="enqueue"), classify("POST", resp.status), retry_after

    async def _after_lost_response(
        self,
        payload: dict[str, Any],
        n: int,
        sent_at: float,
        key: int,
        error: OxeditError,
        epoch: int,
        owner: JobOwner,
        job: type[Job],
        api: Api,
    ) -> list[Job]:
        """The answer was lost: the jobs of the rows the POST created, found in the queue
        within the lost-response window; none when it surely created nothing (then the
        caller sends again, and a row the backend commits even later is cancelled on sight)."""
        api.stats.count_lost_response()
        log.info("enqueue response lost (%s); checking the queue first", error)
        rows = await self._recovery.find(payload, n, sent_at, key, error)
        if not rows:
            log.info("the lost enqueue created nothing; sending it again")
            self._recovery.abandoned(payload, key, sent_at)
            return []
        adopted = self._adopt(rows, epoch, owner, job)
        api.stats.count_adopted(len(adopted))
        return adopted

    async def settle_orphans(self, deadline: float) -> None:
        """Let the searches for what cancelled submits created finish (at most `deadline` s),
        before the client closes: cancelled by `close`, they would leave those generations
        running with nobody to follow them."""
        if self._orphans:
            _, pending = await asyncio.wait(set(self._orphans), timeout=deadline)
            if pending:
                log.warning("closing with %d cancelled submit(s) not checked yet", len(pending))

    async def close(self, deadline: float) -> None:
        """Refuse new enqueues; let POSTs already sent be answered (at most `deadline` s), so
        what they created is registered or reported, never silently lost."""
        self._closed = True
        self.pace.close()
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
        await self._recovery.close()

    def _start_cancelling_orphans(
        self, payload: dict[str, Any], n: int, sent_at: float, key: int
    ) -> None:
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
            rows = await self._recovery.find(payload, n, sent_at, key, cause, claim=True)
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

    async def adopt_unrecorded(
        self,
        requests: list[tuple[dict[str, Any], float]],
        claimed: set[str],
        owner: JobOwner,
        job: type[Job],
    ) -> list[Job | None]:
        """For requests another process recorded as about to be sent at a time (the last
        `on_send` of their enqueue), but whose outcome it never recorded (it crashed): the
        generation each created, adopted, or None where none exists (safe to send). Only rows
        enqueued within that POST's deadline after the recorded time can be adopted, and none
        in `claimed` (see `Recovery.unrecorded`)."""
        rows = await self._recovery.unrecorded(requests, claimed, self._deadline)
        self._api.stats.count_adopted(sum(row is not None for row in rows))
        # -1: the stream epoch is unknown, so each is reconciled at once.
        return [None if row is None else self._adopt([row], -1, owner, job)[0] for row in rows]

    def _adopt(
        self, rows: list[dict[str, Any]], epoch: int, owner: JobOwner, job: type[Job]
    ) -> list[Job]:
        adopted = []
        for row in rows:
            gid = row["generation_id"]
            model = row.get("model_name") or row.get("model")
            namespace = row.get("target_namespace")
            created = job(owner, gid)
            kept = self._listener.follow(
                gid,
                epoch,
                model if isinstance(model, str) else None,
                namespace if isinstance(namespace, str) else None,
                created,
            )
            adopted.append(handed_out(created, kept))
            if row.get("status") in TERMINAL_STATUSES:
                try:
                    decoded = msgspec.convert(row, GenerationRow)
                except msgspec.ValidationError:
                    pass  # the reconciler will read the row again
                else:
                    self._registry.resolve_row(decoded)
        log.info("adopted %d generation(s) created by a POST whose response was lost", len(rows))
        return adopted


def _answered_after_close(ids: list[str]) -> ClientStateError:
    return ClientStateError(
        "the client was closed while this enqueue was answered: "
        f"generation(s) {', '.join(ids)} exist and may still run; "
        "follow them with client.job(id) in a new client",
        generation_ids=tuple(ids),
    )


def _without_ids(resp: Response, n: int) -> APIResponseValidationError:
    return APIResponseValidationError(
        f"enqueue: HTTP {resp.status} without the {n} generation id(s) "
        f"asked for: {resp.body[:200]!r}",
        status_code=resp.status,
        body=resp.body[:200].decode("utf-8", "replace"),
    )


def _closed_during(exc: OxeditError, unsure: bool) -> ClientStateError:
    maybe = "; it may have created a generation: look at client.list() in a new client"
    said = f"the client was closed during this enqueue ({exc})"
    return ClientStateError(said + (maybe if unsure else ""))

"""The one shared event stream, and the reconciliation that covers what it cannot see.

One task holds `GET /api/events` open and resolves jobs from `media_generation_completed`
events. The API replays nothing, so whenever the stream (re)connects, every job still pending is
reconciled through the queue endpoints; the same path checks jobs that stay pending unusually
long (cancellations have no event, and an event can be lost), at a bounded rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from . import _constants as C
from ._api import Api
from ._config import ReconcilePolicy
from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    GenerationExpired,
    NotFoundError,
    OxeditError,
    PermissionDeniedError,
    TransportError,
)
from ._models import TERMINAL_STATUSES, Generation, event_decoder
from ._registry import Registry
from ._retry import backoff
from ._sse import SSEDecoder

__all__ = ["Listener"]

log = logging.getLogger("oxedit")

COMPLETED = "media_generation_completed"
# Below this many ids, per-id GETs are cheaper than listing every active row (rows echo their
# input images, which can be large data URIs).
_LIST_THRESHOLD = 16


class Listener:
    def __init__(self, api: Api, registry: Registry, policy: ReconcilePolicy) -> None:
        self._api = api
        self._registry = registry
        self._policy = policy
        self.epoch = 0  # increments on every confirmed (re)connection
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._fatal: OxeditError | None = None
        self._last_error: OxeditError | None = None
        self._failures = 0  # consecutive failed connection attempts
        self._recheck: set[str] = set()
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._stream_forever(), name="oxedit-events"),
                asyncio.create_task(self._reconcile_forever(), name="oxedit-reconcile"),
            ]

    async def ready(self) -> int:
        """Wait until the stream is open and confirmed; returns its epoch.

        Raises the stream's error when it failed for good (401/403) or could not be opened
        after as many attempts as the retry policy allows (it keeps trying in the background).
        """
        self.start()
        while not self._connected.is_set():
            if self._fatal is not None:
                raise self._fatal
            if self._last_error is not None and self._failures > self._api.retry.max_retries:
                raise self._last_error
            await self._changed.wait()
        return self.epoch

    def vouch(self, generation_id: str, sent_epoch: int) -> None:
        """Called when a job is registered: if the stream was down at any moment since its
        POST was sent, its event may be lost, so it is reconciled once the stream is back."""
        if sent_epoch != self.epoch or not self._connected.is_set():
            self._recheck.add(generation_id)
            self._kick.set()

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._connected.clear()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _stream_forever(self) -> None:
        attempt = 0
        while True:
            try:
                async with self._api.transport.stream("/api/events") as chunks:
                    self._on_connected()
                    attempt = 0
                    decoder = SSEDecoder()
                    async for chunk in chunks:
                        for event in decoder.feed(chunk):
                            if event.event == COMPLETED:
                                self._on_completed(event.data)
                log.info("event stream ended; reconnecting")
            except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
                log.error("event stream refused: %s", exc)
                self._fatal = exc
                self._connected.clear()
                self._registry.fail_all(exc)
                self._notify()
                return
            except (TransportError, APIStatusError) as exc:
                log.info("event stream lost: %s; reconnecting", exc)
                self._last_error = exc
            except Exception as exc:  # a bug must not end the stream for every job
                log.exception("event stream failed unexpectedly; reconnecting")
                self._last_error = OxeditError(f"event stream failed: {exc!r}")
            self._connected.clear()
            self._failures += 1
            self._notify()
            await asyncio.sleep(
                backoff(
                    attempt, initial=C.RECONNECT_BACKOFF_INITIAL, maximum=C.RECONNECT_BACKOFF_MAX
                )
            )
            attempt += 1

    def _on_connected(self) -> None:
        self.epoch += 1
        self._api.stats.event_connections += 1
        self._failures = 0
        self._last_error = None
        if self.epoch > 1:
            # Nothing fired while we were away is replayed: ask the queue about every job.
            self._recheck.update(p.id for p in self._registry)
            self._kick.set()
        self._connected.set()
        self._notify()

    def _on_completed(self, data: bytes) -> None:
        try:
            event = event_decoder.decode(data)
        except msgspec.DecodeError as exc:
            log.warning("ignoring a malformed %s event: %s", COMPLETED, exc)
            return
        self._api.stats.events += 1
        self._registry.resolve(Generation.from_event(event))

    async def _reconcile_forever(self) -> None:
        policy = self._policy
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(policy.interval):
                    await self._kick.wait()
            self._kick.clear()
            await self._connected.wait()
            ids, self._recheck = self._recheck, set()
            ids.update(p.id for p in self._registry.stale())
            ids = {i for i in ids if self._registry.get(i) is not None}
            if not ids:
                continue
            try:
                await self.reconcile(ids)
            except OxeditError as exc:
                log.warning("could not reconcile %d pending job(s): %s; will retry", len(ids), exc)
                self._recheck |= ids

    async def reconcile(self, ids: set[str]) -> None:
        """Settle every id in `ids` whose row is terminal; vouch for those still active."""
        registry = self._registry
        todo = ids
        if len(ids) > _LIST_THRESHOLD:
            self._api.stats.poll_requests += 1
            active = {row.generation_id for row in await self._api.list_rows()}
            for generation_id in ids & active:
                registry.still_active(generation_id)
            todo = ids - active
        queue = list(todo)

        async def worker() -> None:
            while queue:
                generation_id = queue.pop()
                if registry.get(generation_id) is None:
                    continue  # an event settled it meanwhile
                self._api.stats.poll_requests += 1
                try:
                    row = await self._api.get_row(generation_id)
                except NotFoundError:
                    registry.fail(generation_id, GenerationExpired(generation_id))
                    continue
                if row.status in TERMINAL_STATUSES:
                    registry.resolve(Generation.from_row(row))
                else:
                    registry.still_active(generation_id)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(C.RECONCILE_CONCURRENCY, len(queue))):
                group.create_task(worker())

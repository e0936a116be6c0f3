"""The one shared event stream.

One task holds `GET /api/events` open and resolves jobs from `media_generation_completed`
events. The API replays nothing, so whenever the stream (re)connects, every job still pending is
handed to the `Reconciler` (`_engine.reconciler`), which asks the queue endpoints; so is a job
whose enqueue straddled a gap. The task never dies of an error: it reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging

from .. import _constants as C
from .._config import ReconcilePolicy
from .._exceptions import (
    AuthenticationError,
    ClientStateError,
    NotFoundError,
    OxeditError,
    PermissionDeniedError,
    TransportError,
)
from .._http.api import Api
from .._http.retry import backoff
from .._http.sse import DropWarnings, SSEDecoder
from .reconciler import Reconciler, stop
from .registry import COMPLETED, Pending, Registry

__all__ = ["Listener"]

log = logging.getLogger("oxedit")


class Listener:
    """The event stream: connected once before the first enqueue, reconnected for ever."""

    def __init__(
        self,
        api: Api,
        registry: Registry,
        policy: ReconcilePolicy,
        reconciler: Reconciler,
        *,
        max_event_bytes: int,
    ) -> None:
        self._api = api
        self._registry = registry
        self._policy = policy
        self._max_event_bytes = max_event_bytes
        self._drops = DropWarnings(max_event_bytes)  # one throttle across reconnects
        self.epoch = 0  # increments on every confirmed (re)connection
        self._connected = asyncio.Event()
        self._changed = asyncio.Event()
        self._fatal: OxeditError | None = None
        self._last_error: OxeditError | None = None
        # Consecutive connections that failed, or answered and died before they were healthy.
        self._failures = 0
        self._attempt = 0
        self._refused_since: float | None = None
        self._reconciler = reconciler
        self._task: asyncio.Task[None] | None = None
        # Open now, and not in a streak of connections that died before they were healthy
        # (then `ready()` decides). A value, not a property: every enqueue reads it.
        self.connected = False

    def _update(self) -> None:
        """`connected` again, after the connection or the streak of failures changed."""
        self.connected = self._connected.is_set() and self._failures <= self._api.retry.max_retries

    def _set_connected(self, up: bool) -> None:
        """The stream is open now, or not: what `ready()` waits for, and `connected`."""
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        self._update()

    def start(self) -> None:
        if self._task is None and self._fatal is None:
            self._task = asyncio.create_task(self._stream_forever(), name="oxedit-events")
            self._reconciler.start()

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
        record: Pending | None = None,
    ) -> Pending:
        """Start waiting for a generation whose POST was sent while the stream was at
        `sent_epoch` (-1: unknown, so it is reconciled at once); `record`: as
        `Registry.add` takes it."""
        pending = self._registry.add(generation_id, model, namespace, record)
        # If the stream was down at any moment since its POST was sent, its event may be
        # lost: it is reconciled once the stream is back.
        if sent_epoch != self.epoch or not self._connected.is_set():
            self._reconciler.recheck((generation_id,))
        return pending

    async def close(self) -> None:
        """Stop the stream and the reconciler; a `ready()` waiting now or later raises
        `ClientStateError`."""
        if self._fatal is None:
            self._fatal = ClientStateError(
                "the client was closed while waiting for the event stream; nothing was sent"
            )
        self._set_connected(False)
        self._notify()
        task, self._task = self._task, None
        await stop(task)
        await self._reconciler.close()
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
                    # Looked up once per connection, not once per chunk.
                    feed, events = decoder.feed_data, self._registry.events
                    count = self._api.stats.count_event
                    async for chunk in chunks:
                        if not healthy:
                            healthy = True
                            self._on_healthy()
                        datas = feed(chunk, COMPLETED)
                        if datas:
                            count(events(datas))
                    if not healthy and loop.time() - opened >= C.STREAM_HEALTHY_AFTER:
                        healthy = True
                        self._on_healthy()
                error = TransportError("the event stream ended")
                log.info("event stream ended; reconnecting")
            except (AuthenticationError, PermissionDeniedError, NotFoundError) as exc:
                if self._refused_for_good(loop.time()):
                    log.error("event stream refused: %s", exc)
                    self._fatal = exc
                    self._set_connected(False)
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
            self._failures += 1
            self._set_connected(False)
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
        self._api.stats.count_event_connection()
        if self.epoch > 1:
            # Nothing fired while we were away is replayed: ask the queue about every job.
            self._reconciler.recheck(self._registry.ids())
        self._set_connected(True)
        self._notify()

    def _on_healthy(self) -> None:
        self._failures = 0
        self._attempt = 0
        self._refused_since = None
        self._last_error = None
        self._update()

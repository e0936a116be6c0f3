"""`GET /api/events`: the Server-Sent Events stream of completion events.

One `Subscriber` per open stream: publishing appends the encoded event to every subscriber's
buffer and wakes its writer (the stream's handler task), which writes everything that piled up
in one write. Nothing is replayed: a stream gets the events published while it is registered,
and it is registered before its response headers are sent, so a client holding the 200 is
guaranteed every later event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ._faults import Faults
from ._jobs import ACTIVE, Generation
from ._responses import encoder, status_error
from ._stats import ServerStats

__all__ = ["EventBroker"]

_KEEPALIVE = b": keep-alive\n\n"
# Longest a writer sleeps before re-reading the faults (stall, keep-alive interval), which
# tests may change on a running server.
_POLL = 0.5


class Subscriber:
    __slots__ = ("abort", "buffer", "closing", "done", "sent_seq", "wake")

    def __init__(self, seq: int) -> None:
        self.buffer: list[tuple[int, bytes]] = []
        self.wake = asyncio.Event()
        self.sent_seq = seq  # every event up to this one was written (or is not ours)
        self.closing = False
        self.abort = False
        self.done = asyncio.Event()


class EventBroker:
    """Fan-out of events to the open streams, with the event faults applied."""

    def __init__(
        self, faults: Faults, stats: ServerStats, presign: Callable[[Generation], str]
    ) -> None:
        self._faults = faults
        self._stats = stats
        self._presign = presign
        self._subs: set[Subscriber] = set()
        self._seq = 0
        self._unrelated = 0
        self._delayed: dict[int, asyncio.TimerHandle] = {}
        self._delay_keys = 0
        self._waiters: list[asyncio.Future[None]] = []

    # -- publishing ---------------------------------------------------------------------------

    def completed(self, gen: Generation) -> None:
        """`gen` just became succeeded or failed: send its event, faults permitting."""
        faults = self._faults
        if faults.roll(faults.drop_event_rate):
            self.notify()
            return
        payload: dict[str, Any] = {
            "generation_id": gen.id,
            "status": gen.status,
            "media_type": "image",
        }
        if gen.status == "succeeded":
            payload["model"] = gen.model.id
            payload["url"] = self._presign(gen)
        else:
            # The documented failed event has no "model": follow the docs to the letter.
            payload["error"] = gen.error_message
        if faults.stamp_events:
            payload["completed_at"] = gen.completed_time
        data = b"event: media_generation_completed\ndata: " + encoder.encode(payload) + b"\n\n"
        copies = 2 if faults.roll(faults.duplicate_event_rate) else 1
        delay = faults.draw(faults.delay_event)
        if delay:
            gen.event_pending = True
            self._delay_keys += 1
            key = self._delay_keys
            self._delayed[key] = asyncio.get_running_loop().call_later(
                delay, self._fire, key, gen, data, copies
            )
        else:
            self._emit(gen, data, copies)

    def _fire(self, key: int, gen: Generation, data: bytes, copies: int) -> None:
        del self._delayed[key]
        gen.event_pending = False
        self._emit(gen, data, copies)

    def _emit(self, gen: Generation, data: bytes, copies: int) -> None:
        if self._faults.roll(self._faults.unrelated_event_rate):
            self._unrelated += 1
            self._publish(
                b"event: repo_updated\ndata: "
                + encoder.encode(
                    {
                        "namespace": "ox",
                        "repo_name": "local-server",
                        "revision": f"r{self._unrelated}",
                    }
                )
                + b"\n\n"
            )
        for _ in range(copies):
            gen.event_seq = self._publish(data)
        self.notify()

    def _publish(self, data: bytes) -> int:
        self._seq += 1
        item = (self._seq, data)
        for sub in self._subs:
            sub.buffer.append(item)
            sub.wake.set()
        return self._seq

    # -- waiting (for the event_before_response fault) ----------------------------------------

    def notify(self) -> None:
        """Something a `wait_delivered` caller may be waiting for happened."""
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def delivered(self, gen: Generation) -> bool:
        """`gen` is finished and its event (if any) was written to every open stream."""
        if gen.status in ACTIVE or gen.event_pending:
            return False
        return all(sub.sent_seq >= gen.event_seq for sub in self._subs)

    async def wait_delivered(self, gens: list[Generation]) -> None:
        while not all(self.delivered(g) for g in gens):
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            await fut

    # -- streams ------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        faults = self._faults
        if faults.refuse_streams > 0:
            # Counted down here, so that a test can ask for "the next N connections".
            faults.refuse_streams -= 1
            self._stats.streams_refused += 1
            return status_error(faults.refuse_stream_status)
        sub = Subscriber(self._seq)
        self._subs.add(sub)  # before prepare(): no event can fall between 200 and registration
        self._stats.event_connections += 1
        self._stats.open_event_streams += 1
        try:
            resp = web.StreamResponse(
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
            )
            await resp.prepare(request)
            if faults.stream_close_at_once:
                resp.force_close()  # a clean, empty end of stream
                return resp
            try:
                if faults.oversized_event_bytes:
                    await resp.write(_oversized_event(faults.oversized_event_bytes))
                await self._pump(resp, sub)
            except ConnectionError:  # the client went away mid-write: nothing to report
                return resp
            if sub.abort and request.transport is not None:
                request.transport.abort()  # a cut connection, not a clean end of stream
            else:
                resp.force_close()
            return resp
        finally:
            self._subs.discard(sub)
            self._stats.open_event_streams -= 1
            sub.done.set()
            self.notify()

    async def _pump(self, resp: web.StreamResponse, sub: Subscriber) -> None:
        faults = self._faults
        loop = asyncio.get_running_loop()
        last_write = loop.time()
        sent = 0
        while not sub.closing:
            if faults.stall_streams:
                # A dead stream: nothing goes out, and what was meant for it is lost.
                if sub.buffer:
                    sub.sent_seq = sub.buffer[-1][0]
                    sub.buffer = []
                    self.notify()
                last_write = loop.time()
                await _wait(sub, _POLL)
                continue
            if sub.buffer:
                batch, sub.buffer = sub.buffer, []
                limit = faults.cut_stream_after_events
                if limit is not None and sent + len(batch) >= limit:
                    batch = batch[: max(limit - sent, 0)]
                    sub.closing = True
                if batch:
                    await resp.write(b"".join([data for _, data in batch]))
                    sent += len(batch)
                    self._stats.events_sent += len(batch)
                    sub.sent_seq = batch[-1][0]
                    if self._waiters:
                        self.notify()
                last_write = loop.time()
                continue
            idle = loop.time() - last_write
            interval = faults.keepalive_interval
            if idle >= interval:
                if faults.send_keepalives:
                    await resp.write(_KEEPALIVE)
                last_write = loop.time()
            else:
                await _wait(sub, min(interval - idle, _POLL))

    async def close_streams(self, *, abort: bool) -> None:
        """End every open stream and wait until their handlers are done."""
        subs = list(self._subs)
        for sub in subs:
            sub.abort = abort
            sub.closing = True
            sub.wake.set()
        for sub in subs:
            await sub.done.wait()

    def cancel_delayed(self) -> None:
        for handle in self._delayed.values():
            handle.cancel()
        self._delayed.clear()
        self.notify()


def _oversized_event(size: int) -> bytes:
    """A completion event whose `data:` value is `size` bytes of JSON-looking filler."""
    head = b'{"generation_id":"oversized","filler":"'
    tail = b'"}'
    filler = size - len(head) - len(tail)
    data = head + b"x" * filler + tail if filler >= 0 else b"x" * size
    return b"event: media_generation_completed\ndata: " + data + b"\n\n"


async def _wait(sub: Subscriber, at_most: float) -> None:
    # Cleared here, with no await since the buffer was found empty: no wake-up is lost.
    sub.wake.clear()
    try:
        async with asyncio.timeout(at_most):
            await sub.wake.wait()
    except TimeoutError:
        pass

"""Generations and the bounded worker pool that runs them.

A generation goes `queued -> processing -> succeeded | failed`, or to `cancelled` from either
active state. `workers` tasks take generations off one FIFO queue, so a burst queues up like it
does on the real service. The pool knows nothing of HTTP or events: it calls `finished(gen)`
once per generation that reaches `succeeded` or `failed` by itself (never for cancelled ones),
`started(gen)` when one starts processing, and `cancel(gen)` for a generation the
`silent_cancel_rate` fault cancels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import _edits
from ._faults import FAILURE_MESSAGES, Faults
from ._schemas import Model, ParamError, check_params

__all__ = ["ACTIVE", "STATUSES", "Generation", "WorkerPool"]

logger = logging.getLogger("oxedit.testing")

ACTIVE = frozenset({"queued", "processing"})
STATUSES = ("queued", "processing", "succeeded", "failed", "cancelled")

# Edits of inputs above this many bytes run in a thread, smaller ones inline. Measured on 2
# cores, 8 workers, noise PNGs (jobs/s inline vs thread): 8x8 4,300 vs 2,500; 48x48 (7 KB)
# 2,300 vs 1,900; 64x64 (12 KB) 1,560 vs 1,690; 256x256 (197 KB) 105 vs 194. Pillow releases
# the GIL while it decodes and encodes, so big edits gain the second core; for tiny ones the
# thread hop costs more than the edit.
OFFLOAD_BYTES = 8 * 1024


class Generation:
    """The server's record of one generation (or of one blocking edit, `visible=False`)."""

    __slots__ = (
        "completed_at",
        "completed_time",
        "enqueued_at",
        "error_message",
        "event_pending",
        "event_seq",
        "failure_is_params",
        "future",
        "id",
        "model",
        "output_format",
        "params",
        "result",
        "started_at",
        "status",
        "targets",
        "visible",
    )

    def __init__(
        self,
        id: str,
        model: Model,
        params: dict[str, Any],
        targets: dict[str, Any],
        *,
        visible: bool = True,
    ) -> None:
        self.id = id
        self.model = model
        self.params = params  # the model's own parameters, as sent
        self.targets = targets  # target_namespace / target_repo / target_directory, as sent
        self.visible = visible
        self.status = "queued"
        self.error_message: str | None = None
        self.failure_is_params = False
        self.enqueued_at = int(time.time())
        self.started_at: int | None = None
        self.completed_at: int | None = None
        self.completed_time: float | None = None
        self.result: bytes | None = None
        # Unset: the model's documented default (webp for flux-kontext-dev, png for qwen).
        fmt = params.get("output_format")
        if fmt is None and "output_format" in model.properties:
            fmt = model.properties["output_format"].default
        self.output_format = fmt if fmt in _edits.CONTENT_TYPES else "png"
        self.future: asyncio.Future[None] | None = None
        self.event_seq = 0  # sequence number of its last published event (0: none)
        self.event_pending = False  # its event is scheduled but not published (delay fault)

    @property
    def file_name(self) -> str:
        return f"{self.id}.{self.output_format}"

    def finish(self, status: str, error: str | None = None) -> None:
        now = time.time()
        self.status = status
        self.error_message = error
        self.completed_time = now
        self.completed_at = int(now)

    def row(self, result_url: str | None) -> dict[str, Any]:
        """The row of `GET /api/ai/queue/{id}`: request parameters echoed at top level."""
        row = {**self.params, **self.targets}
        row.update(
            generation_id=self.id,
            model_name=self.model.id,
            prompt=self.params.get("prompt"),
            media_type="image",
            status=self.status,
            result_url=result_url,
            error_message=self.error_message,
            enqueued_at=self.enqueued_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
        )
        return row


class JobFailed(Exception):
    def __init__(self, message: str, *, params: bool) -> None:
        super().__init__(message)
        self.message = message
        self.params = params


class WorkerPool:
    """`workers` tasks running queued generations, FIFO."""

    def __init__(
        self,
        workers: int,
        faults: Faults,
        fetch: Callable[[str], Awaitable[bytes]],
        finished: Callable[[Generation], None],
        cancel: Callable[[Generation], None],
        started: Callable[[Generation], None],
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._workers = workers
        self._faults = faults
        self._fetch = fetch
        self._finished = finished
        self._cancel = cancel
        self._started = started
        self._queue: asyncio.Queue[Generation] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._work(), name=f"oxedit-worker-{i}")
            for i in range(self._workers)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, gen: Generation) -> None:
        self._queue.put_nowait(gen)

    async def _work(self) -> None:
        while True:
            gen = await self._queue.get()
            if gen.status != "queued":  # cancelled while waiting
                continue
            gen.status = "processing"
            gen.started_at = int(time.time())
            self._started(gen)
            try:
                result = await self._run(gen)
            except JobFailed as exc:
                if gen.status == "processing":
                    gen.failure_is_params = exc.params
                    gen.finish("failed", exc.message)
                    self._finished(gen)
            except Exception:
                logger.exception("generation %s crashed", gen.id)
                if gen.status == "processing":
                    gen.finish("failed", "Internal server error")
                    self._finished(gen)
            else:
                # A cancel that arrived while the edit ran wins: the row stays cancelled
                # and no event is sent.
                if gen.status == "processing":
                    gen.result = result
                    gen.finish("succeeded")
                    self._finished(gen)

    async def _run(self, gen: Generation) -> bytes:
        faults = self._faults
        delay = faults.draw(faults.latency)
        if gen.visible and faults.roll(faults.silent_cancel_rate):
            # Cancelled by someone else halfway through: like a DELETE from another process.
            await asyncio.sleep(delay / 2)
            self._cancel(gen)
            return b""
        if delay:
            await asyncio.sleep(delay)
        if gen.status != "processing":
            return b""
        if faults.roll(faults.failure_rate):
            raise JobFailed(faults.choice(FAILURE_MESSAGES), params=False)
        try:
            check_params(gen.model, gen.params)
        except ParamError as exc:
            raise JobFailed(str(exc), params=True) from None
        images = gen.params["input_image"]
        uris = images if isinstance(images, list) else [images]
        inputs = [await self._load(uri) for uri in uris]
        aspect = gen.params.get("aspect_ratio")
        if aspect is None and "aspect_ratio" in gen.model.properties:
            aspect = gen.model.properties["aspect_ratio"].default
        kwargs: dict[str, Any] = {"aspect_ratio": aspect, "output_format": gen.output_format}
        try:
            if sum(len(b) for b in inputs) > OFFLOAD_BYTES:
                return await asyncio.to_thread(_edits.edit, inputs, gen.params["prompt"], **kwargs)
            return _edits.edit(inputs, gen.params["prompt"], **kwargs)
        except _edits.EditError as exc:
            raise JobFailed(str(exc), params=True) from None

    async def _load(self, uri: str) -> bytes:
        try:
            if uri.startswith("data:"):
                return _edits.parse_data_uri(uri)
            return await self._fetch(uri)
        except _edits.EditError as exc:
            raise JobFailed(str(exc), params=True) from None

"""Bulk fan-out: `client.map(requests)`, bounded, resumable through a journal.

Items flow through `BulkRun`: recorded in the journal before they are enqueued, awaited over
the client's shared event stream, downloaded, recorded as finished. A re-run with the same
journal sends only what was never sent: finished items are skipped, enqueued ones followed,
and items caught mid-send by a crash are looked up on the server before anything is re-sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import msgspec

from ._atomic import remove_own_temps
from ._bulk_finish import RunContext, describe, disk_full, finish, unknown_outcome
from ._bulk_resume import recover_unrecorded
from ._cost import Spending, check_request, generations_of
from ._exceptions import (
    AmbiguousRequestError,
    InsufficientCreditsError,
    InvalidRequestError,
    OxeditError,
)
from ._history import to_decimal
from ._job import Job
from ._journal import FINISHED, Journal, JournalEntry
from ._registry import Pending
from ._requests import BulkItem, BulkResult, EditRequest, check_name, coerce, default_name

if TYPE_CHECKING:
    from ._tracker import Tracker

__all__ = ["BulkRun"]

log = logging.getLogger("oxedit")


_DONE: Final = object()


class BulkRun:
    """Async iterator of `BulkResult`s in completion order; see `Client.map`.

    Use it with `async with` so that leaving early (break, exception) cancels what is in
    flight at once. Items cancelled that way stay in the journal as enqueued or sending and
    are picked up by the next run. On a full disk it stops sending new items (`stopped`).

    Args (of `Client.map`):
        requests: `EditRequest`s, or mappings with `image`, `prompt` and parameters; a plain
            or async iterable, consumed as slots free up. An `OxeditError` item stands for a
            row that could not be parsed and becomes that item's error.
        concurrency: Items enqueued and not finished, at most.
        journal: A SQLite file recording every item: a re-run with the same journal sends
            nothing that was already sent.
        output_dir: Save each result there, atomically, named after the request's `name` or
            its image's stem.
        retry_failed: Re-send items whose earlier run failed (they may be billed again).
        max_cost: USD the batch may spend, earlier runs of its journal included: a sized
            input estimated above it is refused unsent (`InvalidRequestError`); else sending
            stops before the item that would pass it (`stopped`, `stopped_at`).
        unknown_cost: USD assumed per generation of a model with unknown pricing.
    """

    def __init__(
        self,
        tracker: Tracker,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        concurrency: int,
        journal: str | os.PathLike[str] | None,
        output_dir: str | os.PathLike[str] | None,
        retry_failed: bool,
        max_cost: Decimal | None = None,
        unknown_cost: Decimal | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidRequestError(f"concurrency={concurrency!r} must be at least 1")
        self._tracker = tracker
        self._requests = requests
        self._concurrency = concurrency
        self._journal_path = journal
        self._journal: Journal | None = None
        self._output_dir = Path(output_dir) if output_dir is not None else None
        self._retry_failed = retry_failed
        self._results: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._names: Counter[str] = Counter()
        self._keys: Counter[bytes] = Counter()
        self._adopted: dict[str, Pending] = {}  # found on the server by `recover_unrecorded`
        self._spending = Spending(
            tracker, tracker.api, max_cost=max_cost, unknown_cost=unknown_cost
        )
        self.in_flight = 0
        #: Why the run stopped sending new items before the end of its input (a full disk,
        #: the cap, a 402), or None. Items in flight then were finished; the rest not started.
        self.stopped: str | None = None
        #: The index of the first item it did not send because it stopped (None if unknown).
        self.stopped_at: int | None = None
        #: Generations of items enqueued (or followed) and not finished yet: what stopping the
        #: run early leaves running (`SyncClient` cancels them when there is no journal).
        self.unfinished: set[str] = set()

    # -- iteration ---------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[BulkResult]:
        return self

    async def __anext__(self) -> BulkResult:
        self._start()
        item = await self._results.get()
        if item is _DONE:
            await self.aclose()
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            await self.aclose()
            raise item
        assert isinstance(item, BulkResult)
        return item

    async def aclose(self) -> None:
        """Stop: cancel every item in flight and close the journal."""
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _start(self) -> None:
        if self._closed:
            raise OxeditError("this batch run is closed; call client.map(...) again to resume")
        if self._task is None:
            self._tracker.require_open()
            if self._journal_path is not None:
                self._journal = Journal(self._journal_path)
            self._task = asyncio.create_task(self._run(), name="oxedit-map")

    # -- the run -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._output_dir is not None:
                remove_own_temps(self._output_dir)
            journal = self._journal
            if journal is not None:
                self._adopted = await recover_unrecorded(self._tracker, journal, self._payload)
            self._spending.start(journal.spent() if journal is not None else Decimal(0))
            source = self._requests
            if self._spending.budget is not None and isinstance(source, Collection):
                await self._spending.check_all(await self._to_send(source))
            slots = asyncio.Semaphore(self._concurrency)
            async with asyncio.TaskGroup() as group:
                index = 0
                async for request in self._iterate():
                    await slots.acquire()
                    key, charged = None, None
                    if self.stopped is None and isinstance(request, EditRequest):
                        key, charged = await self._admit(index, request)
                    if self.stopped is not None:
                        slots.release()
                        break
                    group.create_task(self._item(index, request, key, charged, slots))
                    index += 1
            self._results.put_nowait(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the source itself failed: surface it to the reader
            self._results.put_nowait(exc)

    async def _iterate(self) -> AsyncIterator[EditRequest | OxeditError]:
        source = self._requests
        if isinstance(source, AsyncIterable):
            async for item in source:
                yield coerce(item)
        else:
            for item in source:
                yield coerce(item)

    def _key(self, request: EditRequest, seen: Counter[bytes] | None = None) -> str:
        """Stable identity across runs: the request's content, plus which repetition it is."""
        encoded = request.encoded()
        seen = self._keys if seen is None else seen
        seen[encoded] += 1
        digest = hashlib.sha256(encoded).hexdigest()[:24]
        return f"{digest}-{seen[encoded]}"

    def _will_send(self, key: str) -> bool:
        entry = self._journal.get(key) if self._journal is not None else None
        return entry is None or entry.will_send(self._retry_failed)

    async def _to_send(self, source: Collection[Any]) -> list[EditRequest]:
        """The valid items of a sized input that this run would send, for the cap's check."""
        seen: Counter[bytes] = Counter()
        found = []
        for item in source:
            request = coerce(item)
            if not isinstance(request, EditRequest):
                continue
            try:
                if self._will_send(self._key(request, seen)):
                    await check_request(request)
                    found.append(request)
            except Exception:  # refused before sending (or unencodable): costs nothing
                continue
        return found

    async def _admit(self, index: int, request: EditRequest) -> tuple[str | None, Decimal | None]:
        """The item's key and what it is charged (None: nothing, or unknown); sets `stopped`
        when the cap does not let it go."""
        try:
            key = self._key(request)
        except Exception:  # unencodable (a lone surrogate...): that item's error, in _process
            return None, None
        if not self._will_send(key):
            return key, None
        if self._spending.budget is not None:
            try:  # an item refused before sending costs nothing: it must not stop the run
                await check_request(request)
            except OxeditError:
                return key, None
        amount, reason = await self._spending.charge(index, request)
        if reason is not None:
            self._stop(index, reason)
        return key, amount

    def _stop(self, index: int | None, reason: str) -> None:
        if self.stopped is None:
            self.stopped, self.stopped_at = reason, index
            log.warning("stopping the batch: %s", reason)

    def _output_path(self, request: EditRequest, key: str) -> Path | None:
        if self._output_dir is None:
            return None
        name = request.name or default_name(request.image)
        self._names[name] += 1
        if self._names[name] > 1:
            name = f"{name}-{key[:8]}"
        return self._output_dir / name

    async def _item(
        self,
        index: int,
        request: EditRequest | OxeditError,
        key: str | None,
        charged: Decimal | None,
        slots: asyncio.Semaphore,
    ) -> None:
        self.in_flight += 1
        try:
            result = await self._process(index, request, key, charged)
            self.unfinished.difference_update(result.generation_ids)
        except Exception as exc:  # one item's failure is that item's result
            # Whatever escaped (a journal write on a full disk, a bug, an odd response body)
            # ends this item only. Its journal row keeps its last state, which a re-run
            # resolves without sending anything twice.
            self._check_disk_full(exc)
            bad = request if isinstance(request, EditRequest) else EditRequest(image="", prompt="")
            result = BulkResult(index, bad, "error", error=describe(exc))
        finally:
            self.in_flight -= 1
            slots.release()
        self._results.put_nowait(result)

    async def _process(
        self,
        index: int,
        request: EditRequest | OxeditError,
        key: str | None,
        charged: Decimal | None,
    ) -> BulkResult:
        if isinstance(request, OxeditError):  # a malformed input row
            bad = EditRequest(image="", prompt="")
            return BulkResult(index, bad, "error", error=str(request))
        if request.name is not None:
            try:
                check_name(request.name)
            except InvalidRequestError as exc:
                return BulkResult(index, request, "error", error=str(exc))
        key = key if key is not None else self._key(request)
        stem = self._output_path(request, key)
        journal = self._journal
        entry = journal.get(key) if journal is not None else None
        if entry is not None and entry.state in FINISHED:
            estimated, cost = to_decimal(entry.estimate), to_decimal(entry.cost)
            paths = [Path(p) for p in entry.output_paths]
            ids = tuple(entry.generation_ids)
            kept = len(paths) == len(ids) and all(p.exists() for p in paths)
            if entry.state == "succeeded" and (stem is None or kept):
                return BulkResult(
                    index, request, "succeeded", entry.generation_id,
                    output=paths[0] if paths else None, outputs=tuple(paths),
                    generation_ids=ids, resumed=True, estimated_cost=estimated, cost=cost,
                )  # fmt: skip
            never_sent = entry.state == "error" and entry.generation_id is None
            if entry.state != "succeeded" and not never_sent and not self._retry_failed:
                return BulkResult(
                    index,
                    request,
                    entry.state,
                    entry.generation_id,
                    error=entry.error,
                    generation_ids=tuple(entry.generation_ids),
                    resumed=True,
                    estimated_cost=estimated,
                    cost=cost,
                )
        try:
            jobs = await self._enqueue(request, key, entry, charged)
        except AmbiguousRequestError as exc:
            # It may have been created: the row stays 'sending', and the next run looks it
            # up on the server before sending anything.
            error = unknown_outcome(self._journal is not None, exc, None)
            return BulkResult(index, request, "unknown", error=error, estimated_cost=charged)
        except OxeditError as exc:
            self._spending.settle(charged, Decimal(0))  # refused: nothing created or billed
            if isinstance(exc, InsufficientCreditsError):
                # Every next item would be refused the same way: stop sending.
                self._stop(
                    index,
                    f"the API refused item {index} ({request.image}) for lack of credits "
                    f"({exc.message}); no new items were sent. Add credits, then run again "
                    "to continue",
                )
            if journal is not None:
                journal.rejected(key, request.encoded().decode(), str(exc))
            return BulkResult(index, request, "error", error=str(exc))
        run = RunContext(self._journal, self._tracker, self._spending, self._check_disk_full)
        return await finish(run, index, request, key, jobs, stem, charged)

    async def _enqueue(
        self, request: EditRequest, key: str, entry: JournalEntry | None, charged: Decimal | None
    ) -> list[Job]:
        if (
            entry is not None
            and entry.generation_id is not None
            and (entry.state in ("enqueued", "succeeded"))
        ):
            # Sent by an earlier run: follow it, never send it again.
            self.unfinished.update(entry.generation_ids)
            return [self._follow(generation_id) for generation_id in entry.generation_ids]
        payload = await self._payload(request)
        journal = self._journal
        on_send = None
        if journal is not None:
            encoded = request.encoded().decode()
            journal.sending(key, encoded, estimate=charged)

            def on_send(at: float, journal: Journal = journal) -> None:
                # Each attempt's send time: a crash recovery adopts only a row enqueued within
                # the last POST's deadline after it, never another batch's later identical row.
                journal.sending(key, encoded, at)

        n = payload.get("num_generations", 1)
        jobs = await self._tracker.enqueue(payload, n, on_send=on_send)
        self.unfinished.update(job.id for job in jobs)
        if journal is not None:
            journal.enqueued(key, *(job.id for job in jobs))
        return jobs

    def _follow(self, generation_id: str) -> Job:
        pending = self._adopted.pop(generation_id, None)
        if pending is not None:  # found on the server by the crash recovery
            return self._tracker.job(pending)
        return self._tracker.follow(generation_id)

    async def _payload(self, request: EditRequest) -> dict[str, Any]:
        if self._tracker.uploader is not None:  # the hosted URL goes in the request sent
            image = await self._tracker.hosted(request.image)
            request = msgspec.structs.replace(request, image=str(image))
        payload = await check_request(request)
        generations = generations_of(request)
        if generations > 1:  # one enqueue, several generations
            payload["num_generations"] = generations
        return payload

    def _check_disk_full(self, exc: BaseException) -> None:
        """On a full disk, stop sending new items: their results could not be kept."""
        if disk_full(exc):
            self._stop(None, f"the disk is full ({exc}); no new items were sent")

"""Bulk fan-out: `client.map(requests)`, bounded, resumable through a journal.

Items flow through `BulkRun`: recorded in the journal before they are enqueued, awaited over
the client's shared event stream, downloaded, recorded as finished. A re-run with the same
journal sends only what was never sent: finished items are skipped, enqueued ones followed,
and items caught mid-send by a crash are looked up on the server before anything is re-sent.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sqlite3
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Self

import anyio
import msgspec

from .. import _constants as C
from .._atomic import remove_own_temps, save_atomic
from .._engine.job import Job
from .._exceptions import (
    AmbiguousRequestError,
    GenerationCancelled,
    GenerationExpired,
    GenerationFailed,
    InsufficientCreditsError,
    InvalidRequestError,
    OxeditError,
)
from .._resources.history import to_decimal
from .._resources.inputs import sniff_mime
from .cost import Spending, check_request, generations_of
from .journal import FINISHED, Journal, JournalEntry, is_legacy, item_key, legacy_key
from .names import OutputNames
from .requests import (
    BulkItem,
    BulkResult,
    EditRequest,
    bulk_status,
    canonical,
    check_name,
    coerce,
    default_name,
    file_digest,
    identity,
    is_local,
)
from .resume import migrate_legacy, recover_unrecorded
from .shard import Shard

if TYPE_CHECKING:
    from .._engine.tracker import Tracker

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
        shard: Run only the items of this shard (see `_bulk.shard`): the others are skipped
            unseen, neither journaled, charged nor yielded (indexes stay input positions).
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
        shard: Shard | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidRequestError(f"concurrency={concurrency!r} must be at least 1")
        self._tracker = tracker
        self._requests = requests
        self._concurrency = concurrency
        self._journal_path = journal
        self._journal: Journal | None = None
        # Absolute: the journal records outputs, and a later run may start in another folder.
        self._output_dir = Path(os.path.abspath(output_dir)) if output_dir is not None else None
        self._names: OutputNames | None = None
        self._retry_failed = retry_failed
        self._shard = shard
        self._results: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._keys: Counter[bytes] = Counter()  # repetitions of each identity
        self._legacy_keys: Counter[bytes] = Counter()  # and of each request as written
        self._legacy = False  # the journal holds rows keyed the old way, not yet matched
        self._digests: dict[tuple[str, int, int], str] = {}  # local images' content hashes
        self._unreported: dict[int, EditRequest | OxeditError] = {}
        #: Each item's journal key, by its index in the input (items that have one).
        self.keys: dict[int, str] = {}
        self._checked = asyncio.Event()  # the whole-batch checks are done
        self._refused: BaseException | None = None  # what refused the whole batch
        self._new_journal = False  # this run created the journal file
        self._adopted: dict[str, Job] = {}  # found on the server by `recover_unrecorded`
        self._spending = Spending(
            tracker, tracker.api, max_cost=max_cost, unknown_cost=unknown_cost
        )
        self.in_flight = 0
        #: Other processes write to the output folder too (set before it starts).
        self.shared_folder = False
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
        self._unreported.pop(item.index, None)
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
                self._new_journal = not Path(self._journal_path).exists()
                self._journal = Journal(self._journal_path)
            self._task = asyncio.create_task(self._run(), name="oxedit-map")

    # -- the run -----------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            if self._output_dir is not None:
                # A folder other processes write to (shards, Ray actors): their writes of the
                # moment are not a crash's leftovers.
                shared = self._shard is not None or self.shared_folder
                remove_own_temps(self._output_dir, C.SHARED_TEMP_GRACE if shared else 0.0)
            journal = self._journal
            if journal is not None:
                migrate_legacy(journal)
                self._adopted = await recover_unrecorded(self._tracker, journal, self._payload)
                self._legacy = any(is_legacy(entry.key) for entry in journal.entries())
            if self._output_dir is not None:
                entries = journal.entries() if journal is not None else []
                self._names = OutputNames(self._output_dir, entries)
            self._spending.start(journal.spent() if journal is not None else Decimal(0))
            source = self._requests
            if self._spending.budget is not None and isinstance(source, Collection):
                try:
                    await self._spending.check_all(await self._to_send(source))
                except InvalidRequestError:
                    self._discard_journal()  # refused whole: nothing to resume
                    raise
            self._checked.set()
            slots = asyncio.Semaphore(self._concurrency)
            async with asyncio.TaskGroup() as group:
                index = 0
                async for request in self._iterate():
                    known: str | None = None
                    if self._shard is not None:  # another shard's item: not even counted
                        mine, known = await self._mine(index, request)
                        if not mine:
                            index += 1
                            continue
                    await slots.acquire()
                    key, charged = known, None
                    if self.stopped is None and isinstance(request, EditRequest):
                        key, charged = await self._admit(index, request, known)
                    if self.stopped is not None:
                        slots.release()
                        break
                    self._unreported[index] = request
                    group.create_task(self._item(index, request, key, charged, slots))
                    index += 1
            self._results.put_nowait(_DONE)
        except asyncio.CancelledError:
            if not self._checked.is_set():  # closed before it began: `ready()` must not wait
                self._refused = OxeditError("this batch run was closed before it began")
                self._checked.set()
            raise
        except BaseException as exc:  # the source itself failed: surface it to the reader
            if not self._checked.is_set():
                self._refused = exc
                self._checked.set()
            self._results.put_nowait(exc)

    async def ready(self) -> None:
        """Wait until the run has made its whole-batch checks (its journal opened, items a
        crash left mid-send resolved, the cap) and begun sending. Raises what refused the
        batch, before anything was sent (`InvalidRequestError` for the cap...)."""
        self._start()
        await self._checked.wait()
        if self._refused is not None:
            raise self._refused

    def _discard_journal(self) -> None:
        """Remove the journal this run created, with nothing in it."""
        journal = self._journal
        if journal is None or not self._new_journal or journal.entries():
            return
        journal.close()
        self._journal = None
        for suffix in ("-wal", "-shm", ".lock", ""):
            Path(str(journal.path) + suffix).unlink(missing_ok=True)

    async def _iterate(self) -> AsyncIterator[EditRequest | OxeditError]:
        source = self._requests
        if isinstance(source, AsyncIterable):
            async for item in source:
                yield coerce(item)
        else:
            for item in source:
                yield coerce(item)

    async def _key(
        self,
        request: EditRequest,
        seen: Counter[bytes] | None = None,
        seen_legacy: Counter[bytes] | None = None,
    ) -> str:
        """The item's journal key, the same in every run from any folder: its identity (see
        `_requests.identity`), plus which repetition of it it is. A row an older oxedit
        keyed by the request as written is re-keyed when this request matches it."""
        ident = await self._identity(request)
        seen = self._keys if seen is None else seen
        seen[ident] += 1
        key = item_key(ident, seen[ident])
        journal = self._journal
        if self._legacy and journal is not None:  # only journals of older versions
            encoded = request.encoded()
            seen_legacy = self._legacy_keys if seen_legacy is None else seen_legacy
            seen_legacy[encoded] += 1
            old = legacy_key(encoded, seen_legacy[encoded])
            if journal.get(key) is None and journal.get(old) is not None:
                journal.rekey(old, key, canonical(request).encoded().decode())
        return key

    async def _identity(self, request: EditRequest) -> bytes:
        if not request.image or not is_local(request.image):
            return identity(request)
        cache = _file_version(request.image)
        if cache is None:
            return identity(request)  # identified by its path; its payload fails anyway

        def digest(path: str) -> str:
            known = self._digests.get(cache)
            if known is None:
                known = self._digests[cache] = file_digest(path)
            return known

        if cache in self._digests or cache[1] <= C.BULK_HASH_INLINE_BYTES:
            return identity(request, digest)
        # A large file is hashed off the event loop; small ones cost less than the hop.
        return await anyio.to_thread.run_sync(identity, request, digest)

    async def share(self, source: Collection[Any]) -> int:
        """How many items of the sized input `source` are this run's shard's (all of them
        without a shard): a progress bar's total. Images are hashed once, for the run too."""
        if self._shard is None:
            return len(source)
        seen: Counter[bytes] = Counter()
        mine = 0
        for position, item in enumerate(source):
            request = coerce(item)
            if isinstance(request, EditRequest):
                try:
                    ident = await self._identity(request)
                    seen[ident] += 1
                    key = item_key(ident, seen[ident])
                except Exception:
                    mine += self._shard.owns_unkeyed(position)
                    continue
                mine += self._shard.owns(key)
            else:
                mine += self._shard.owns_unkeyed(position)
        return mine

    def _will_send(self, key: str) -> bool:
        entry = self._journal.get(key) if self._journal is not None else None
        return entry is None or entry.will_send(self._retry_failed)

    async def _to_send(self, source: Collection[Any]) -> list[EditRequest]:
        """The valid items of a sized input that this run would send, for the cap's check."""
        seen: Counter[bytes] = Counter()
        seen_legacy: Counter[bytes] = Counter()
        found = []
        for item in source:
            request = coerce(item)
            if not isinstance(request, EditRequest):
                continue
            try:
                key = await self._key(request, seen, seen_legacy)
                if self._shard is not None and not self._shard.owns(key):
                    continue  # another shard's: counted against that shard's cap
                if self._will_send(key):
                    await check_request(request)
                    found.append(request)
            except Exception:  # refused before sending (or unencodable): costs nothing
                continue
        return found

    async def _mine(
        self, index: int, request: EditRequest | OxeditError
    ) -> tuple[bool, str | None]:
        """Whether the item at input `index` belongs to this run's shard, and its key."""
        assert self._shard is not None
        if isinstance(request, EditRequest):
            try:
                key = await self._key(request)
            except Exception:  # unencodable: no key, placed by its position like a bad row
                return self._shard.owns_unkeyed(index), None
            return self._shard.owns(key), key
        return self._shard.owns_unkeyed(index), None

    async def _admit(
        self, index: int, request: EditRequest, key: str | None = None
    ) -> tuple[str | None, Decimal | None]:
        """The item's key (`key` when known already) and what it is charged (None: nothing,
        or unknown); sets `stopped` when the cap does not let it go."""
        if key is None:
            try:
                key = await self._key(request)
            except Exception:  # unencodable (a lone surrogate...): its error, in _process
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

    def _output_stems(
        self, request: EditRequest, key: str, entry: JournalEntry | None
    ) -> list[Path] | None:
        """The item's output paths without extension, one per generation (None: no output
        folder), reserved so that no other item's output and no foreign file is overwritten."""
        if self._names is None:
            return None
        try:
            generations = generations_of(request)
        except InvalidRequestError:
            generations = 1  # refused before sending: its names are never written
        base = request.name or default_name(request.image)
        return self._names.claim(key, base, generations, entry.stems if entry else [])

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
        key = key if key is not None else await self._key(request)
        self.keys[index] = key
        journal = self._journal
        entry = journal.get(key) if journal is not None else None
        stems = self._output_stems(request, key, entry)
        if entry is not None and entry.state in FINISHED:
            estimated, cost = to_decimal(entry.estimate), to_decimal(entry.cost)
            paths = [Path(p) for p in entry.output_paths]
            ids = tuple(entry.generation_ids)
            kept = len(paths) == len(ids) and all(p.exists() for p in paths)
            if entry.state == "succeeded" and (stems is None or kept):
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
                    bulk_status(entry.state),
                    entry.generation_id,
                    error=entry.error,
                    generation_ids=tuple(entry.generation_ids),
                    resumed=True,
                    estimated_cost=estimated,
                    cost=cost,
                )
        if charged is None and entry is not None and not entry.will_send(self._retry_failed):
            # Sent by an earlier run: its estimate was counted in the spend it started with,
            # and is what its actual cost replaces when it ends.
            charged = to_decimal(entry.estimate)
        try:
            jobs = await self._enqueue(request, key, entry, charged, stems)
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
                journal.rejected(key, canonical(request).encoded().decode(), str(exc))
            return BulkResult(index, request, "error", error=str(exc))
        return await self._finish(index, request, key, jobs, stems, charged)

    async def _enqueue(
        self,
        request: EditRequest,
        key: str,
        entry: JournalEntry | None,
        charged: Decimal | None,
        stems: list[Path] | None,
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
            encoded = canonical(request).encoded().decode()
            names = [stem.name for stem in stems] if stems is not None else None
            journal.sending(key, encoded, estimate=charged, names=names)

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

    def absorb(self, entry: JournalEntry, adopted: dict[str, Job] | None = None) -> None:
        """Take over an item another process's journal holds (sent by an `oxedit.ray` actor
        that died), before it is fed to this run, which then follows it instead of sending
        it; `adopted`: its generations, found on the server by a crash recovery. Needs the
        run started with a journal."""
        assert self._journal is not None, "absorb needs a run with a journal, started"
        self._journal.absorb(entry)
        self._adopted.update(adopted or {})

    async def recover(self, journal: Journal, claimed: Collection[str] = ()) -> dict[str, Job]:
        """Resolve the items another process's journal left mid-send (an `oxedit.ray` actor
        that died; the caller holds its lock), as a resume resolves its own: what their POST
        created is adopted (returned by generation id, for `absorb`), the rest is marked
        unsent. `claimed`: generations other journals own (never adopted)."""
        return await recover_unrecorded(self._tracker, journal, self._payload, claimed)

    def _follow(self, generation_id: str) -> Job:
        adopted = self._adopted.pop(generation_id, None)
        if adopted is not None:  # found on the server by the crash recovery
            return adopted
        return self._tracker.follow(generation_id)

    def unreported(self) -> list[tuple[int, EditRequest | OxeditError]]:
        """The items this run started and has not yielded a result for (in flight when it
        was closed early): `(index, request)`, in input order. Their outcome is unknown to
        this run; a re-run with the same journal follows or sends them, never twice."""
        return sorted(self._unreported.items(), key=lambda pair: pair[0])

    async def _payload(self, request: EditRequest) -> dict[str, Any]:
        if self._tracker.uploader is not None:  # the hosted URL goes in the request sent
            image = await self._tracker.hosted(request.image)
            request = msgspec.structs.replace(request, image=str(image))
        payload = await check_request(request)
        generations = generations_of(request)
        if generations > 1:  # one enqueue, several generations
            payload["num_generations"] = generations
        return payload

    async def _finish(
        self,
        index: int,
        request: EditRequest,
        key: str,
        jobs: list[Job],
        stems: list[Path] | None,
        charged: Decimal | None,
    ) -> BulkResult:
        """Await the item's generations (one per `num_generations`), save each result to its
        reserved name in `stems` (one per generation, without extension), record the outcome;
        the item's result."""
        journal = self._journal
        ids = tuple(job.id for job in jobs)
        outcomes = await asyncio.gather(*(_outcome(job) for job in jobs))
        for job, (status, value) in zip(jobs, outcomes, strict=True):
            if status == "unknown":
                # Lost track of it (stream refused, client closed, an odd event...): its outcome
                # is unknown, not failed. The row stays 'enqueued': a re-run follows it, never
                # re-sends it.
                error = unknown_outcome(journal is not None, value, job.id)
                return BulkResult(
                    index, request, "unknown", ids[0], error=error, estimated_cost=charged,
                    generation_ids=ids,
                )  # fmt: skip
        billed = [
            job.id for job, (status, _) in zip(jobs, outcomes, strict=True) if status != "error"
        ]
        cost = await self._cost(key, billed, charged) if billed else None
        several = len(jobs) > 1
        state, problems, outputs, unsaved = "succeeded", [], [], None
        for number, (status, value) in enumerate(outcomes, 1):
            if status != "succeeded":
                state = status if state == "succeeded" else state
                problems.append(
                    f"generation {number} of {len(jobs)}: {value}" if several else value
                )
            elif stems is not None:
                stem = stems[number - 1]
                try:
                    data = await self._tracker.read(value)
                    extension = _EXTENSIONS.get(sniff_mime(data) or "", ".png")
                    output = stem.with_name(stem.name + extension)
                    await save_atomic(output, data)
                    outputs.append(output)
                except Exception as exc:  # an odd body, a full disk...: this item's error
                    self._check_disk_full(exc)
                    unsaved = unsaved or ("save" if isinstance(exc, OSError) else "download", exc)
        saved = [str(p) for p in outputs] if several else None
        first = str(outputs[0]) if outputs else None
        if state != "succeeded":
            error = "; ".join(problems)
            if journal is not None:
                journal.finished(key, state, error=error, output=first, outputs=saved)
            return BulkResult(
                index, request, bulk_status(state), ids[0], error=error,
                output=outputs[0] if outputs else None, outputs=tuple(outputs), generation_ids=ids,
                estimated_cost=charged, cost=cost,
            )  # fmt: skip
        if unsaved is not None:
            # Recorded as succeeded without (all) its outputs: a re-run downloads them again
            # (it never re-sends a succeeded generation).
            what, problem = unsaved
            if journal is not None:
                journal.finished(key, "succeeded", error=f"{what} failed: {problem}", outputs=saved)
            return BulkResult(
                index, request, "error", ids[0],
                error=f"generation succeeded but its {what} failed: {describe(problem)}; re-run to "
                "retry the download",
                outputs=tuple(outputs), generation_ids=ids, estimated_cost=charged, cost=cost,
            )  # fmt: skip
        if journal is not None:
            journal.finished(key, "succeeded", output=first, outputs=saved)
        return BulkResult(
            index, request, "succeeded", ids[0], output=outputs[0] if outputs else None,
            outputs=tuple(outputs), generation_ids=ids, estimated_cost=charged, cost=cost,
        )  # fmt: skip

    async def _cost(
        self, key: str, ids: list[str], charged: Decimal | None
    ) -> Decimal | None:
        """What the ended generations cost, from the history (None: not known); recorded, and
        it replaces the item's charge against the cap."""
        cost = await self._spending.actual(ids)
        if cost is not None:
            if self._journal is not None:
                self._journal.costed(key, cost)
            self._spending.settle(charged, cost)
        return cost

    def _check_disk_full(self, exc: BaseException) -> None:
        """On a full disk, stop sending new items: their results could not be kept."""
        if disk_full(exc):
            self._stop(None, f"the disk is full ({exc}); no new items were sent")


def _file_version(path: str) -> tuple[str, int, int] | None:
    """A local file's resolved path, size and mtime (what its content hash is cached under:
    a file rewritten between two items is hashed again), or None if it cannot be read.
    A stat, no read: cheap enough for the event loop."""
    try:
        info = os.stat(path)
        return os.path.realpath(path), info.st_size, info.st_mtime_ns
    except (OSError, ValueError):
        return None


_EXTENSIONS: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}


async def _outcome(job: Job) -> tuple[str, Any]:
    """How one generation ended: ("succeeded", generation), (status, error text), or
    ("unknown", the exception) when this client lost track of it."""
    try:
        return "succeeded", await job
    except GenerationFailed as exc:
        return "failed", exc.error
    except GenerationCancelled:
        return "cancelled", "the generation was cancelled"
    except GenerationExpired as exc:  # the API forgot it: nothing left to follow
        return "error", str(exc)
    except Exception as exc:
        return "unknown", exc


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def describe(exc: BaseException) -> str:
    """An exception as one line; the type is named when it is not one of ours."""
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OxeditError) else f"{type(exc).__name__}: {text}"


def unknown_outcome(journaled: bool, exc: Exception, generation_id: str | None) -> str:
    """The error text of an item whose outcome is unknown, with what to do next."""
    if journaled:
        hint = "its outcome is unknown: re-run the same batch to follow it (not resent)"
    elif generation_id is not None:
        hint = f"its outcome is unknown: look it up with client.get({generation_id!r})"
    else:
        hint = "it may have been created: look at client.list() before sending it again"
    return f"{describe(exc)}; {hint}"

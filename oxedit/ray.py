"""oxedit on Ray Data: `ds.map_batches(oxedit.ray.Edit, ...)` (`pip install 'oxedit[ray]'`).

Example:
    ```python
    import ray, oxedit.ray

    ds = ray.data.read_json("manifest.jsonl")  # rows: image (URL, path or bytes), prompt
    edited = ds.map_batches(
        oxedit.ray.Edit,
        fn_constructor_kwargs={"output_dir": "/shared/out", "journal_dir": "/shared/journal"},
        concurrency=4,
        batch_size=64,
    )
    edited.write_parquet("/shared/edited")  # + generation_id, status, output_path, error, cost
    ```

What each actor does (an `Edit` instance, in its own process):
- Ray builds the instance before the actor's event loop exists, so its `Client` (one event
  stream per actor) is opened by the first `__call__`, on Ray's loop, and closed when Ray
  tears the actor down (`__del__`).
- One rate budget for every actor: a named Ray actor (`RateBudget`, where the policy is
  explained) leases enqueue tokens, never more than `RAY_LEASE_SECONDS` ahead, and learns
  from every refusal any actor gets (it is the client's `SharedPace`). It starts low and
  doubles while nothing is refused (a slow start), then holds just under what the account
  accepted when it refused (its limit, measured) and probes upward gently.
- Exactly once: every row is journaled (`journal_dir`: one SQLite journal per actor process,
  `oxedit-ray-HOST-PID-ID.sqlite`; a folder every actor reaches) before it is sent. A row is
  what `oxedit batch` calls an item: its key is its image's content (or normalised URL),
  prompt, model, parameters and name, so identical rows are one item. Before sending a row an
  actor looks it up in every journal of the folder: finished somewhere, it is answered from
  there (a re-run sends nothing); sent by an actor that died (Ray re-runs its batch on
  another), it is taken over: the dead journal is locked, what it left mid-send is looked up
  on the server and adopted (`BulkRun.recover`), and the generation is followed, never
  sent again.

Output rows are the input rows plus `generation_id`, `status` (as `BulkResult.status`),
`output_path`, `error`, `cost` (USD as a decimal string; None when unknown) and `resumed`.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Final

import anyio

from . import _constants as C
from ._bulk.journal import FINISHED, Journal, JournalEntry, item_key, peek
from ._bulk.requests import BulkResult, EditRequest, file_digest, identity, is_local
from ._client import Client
from ._config import Limits
from ._exceptions import ConfigurationError, InvalidRequestError, OxeditError
from ._http.retry import RetryPolicy

try:
    import ray
except ImportError as exc:  # pragma: no cover - the extra is not installed
    raise ImportError("oxedit.ray needs Ray Data: pip install 'oxedit[ray]'") from exc

__all__ = ["Edit", "RateBudget", "budget_stats"]

log = logging.getLogger("oxedit")

_JOURNAL_PREFIX: Final = "oxedit-ray-"
_STUCK: Final = (
    "another live actor was still sending this row; its outcome is not known here: re-run "
    "the pipeline to settle it (it is never sent twice)"
)
_OUTPUT_COLUMNS: Final = ("generation_id", "status", "output_path", "error", "cost", "resumed")


# -- the shared rate budget ---------------------------------------------------------------------


class RateBudget:
    """The enqueue budget of every actor of a cluster (the body of the named Ray actor).

    The account's limit is not documented; it is learned from the refusals any actor gets,
    the way TCP learns a path's capacity, with three differences that matter at a token
    bucket's limit (a steady rate plus a burst, refused at once above it):

    - **Slow start.** The rate starts at `RAY_RATE_START` (or the explicit `max_rate`) and,
      until the first refusal, every enqueue accepted adds `RAY_SLOW_START_GAIN`/s (at full
      use, a doubling about every half second), at most `RAY_RATE_HEADROOM` times what was
      accepted over the last second: a rate the actors do not use is not grown, so a slow
      first batch cannot leave a rate that bursts later. The first overshoot is bounded by
      the turns already promised (below) and what is sent before the first refusal reaches
      the budget: 10-25 refusals at a 50/s limit with a burst of 20.
    - **Decrease to what the account took.** On a refusal the rate becomes
      `RAY_RATE_DECREASE` of the lower of itself and what was accepted over the last second:
      past a token bucket's limit, what it accepts is its rate, so the new rate is just under
      the account's limit, not half of it (TCP's halving would give up a quarter of the
      throughput on average). Nothing accepted in that second (an outage, a quota): the slow
      start again, from `RAY_RATE_START`, up to the rate the drop gave. Then it probes
      gently for more: each enqueue accepted adds `RAY_RATE_INCREASE`/s, a rise of 3% a
      second at full use. In proportion to the rate, not a fixed step, so the probe costs
      about as much at 5/s as at 1,000/s (a fixed +2/s each second refused 14-21% of a
      5/s account's enqueues, in the simulation of the tests, and took 50 s to climb back
      10% at 1,000/s); one budget per cluster, so no fairness between flows is at stake.
    - **Short leases, no double booking.** A lease hands out tokens at the rate's spacing,
      never more than `RAY_LEASE_SECONDS` ahead of now (asked beyond it, an actor is told to
      come back when half of the window is free): what was promised before a drop is at most that
      much of the old rate. Tokens promised stay promised after a drop and the new rate's
      follow them (a drop never hands out the same moment twice). Refusals of enqueues sent
      before a drop, or on a token it could not take back, are answered by that drop and do
      not lower the rate again.

    A refusal's `Retry-After` longer than `RAY_PAUSE_AFTER` (a quota, an outage, not a token
    bucket's refill) pauses every actor that long (capped at `RETRY_AFTER_MAX`). The refused
    enqueue itself is retried by its client after its `Retry-After`, on a new token.
    An explicit `max_rate` caps the rate and is where it starts (the caller knows the
    limit); refusals still lower it.

    Args:
        max_rate: Enqueues per second at most, for all actors together (None: learned).
        clock: Unix time now (actors say when they sent a refused enqueue in Unix time); a
            test passes a fake one.
    """

    def __init__(
        self, max_rate: float | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.maximum = max_rate
        self._clock = clock
        self.rate: float = max_rate if max_rate is not None else C.RAY_RATE_START
        self.slow_start = max_rate is None  # until the first refusal (or a restart)
        self._threshold = math.inf  # where a restarted slow start ends
        self._next = 0.0  # clock time of the first token not leased yet
        self._pause_until = 0.0
        self._last_drop = -math.inf
        self._window: collections.deque[tuple[float, int]] = collections.deque()
        self._in_window = 0  # accepted within the last RAY_MEASURE_SECONDS
        self._first_accepted: float | None = None
        self._first_count = 0
        self._last_accepted: float | None = None
        self.accepted = 0
        self.refusals = 0
        self.drops = 0
        self.leases = 0
        self._stats: dict[str, dict[str, Any]] = {}

    def lease(self, want: int, accepted: int = 0) -> tuple[int, float, float]:
        """Up to `want` tokens: `(count, delay, spacing)`: the first may be used `delay` s from
        now, each next one `spacing` s after it; `count` 0: none now, ask again in `delay` s.
        `accepted`: the caller's enqueues accepted since it last said."""
        now = self._clock()
        self._count(now, accepted)
        self.leases += 1
        spacing = 1.0 / self.rate
        start = max(now, self._next, self._pause_until)
        room = now + C.RAY_LEASE_SECONDS - start
        if room < 0:  # the window is promised: come back when half of it is free again
            return 0, C.RAY_LEASE_SECONDS / 2 - room, spacing
        count = max(1, min(want, int(room / spacing) + 1))
        self._next = start + count * spacing
        return count, start - now, spacing

    def succeeded(self, accepted: int) -> None:
        """`accepted` more enqueues were accepted (an actor tells them in batches)."""
        self._count(self._clock(), accepted)

    def refused(
        self, sent_at: float, retry_after: float | None, status: int, accepted: int = 0
    ) -> None:
        """An enqueue sent at Unix time `sent_at` was refused (429/503) with `Retry-After`
        `retry_after` (or None); `accepted`: the caller's enqueues accepted since it last said."""
        now = self._clock()
        self._count(now, accepted)
        self.refusals += 1
        if retry_after is not None and retry_after > C.RAY_PAUSE_AFTER:
            self._pause_until = max(self._pause_until, now + min(retry_after, C.RETRY_AFTER_MAX))
        if sent_at < self._last_drop + C.RAY_LEASE_SECONDS:
            return  # sent before the last drop, or on a token leased before it: answered
        measured = self._measured(now)
        if measured > 0:
            self.rate = max(C.RATE_MIN, min(self.rate, measured) * C.RAY_RATE_DECREASE)
            self.slow_start = False
        else:  # nothing accepted lately: no rate to go by; the slow start, up to the drop's
            self._threshold = max(C.RATE_MIN, self.rate * C.RAY_RATE_DECREASE)
            self.rate, self.slow_start = min(C.RAY_RATE_START, self._threshold), True
        self.rate = min(self.rate, self.maximum or math.inf)
        self._last_drop = now
        self.drops += 1
        log.info("oxedit.ray: enqueue refused (HTTP %d); shared rate now %.1f/s", status, self.rate)

    def _measured(self, now: float) -> float:
        """Enqueues accepted per second over the last `RAY_MEASURE_SECONDS` (or since the
        first, when the run is younger, but over a quarter of it at least)."""
        self._trim(now)
        if self._first_accepted is None:
            return 0.0
        span = min(C.RAY_MEASURE_SECONDS, now - self._first_accepted)
        return self._in_window / max(span, C.RAY_MEASURE_SECONDS / 4)

    def _trim(self, now: float) -> None:
        window = self._window
        while window and window[0][0] < now - C.RAY_MEASURE_SECONDS:
            self._in_window -= window.popleft()[1]

    def _count(self, now: float, accepted: int) -> None:
        if accepted <= 0:
            return
        self.accepted += accepted
        if self._first_accepted is None:
            self._first_accepted, self._first_count = now, accepted
        self._last_accepted = now
        self._window.append((now, accepted))
        self._in_window += accepted
        if self.slow_start:
            grown = self.rate + accepted * C.RAY_SLOW_START_GAIN
            if grown >= self._threshold:
                grown, self.slow_start = self._threshold, False
        else:
            grown = self.rate + accepted * C.RAY_RATE_INCREASE
        # Only a rate in use grows (never lowered by this: a drop's job). What was accepted
        # over the window, not extrapolated: a young run's first answers say little.
        self._trim(now)
        used = self._in_window / C.RAY_MEASURE_SECONDS
        ceiling = max(self.rate, C.RAY_RATE_START, C.RAY_RATE_HEADROOM * used)
        self.rate = min(grown, ceiling, self.maximum or math.inf)

    def report(self, actor: str, stats: dict[str, Any]) -> None:
        """An actor's client counters (`ClientStats` and its CPU), for `budget_stats`."""
        self._stats[actor] = stats

    def snapshot(self) -> dict[str, Any]:
        """The rate, the counts, the accepted rate from the first acceptance to the last
        (`accepted_per_s`), and each actor's last report."""
        first, last = self._first_accepted, self._last_accepted
        span = (last - first) if first is not None and last is not None else 0.0
        return {
            "rate": self.rate,
            "accepted": self.accepted,
            "refusals": self.refusals,
            "drops": self.drops,
            "leases": self.leases,
            "accepted_per_s": (self.accepted - self._first_count) / span if span > 0 else None,
            "first_accepted_at": first,
            "last_accepted_at": last,
            "actors": dict(self._stats),
        }


def _budget_actor(max_rate: float | None) -> Any:
    """The cluster's named budget actor, created by the first actor that asks. Detached: an
    actor's creations die with it, and Ray Data ends its actors with each pipeline; this one
    outlives them (what it learned serves the next pipeline) until the cluster stops."""
    remote: Any = ray.remote(RateBudget)
    return remote.options(
        name=C.RAY_BUDGET_NAME,
        namespace=C.RAY_BUDGET_NAMESPACE,
        get_if_exists=True,
        lifetime="detached",
        num_cpus=0,
        max_concurrency=1,
    ).remote(max_rate)


def budget_stats() -> dict[str, Any]:
    """What the cluster's budget actor knows (`RateBudget.snapshot`): its rate, enqueues
    accepted and refused, the accepted rate from the first acceptance to the last, and
    each actor's last reported client counters (`streams`, `events`, `foreign_events`,
    `enqueue_requests`, `cpu_seconds`, ...). From the driver, after a pipeline ran."""
    actor: Any = ray.get_actor(C.RAY_BUDGET_NAME, namespace=C.RAY_BUDGET_NAMESPACE)
    snapshot: dict[str, Any] = ray.get(actor.snapshot.remote())
    return snapshot


class _LeasedPace:
    """The client's `SharedPace`: tokens leased from the budget actor, used on this loop.

    Each lease asks for as many tokens as there are sends waiting (the budget gives at most
    `RAY_LEASE_SECONDS` of the rate); one lease at a time per actor."""

    def __init__(self, budget: Any) -> None:
        self._budget = budget
        self._tokens: collections.deque[float] = collections.deque()  # monotonic times
        self._lease: asyncio.Future[None] | None = None
        self._waiting = 0  # sends in `acquire`
        self._ok = 0  # accepted since last told

    async def acquire(self) -> None:
        self._waiting += 1
        try:
            while True:
                now = time.monotonic()
                tokens = self._tokens
                while tokens and tokens[0] < now - C.RAY_TOKEN_STALE:
                    tokens.popleft()
                if tokens:
                    at = tokens.popleft()
                    if at > now:
                        await asyncio.sleep(at - now)
                    return
                if self._lease is None:
                    self._lease = asyncio.ensure_future(self._fetch())
                await asyncio.shield(self._lease)
        finally:
            self._waiting -= 1

    async def _fetch(self) -> None:
        try:
            ok, self._ok = self._ok, 0
            count, delay, spacing = await self._budget.lease.remote(max(1, self._waiting), ok)
            if not count:  # the budget's window is promised to others: ask again then
                await asyncio.sleep(delay)
                return
            base = time.monotonic() + delay
            self._tokens.extend(base + i * spacing for i in range(count))
        finally:
            self._lease = None

    @property
    def ticket(self) -> int:
        # Turns last RAY_TOKEN_STALE: a send that waited longer for a connection takes another.
        return int(time.monotonic() / C.RAY_TOKEN_STALE)

    def succeeded(self) -> None:
        self._ok += 1
        if self._ok == 1:  # told in batches, promptly: the budget measures the account's rate
            asyncio.get_running_loop().call_later(C.RAY_REPORT_EVERY, self._flush)

    def _flush(self) -> None:
        ok, self._ok = self._ok, 0
        if ok:
            self._budget.succeeded.remote(ok)

    def refused(self, sent_at: float, retry_after: float | None, status: int) -> None:
        ok, self._ok = self._ok, 0
        self._tokens.clear()  # leased at the old rate
        self._budget.refused.remote(sent_at, retry_after, status, ok)  # told, not awaited


# -- the callable class -------------------------------------------------------------------------


class Edit:
    """A callable class for `Dataset.map_batches` (see the module docstring).

    Args:
        api_key: As `Client` takes it (default `OXEN_API_KEY`, then the `oxen` CLI's).
        base_url: As `Client` takes it (default `OXEN_BASE_URL`, then hub.oxen.ai).
        output_dir: Save each result there (a folder every actor reaches), named after the
            row's `name` or its image's stem, never overwriting another row's; None: not
            saved (`output_path` is None; the result stays on the API's file host).
        journal_dir: Where the actors journal the rows (a folder every actor reaches); None:
            no journal, so a re-run, or Ray re-running a dead actor's batch, sends again.
        concurrency: Rows in flight per actor at most.
        max_rate: Enqueues per second at most for all actors together, and where the
            shared budget starts (None: a slow start, then learned from the account's
            refusals). The budget actor outlives the pipeline: the one that created it set
            its `max_rate`.
        shared_rate: False: each actor paces itself (as a lone `Client` does).
        **client_options: Other `Client` arguments (timeouts, retry, reconcile, ...).
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        journal_dir: str | os.PathLike[str] | None = None,
        concurrency: int = C.DEFAULT_BULK_CONCURRENCY,
        max_rate: float | None = None,
        shared_rate: bool = True,
        **client_options: Any,
    ) -> None:
        if concurrency < 1:
            raise InvalidRequestError(f"concurrency={concurrency!r} must be at least 1")
        if max_rate is not None and not max_rate > 0:
            raise InvalidRequestError(f"max_rate={max_rate!r} must be a positive rate per second")
        self._client_args: dict[str, Any] = {"api_key": api_key, "base_url": base_url}
        self._client_args.update(client_options)
        self._output_dir = output_dir
        self._journal_dir = Path(journal_dir) if journal_dir is not None else None
        self._concurrency = concurrency
        self._max_rate = max_rate
        self._shared_rate = shared_rate
        self._worker: _Worker | None = None
        self._opening: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, batch: Any) -> dict[str, list[Any]]:
        rows = _rows(batch)
        worker = await self._open()
        results = await worker.process(rows)
        columns: dict[str, list[Any]] = {
            name: [row.get(name) for row in rows] for name in _names(rows)
        }
        for name in _OUTPUT_COLUMNS:
            columns[name] = [result[name] for result in results]
        return columns

    async def _open(self) -> _Worker:
        if self._worker is not None:
            return self._worker
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._worker is None:
                self._loop = asyncio.get_running_loop()
                budget = _budget_actor(self._max_rate) if self._shared_rate else None
                limits = self._client_args.pop("limits", None) or Limits(max_rate=None)
                if not self._shared_rate and self._max_rate is not None:
                    limits = Limits(max_rate=self._max_rate)
                args = dict(self._client_args)
                args.setdefault("retry", RetryPolicy(max_retries=C.RAY_MAX_RETRIES))
                client = Client(limits=limits, **args)
                if budget is not None:
                    client.share_rate(_LeasedPace(budget))
                await client.__aenter__()
                try:
                    worker = _Worker(
                        client, budget, self._journal_dir, self._output_dir, self._concurrency
                    )
                    await worker.start()
                except BaseException:
                    await client.__aexit__(None, None, None)
                    raise
                self._worker = worker
        assert self._worker is not None
        return self._worker

    async def aclose(self) -> None:
        """Close the actor's client and journal (Ray calls `__del__`, which does this)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.close()

    def __del__(self) -> None:
        loop, worker = self._loop, self._worker
        if worker is None or loop is None or loop.is_closed():
            return
        if not loop.is_running():
            return
        # Ray calls this from another thread than its loop's when it tears the actor down.
        future = asyncio.run_coroutine_threadsafe(self.aclose(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=C.RAY_CLOSE_TIMEOUT)


def _rows(batch: Any) -> list[dict[str, Any]]:
    """A batch (columns as a dict of arrays or lists, or a pandas DataFrame) as rows."""
    if hasattr(batch, "to_dict") and not isinstance(batch, Mapping):
        batch = batch.to_dict("list")
    if not isinstance(batch, Mapping):
        raise InvalidRequestError(
            f"oxedit.ray.Edit takes batches of columns (a dict or a DataFrame), not "
            f"{type(batch).__name__}; use the default batch_format"
        )
    columns = {name: list(values) for name, values in batch.items()}
    size = len(next(iter(columns.values()))) if columns else 0
    return [{name: _plain(values[i]) for name, values in columns.items()} for i in range(size)]


def _names(rows: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return [name for name in seen if name not in _OUTPUT_COLUMNS]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python values."""
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else value


def _request(row: Mapping[str, Any]) -> EditRequest | OxeditError:
    """A row as an `EditRequest` (image bytes as a data URI), or what is wrong with it."""
    image = row.get("image")
    if isinstance(image, bytes | bytearray):
        image = "data:" + _media_type(bytes(image)) + ";base64," + base64.b64encode(image).decode()
    params = row.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            return InvalidRequestError(f"params={params!r} is not a JSON object")
    fields: dict[str, Any] = {"image": image, "prompt": row.get("prompt")}
    if row.get("model"):
        fields["model"] = row["model"]
    if row.get("name"):
        fields["name"] = row["name"]
    if params:
        if not isinstance(params, dict):
            return InvalidRequestError(f"params={params!r} is not a mapping of parameters")
        fields.update(params)
    try:
        return EditRequest.from_mapping(fields)
    except OxeditError as exc:
        return exc


def _media_type(data: bytes) -> str:
    for magic, media in (
        (b"\x89PNG", "image/png"),
        (b"\xff\xd8", "image/jpeg"),
        (b"GIF8", "image/gif"),
        (b"RIFF", "image/webp"),
    ):
        if data.startswith(magic):
            return media
    return "application/octet-stream"


# -- one actor's work ---------------------------------------------------------------------------


def _output(
    result: BulkResult | None, entry: JournalEntry | None = None, error: str | None = None
) -> dict[str, Any]:
    if result is not None:
        return {
            "generation_id": result.generation_id,
            "status": result.status,
            "output_path": str(result.output) if result.output else None,
            "error": result.error,
            "cost": None if result.cost is None else str(result.cost),
            "resumed": result.resumed,
        }
    if entry is not None:
        status = entry.state if not (entry.state == "succeeded" and entry.error) else "error"
        paths = entry.output_paths
        return {
            "generation_id": entry.generation_id,
            "status": status,
            "output_path": paths[0] if paths else None,
            "error": entry.error,
            "cost": entry.cost,
            "resumed": True,
        }
    return {
        "generation_id": None,
        "status": "error",
        "output_path": None,
        "error": error,
        "cost": None,
        "resumed": False,
    }


class _Worker:
    """An actor's client, journal and one long `BulkRun` fed row by row."""

    def __init__(
        self,
        client: Client,
        budget: Any,
        journal_dir: Path | None,
        output_dir: str | os.PathLike[str] | None,
        concurrency: int,
    ) -> None:
        self.client = client
        self._budget = budget
        self._dir = journal_dir
        self._journal: Path | None = None
        if journal_dir is not None:
            name = f"{_JOURNAL_PREFIX}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._journal = journal_dir / f"{name}.sqlite"
        self._queue: asyncio.Queue[EditRequest | OxeditError | None] = asyncio.Queue()
        self._fed = 0
        self._waiting: dict[int, asyncio.Future[BulkResult]] = {}
        self._by_key: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._run = client.map(
            self._feed(),
            concurrency=concurrency,
            journal=self._journal,
            output_dir=output_dir,
            retry_failed=False,
        )
        self._run.shared_folder = True  # every actor saves there
        self._reader: asyncio.Task[None] | None = None
        self._digests: dict[str, str] = {}
        self._adopted: dict[str, dict[str, Any]] = {}  # by key: generations a recovery found
        self._stuck: set[str] = set()  # rows another live actor was still sending
        self._cpu_start = time.process_time()

    async def start(self) -> None:
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
        await self._run.ready()
        self._reader = asyncio.create_task(self._read(), name="oxedit-ray-results")

    async def close(self) -> None:
        self._queue.put_nowait(None)
        if self._reader is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(self._reader), timeout=5)
        await self._run.aclose()
        self._report()
        await self.client.__aexit__(None, None, None)

    async def _feed(self) -> AsyncIterator[EditRequest | OxeditError]:
        while (request := await self._queue.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for result in self._run:
                future = self._waiting.pop(result.index, None)
                if future is not None and not future.done():
                    future.set_result(result)
        except BaseException as exc:  # the run failed whole: every row waiting fails with it
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, OxeditError) else OxeditError(str(exc))
                    )
            raise

    def _send(self, request: EditRequest | OxeditError) -> asyncio.Future[BulkResult]:
        future: asyncio.Future[BulkResult] = asyncio.get_running_loop().create_future()
        self._waiting[self._fed] = future
        self._fed += 1
        self._queue.put_nowait(request)
        return future

    # -- a batch --------------------------------------------------------------------------------

    async def process(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        requests = [_request(row) for row in rows]
        keys: list[str | None] = []
        for request in requests:
            keys.append(await self._key(request) if isinstance(request, EditRequest) else None)
        elsewhere = await self._elsewhere(
            [k for k in keys if k is not None and k not in self._by_key]
        )
        futures: list[asyncio.Future[dict[str, Any]]] = []
        for request, key in zip(requests, keys, strict=True):
            if key is not None and key in self._by_key:  # the same item, in this actor: once
                futures.append(self._by_key[key])
                continue
            future = asyncio.ensure_future(self._one(request, key, elsewhere.get(key or "")))
            if key is not None:
                self._by_key[key] = future
            futures.append(future)
        results = list(await asyncio.gather(*futures))
        self._report()
        return results

    async def _one(
        self,
        request: EditRequest | OxeditError,
        key: str | None,
        found: tuple[JournalEntry, dict[str, Any]] | None,
    ) -> dict[str, Any]:
        if key is not None and key in self._stuck:
            self._stuck.discard(key)
            return _output(None, error=_STUCK)
        if found is not None:
            entry, adopted = found
            if entry.state in FINISHED:
                return _output(None, entry)
            self._run.absorb(entry, adopted)  # sent by an actor that died: followed here
        try:
            return _output(await self._send(request))
        except OxeditError as exc:
            return _output(None, error=str(exc))

    async def _key(self, request: EditRequest) -> str | None:
        """The row's journal key, as `BulkRun` computes it for a first repetition."""
        try:
            local = request.image and is_local(request.image)
            if local and await anyio.Path(request.image).is_file():

                def digest(path: str) -> str:
                    known = self._digests.get(path)
                    if known is None:
                        known = self._digests[path] = file_digest(path)
                    return known

                ident = await anyio.to_thread.run_sync(identity, request, digest)
            else:
                ident = identity(request)
        except Exception:  # unencodable: the run reports it
            return None
        return item_key(ident, 1)

    # -- the other actors' journals ---------------------------------------------------------------

    def _others(self) -> list[Path]:
        if self._dir is None:
            return []
        return sorted(p for p in self._dir.glob(f"{_JOURNAL_PREFIX}*.sqlite") if p != self._journal)

    async def _elsewhere(self, keys: list[str]) -> dict[str, tuple[JournalEntry, dict[str, Any]]]:
        """The rows among `keys` that another actor's journal holds, each as the journal
        furthest along has it, with what a crash recovery adopted for it. A dead actor's rows
        left mid-send are resolved first (looked up on the server), so nothing is sent twice."""
        if not keys or self._dir is None:
            return {}
        found: dict[str, tuple[JournalEntry, dict[str, Any]]] = {}
        deadline = time.monotonic() + C.RAY_SENDING_WAIT
        pending = set(keys)
        while pending:
            sending: list[Path] = []
            for path in self._others():
                for entry in await anyio.to_thread.run_sync(peek, path, sorted(pending)):
                    if entry.state == "sending":
                        sending.append(path)
                        continue
                    best = found.get(entry.key)
                    if best is None or _rank(entry) > _rank(best[0]):
                        found[entry.key] = (entry, best[1] if best else {})
            pending = {k for k in pending if k not in found}
            if not sending:
                break
            progressed = False
            for path in dict.fromkeys(sending):
                adopted = await self._adopt(path)
                if adopted is not None:
                    progressed = True
                    for entry_key, pendings in adopted.items():
                        found.pop(entry_key, None)  # read again, adopted
                        self._adopted[entry_key] = pendings
            if not progressed:
                if time.monotonic() > deadline:
                    # Still being sent by a live actor: this one must not send it too.
                    self._stuck.update(pending)
                    break
                await asyncio.sleep(0.05)  # another live actor is settling it
        return {k: (e, self._adopted.get(k, {})) for k, (e, _) in found.items() if k in set(keys)}

    async def _adopt(self, path: Path) -> dict[str, Any] | None:
        """Lock a dead actor's journal and resolve the rows it left mid-send (adopted from the
        server, or marked unsent); None if its actor (or another adopter) holds it."""
        try:
            journal = Journal(path)
        except ConfigurationError:
            return None
        try:
            claimed = set()
            for other in self._others():
                for entry in await anyio.to_thread.run_sync(peek, other):
                    claimed.update(entry.generation_ids)
            if self._journal is not None:
                for entry in peek(self._journal):
                    claimed.update(entry.generation_ids)
            found = await self._run.recover(journal, claimed - set(journal.claimed_ids()))
            by_key: dict[str, Any] = {}
            for entry in journal.entries():
                mine = {gid: found[gid] for gid in entry.generation_ids if gid in found}
                if mine:
                    by_key[entry.key] = mine
            log.info("oxedit.ray: took over %s (%d generation(s) adopted)", path.name, len(found))
            return by_key
        finally:
            journal.close()

    def _report(self) -> None:
        if self._budget is None:
            return
        stats = self.client.stats
        self._budget.report.remote(
            f"{socket.gethostname()}-{os.getpid()}",
            {
                "streams": stats.event_connections,
                "events": stats.events,
                "foreign_events": stats.foreign_events,
                "enqueue_requests": stats.enqueue_requests,
                "enqueue_refusals": stats.enqueue_refusals,
                "adopted": stats.adopted,
                "cpu_seconds": time.process_time() - self._cpu_start,
            },
        )


def _rank(entry: JournalEntry) -> tuple[bool, bool]:
    return (entry.state in FINISHED, entry.generation_id is not None)

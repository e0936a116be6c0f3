"""The engine at scale: what 10k, 100k and 1M pending jobs cost, and what foreign events cost.

No server: the client's HTTP is stubbed in-process (`Transport.request` answers an enqueue at
once with a fresh UUID, the models endpoint with a model without schema so the offline table
checks requests; `Transport.stream` is one open event stream), so one process can hold a
million pending jobs in a couple of minutes and everything measured is the client's own work.
Each measurement runs in a fresh (spawned) child process.

`pending` (per N, oxedit vs raw): the child submits N jobs 1,000 at a time through
`Client.submit` (jobs kept, as a caller must), collects garbage and reports RSS growth / N
(bytes per job), its RSS, and the CPU it burns per second over `--idle` seconds of doing
nothing. Checks are pushed past the window (`ReconcilePolicy(stale_floor=stale_after=3600)`):
what an idle second costs is then the reconcile tick alone, the point of the measurement.
`raw` is the bookkeeping of end_to_end's hand-written client (the enqueue answer decoded with
msgspec, a future per id in a dict, the future kept) with the same stub, and no ticker.

`foreign`: events for generations this process never enqueued (another process on the same
account: every shard sees every event) fed through the stubbed stream as fast as they come
(100 events a chunk): microseconds of client CPU per event with no enqueue in flight (decoded
and dropped), then with one enqueue held unanswered (each may be "early": the worst case);
then at `--rate` events/s for `--seconds`: the early buffer's count and bytes at the end.
`raw` splits frames and decodes the whole event with msgspec (end_to_end's
`RawClient._read`), keeping every unknown event.

`path` (oxedit vs raw): the client CPU per job of the whole path, HTTP stubbed as above: `--path-n`
jobs started at once (submit, then await), their completion events fed 100 a chunk once all
are enqueued. No socket and no server, so one run is steadier than `end_to_end`'s, whose two
processes share the cores: what a change to the client's own code saves shows here first.
Each run in a fresh child; min and median over `--repeat`, oxedit and raw alternated. `raw` is
end_to_end's hand-written client with the same stub (the answer decoded, a future per id,
each event decoded and its future resolved).

Run: `python -m benchmarks.scale [--n 10000 100000 1000000] [--idle 5] [--rate 10000]
[--seconds 5] [--foreign 200000] [--path-n 20000] [--repeat 5]
[--only pending|foreign|path] [--clients oxedit raw] [--json PATH]`
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing.connection
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import oxedit
from benchmarks._common import (
    cpu_seconds,
    print_table,
    rss_bytes,
    run_in_child,
    tiny_png,
    write_json,
)
from benchmarks._e2e_strategies import (
    EVENT_PREFIX,
    PROMPT,
    enqueue_decoder,
    event_decoder,
    request_body,
    split_frames,
)
from oxedit._response import Response

BATCH = 1_000
HOUR = 3600.0
RUN_TIMEOUT = 300.0
CHUNK_EVENTS = 100  # events per stream chunk (a busy account's events come in bursts)
FAR = oxedit.ReconcilePolicy(stale_floor=HOUR, stale_after=HOUR, interval=HOUR)


def _enqueue_answer(generation_id: str | None = None) -> bytes:
    generation_id = generation_id or str(uuid.uuid4())
    return b'{"generations":[{"generation_id":"%s","status":"queued"}]}' % generation_id.encode()


def _event(generation_id: str, name: str, extra: bytes = b"") -> bytes:
    """A completion frame for `generation_id`, its output file named `name`."""
    return (
        EVENT_PREFIX + b'{"generation_id":"%s","status":"succeeded","media_type":"image",'
        b'"model":"qwen-image-edit","url":"https://hub.oxen.ai/api/repos/ox/r/files/main/'
        b'out/%s.png?sig=0123456789abcdef"%s}\n\n' % (generation_id.encode(), name.encode(), extra)
    )


def _chunks(frames: list[bytes]) -> list[bytes]:
    return [b"".join(frames[i : i + CHUNK_EVENTS]) for i in range(0, len(frames), CHUNK_EVENTS)]


def completion_chunks(ids: list[str]) -> list[bytes]:
    """The completion events of `ids`, CHUNK_EVENTS a chunk."""
    return _chunks([_event(i, i, b',"completed_at":1.0') for i in ids])


def foreign_chunks(count: int) -> list[bytes]:
    """`count` completion events of generations nobody here enqueued, CHUNK_EVENTS a chunk."""
    return _chunks([_event(str(uuid.uuid4()), str(i)) for i in range(count)])


class Stub:
    """The transport of an open client, answered in-process (see the module docstring)."""

    def __init__(self) -> None:
        self.chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self.hold: asyncio.Event | None = None  # set: POSTs wait for it (an enqueue in flight)
        self.ids: list[str] | None = None  # a list: the ids answered are added to it
        self.expect = 0  # `enqueued` is set once `ids` holds that many
        self.enqueued = asyncio.Event()

    async def request(self, method: str, path: str, **_: Any) -> Response:
        if method == "POST":
            if self.hold is not None:
                await self.hold.wait()
            generation_id = str(uuid.uuid4())
            if self.ids is not None:
                self.ids.append(generation_id)
                if len(self.ids) >= self.expect:
                    self.enqueued.set()
            return Response(200, {}, _enqueue_answer(generation_id))
        if path.startswith("/api/ai/models/"):
            return Response(200, {}, b'{"id":"%s"}' % path.rsplit("/", 1)[1].encode())
        return Response(404, {}, b'{"error":"not stubbed"}')

    @asynccontextmanager
    async def stream(self, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        async def chunks() -> AsyncIterator[bytes]:
            yield b": hello\n\n"
            while True:
                yield await self.chunks.get()
                self.chunks.task_done()  # the reader is back: it handled that chunk

        yield chunks()


def _client(stub: Stub) -> oxedit.Client:
    client = oxedit.Client(api_key="k", base_url="http://127.0.0.1:9", reconcile=FAR)
    transport = client._tracker._transport
    transport.request = stub.request  # type: ignore[method-assign]
    transport.send = stub.request  # type: ignore[method-assign]  # the enqueue holds its slot
    transport.stream = stub.stream  # type: ignore[method-assign]
    return client


async def _idle_cpu(seconds: float) -> float:
    gc.collect()
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.sleep(seconds)
    return (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)


async def _hold_jobs(n: int, submit: Callable[[], Awaitable[Any]], idle: float) -> dict[str, Any]:
    held = [await submit()]
    gc.collect()
    rss0 = rss_bytes()
    start = cpu_seconds()
    for done in range(0, n, BATCH):
        held.extend(await asyncio.gather(*(submit() for _ in range(min(BATCH, n - done)))))
    submit_s = cpu_seconds() - start
    gc.collect()
    rss1 = rss_bytes()
    return {
        "bytes_per_job": (rss1 - rss0) / n,
        "rss_mb": rss1 / 2**20,
        "submit_us": submit_s / n * 1e6,
        "idle_cpu_ms_per_s": await _idle_cpu(idle) * 1000,
        "held": len(held) - 1,
    }


async def pending_oxedit(n: int, idle: float) -> dict[str, Any]:
    png = tiny_png()
    async with _client(Stub()) as client:

        async def submit() -> oxedit.Job:
            return await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")

        return await _hold_jobs(n, submit, idle)


async def pending_raw(n: int, idle: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    futures: dict[str, asyncio.Future[Any]] = {}

    async def submit() -> asyncio.Future[Any]:
        await asyncio.sleep(0)  # the POST's await
        (generation,) = enqueue_decoder.decode(_enqueue_answer()).generations
        future = futures[generation.generation_id] = loop.create_future()
        return future

    return await _hold_jobs(n, submit, idle)


async def _feed(stub: Stub, chunks: list[bytes]) -> float:
    """Feed `chunks` until the reader handled them all: the client CPU seconds it took."""
    await asyncio.sleep(0.2)  # the stream is open and idle
    gc.collect()
    cpu0 = cpu_seconds()
    for chunk in chunks:
        stub.chunks.put_nowait(chunk)
    await stub.chunks.join()
    return cpu_seconds() - cpu0


async def _paced(stub: Stub, chunks: list[bytes], rate: float) -> None:
    start = time.perf_counter()
    for i, chunk in enumerate(chunks):
        delay = start + i * CHUNK_EVENTS / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        stub.chunks.put_nowait(chunk)
    await stub.chunks.join()


async def foreign_oxedit(count: int, rate: float, seconds: float) -> dict[str, Any]:
    stub = Stub()
    png = tiny_png()
    async with _client(stub) as client:
        await client.submit(prompt=PROMPT, image=png, model="qwen-image-edit")  # schema loaded
        stub.hold = asyncio.Event()
        dropped = await _feed(stub, foreign_chunks(count))  # no enqueue in flight: dropped
        submit = asyncio.create_task(client.submit(prompt=PROMPT, image=png))
        await asyncio.sleep(0.1)
        cpu = await _feed(stub, foreign_chunks(count))
        registry = client._tracker.require_open().registry
        paced = foreign_chunks(int(rate * seconds))
        await _paced(stub, paced, rate)
        early = registry.early_size() if hasattr(registry, "early_size") else _old_early(registry)
        stub.hold.set()
        await submit
    return {
        "us_dropped": dropped / count * 1e6,
        "us_per_event": cpu / count * 1e6,
        "early_count": early[0],
        "early_bytes": early[1],
    }


def _old_early(registry: Any) -> tuple[int, int]:
    """The early buffer of the code before issue 23 (a dict of (time, Generation))."""
    import sys as _sys

    size = 0
    for key, (_, gen) in registry._early.items():
        size += _sys.getsizeof(key) + _sys.getsizeof(gen) + 64
        size += sum(_sys.getsizeof(v) for v in (gen.url, gen.status, gen.model) if v is not None)
    return len(registry._early), size


async def _raw_read(
    stub: Stub, futures: dict[str, asyncio.Future[Any]], early: dict[str, Any] | None = None
) -> None:
    """end_to_end's `RawClient._read` on the stub's stream: frames split, each event decoded
    whole and its future resolved; an unknown one kept in `early` (when given)."""
    buffer = b""
    async with stub.stream("/api/events") as chunks:
        async for chunk in chunks:
            frames, buffer = split_frames(buffer, chunk)
            for frame in frames:
                if frame.startswith(EVENT_PREFIX):
                    event = event_decoder.decode(frame[len(EVENT_PREFIX) :])
                    future = futures.pop(event.generation_id, None)
                    if future is None:
                        if early is not None:
                            early[event.generation_id] = event
                    elif not future.done():
                        future.set_result(event)


async def foreign_raw(count: int, rate: float, seconds: float) -> dict[str, Any]:
    futures: dict[str, asyncio.Future[Any]] = {}
    early: dict[str, Any] = {}
    stub = Stub()

    reader = asyncio.create_task(_raw_read(stub, futures, early))
    dropped = await _feed(stub, foreign_chunks(count))
    early.clear()  # raw keeps them all; the second round is the "in flight" one
    cpu = await _feed(stub, foreign_chunks(count))
    early.clear()
    await _paced(stub, foreign_chunks(int(rate * seconds)), rate)
    # Each kept Event with its strings, the id and a dict slot.
    size = sum(
        sys.getsizeof(k) + sys.getsizeof(v) + sys.getsizeof(v.url) + sys.getsizeof(v.status) + 64
        for k, v in early.items()
    )
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    return {
        "us_dropped": dropped / count * 1e6,
        "us_per_event": cpu / count * 1e6,
        "early_count": len(early),
        "early_bytes": size,
    }


async def _path(n: int, start: Callable[[], Awaitable[Any]], stub: Stub) -> float:
    """Start `n` jobs at once, feed their events once all are enqueued, await them all: the
    client CPU microseconds per job."""
    ids = stub.ids = []
    stub.expect = n
    gc.collect()
    cpu0 = cpu_seconds()
    jobs = [asyncio.ensure_future(start()) for _ in range(n)]
    await stub.enqueued.wait()
    for chunk in completion_chunks(ids):
        stub.chunks.put_nowait(chunk)
    await asyncio.gather(*jobs)
    return (cpu_seconds() - cpu0) / n * 1e6


async def path_oxedit(n: int) -> dict[str, Any]:
    stub = Stub()
    png = tiny_png()
    async with _client(stub) as client:
        await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")  # schema loaded

        async def one() -> oxedit.Generation:
            job = await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")
            return await job

        return {"us_per_job": await _path(n, one, stub)}


async def path_raw(n: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    futures: dict[str, asyncio.Future[Any]] = {}
    stub = Stub()
    png = tiny_png()

    async def one() -> Any:
        body = request_body(png)
        resp = await stub.request("POST", "/api/ai/queue", body=body)
        (generation,) = enqueue_decoder.decode(resp.body).generations
        future = futures[generation.generation_id] = loop.create_future()
        return await future

    reader = asyncio.create_task(_raw_read(stub, futures))
    try:
        return {"us_per_job": await _path(n, one, stub)}
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


RUNS: dict[tuple[str, str], Callable[..., Awaitable[dict[str, Any]]]] = {
    ("pending", "oxedit"): pending_oxedit,
    ("pending", "raw"): pending_raw,
    ("foreign", "oxedit"): foreign_oxedit,
    ("foreign", "raw"): foreign_raw,
    ("path", "oxedit"): path_oxedit,
    ("path", "raw"): path_raw,
}


def _child(conn: multiprocessing.connection.Connection, key: tuple[str, str], *args: Any) -> None:
    import traceback

    try:
        conn.send(("ok", asyncio.run(RUNS[key](*args))))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def run_all(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"pending": [], "foreign": [], "path": []}
    if args.only in (None, "pending"):
        for n in args.n:
            for client in args.clients:
                print(f"  pending N={n:,}: {client} ...", file=sys.stderr, flush=True)
                result, _ = await run_in_child(
                    _child, (("pending", client), n, args.idle), limit_s=RUN_TIMEOUT
                )
                out["pending"].append({"client": client, "n": n, **result})
    if args.only in (None, "foreign"):
        for client in args.clients:
            print(f"  foreign events: {client} ...", file=sys.stderr, flush=True)
            result, _ = await run_in_child(
                _child,
                (("foreign", client), args.foreign, args.rate, args.seconds),
                limit_s=RUN_TIMEOUT,
            )
            out["foreign"].append({"client": client, **result})
    if args.only in (None, "path"):
        runs: dict[str, list[float]] = {client: [] for client in args.clients}
        for i in range(args.repeat):  # alternated, so a slow minute hits both alike
            for client in args.clients:
                print(
                    f"  path N={args.path_n:,} run {i + 1}/{args.repeat}: {client} ...",
                    file=sys.stderr,
                    flush=True,
                )
                result, _ = await run_in_child(
                    _child, (("path", client), args.path_n), limit_s=RUN_TIMEOUT
                )
                runs[client].append(result["us_per_job"])
        for client, us in runs.items():
            out["path"].append(
                {
                    "client": client,
                    "n": args.path_n,
                    "us_min": min(us),
                    "us_median": statistics.median(us),
                    "runs": us,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle measured")
    parser.add_argument("--foreign", type=int, default=200_000, help="events fed at full speed")
    parser.add_argument("--rate", type=float, default=10_000.0, help="foreign events/s, paced")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of paced events")
    parser.add_argument("--path-n", type=int, default=20_000, help="jobs of a path run")
    parser.add_argument("--repeat", type=int, default=5, help="path runs per client")
    parser.add_argument("--only", choices=["pending", "foreign", "path"])
    parser.add_argument(
        "--clients", nargs="+", choices=["oxedit", "raw"], default=["oxedit", "raw"]
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    results = asyncio.run(run_all(args))
    if results["pending"]:
        print_table(
            f"Pending jobs, HTTP stubbed (idle CPU over {args.idle:g} s)",
            ["client", "pending", "B/job", "RSS MB", "idle CPU ms/s", "submit CPU us/job"],
            [
                [
                    r["client"],
                    r["n"],
                    r["bytes_per_job"],
                    r["rss_mb"],
                    r["idle_cpu_ms_per_s"],
                    r["submit_us"],
                ]
                for r in results["pending"]
            ],
        )
    if results["foreign"]:
        print_table(
            f"Foreign events during an unanswered enqueue ({args.foreign:,} at full speed; "
            f"early buffer after {args.seconds:g} s at {args.rate:,.0f}/s)",
            ["client", "us/event", "us/event in flight", "events/s", "early kept", "early KB"],
            [
                [
                    r["client"],
                    r["us_dropped"],
                    r["us_per_event"],
                    1e6 / r["us_dropped"],
                    r["early_count"],
                    r["early_bytes"] / 1024,
                ]
                for r in results["foreign"]
            ],
        )
    if results["path"]:
        raw_us = next((r["us_median"] for r in results["path"] if r["client"] == "raw"), None)
        print_table(
            f"The client's path per job, HTTP stubbed (N={args.path_n:,}, {args.repeat} runs)",
            ["client", "CPU us/job min", "CPU us/job median", "median x raw"],
            [
                [
                    r["client"],
                    r["us_min"],
                    r["us_median"],
                    r["us_median"] / raw_us if raw_us else "",
                ]
                for r in results["path"]
            ],
        )
    if args.json:
        write_json(args.json, {"benchmark": "scale", "args": vars(args), **results})


if __name__ == "__main__":
    main()

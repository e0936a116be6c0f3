"""The clients `end_to_end` compares, run in its child process: the raw client and the strategies.

`end_to_end` describes each strategy and what is measured; this module holds the code that runs
on the client side of one run (`strategy_child` is the child process's entry point, importable
at module level for `multiprocessing`'s spawn), and the wire shapes and helpers the other
benchmarks share (`request_body`, `enqueue_decoder`, `RawClient`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing.connection
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec

import oxedit
from benchmarks._common import GcMonitor, cpu_seconds, peak_rss_bytes, rss_bytes

PROMPT = "mirror"
MAX_CONNECTIONS = 64
COMPLETED = b"event: media_generation_completed\n"
EVENT_PREFIX = COMPLETED + b"data: "
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class Event(msgspec.Struct):
    generation_id: str
    status: str
    completed_at: float | None = None
    url: str | None = None
    error: str | None = None


class Enqueued(msgspec.Struct):
    generation_id: str


class EnqueueResponse(msgspec.Struct):
    generations: list[Enqueued]


class Row(msgspec.Struct):
    status: str


event_decoder = msgspec.json.Decoder(Event)
enqueue_decoder = msgspec.json.Decoder(EnqueueResponse)
row_decoder = msgspec.json.Decoder(Row)
encoder = msgspec.json.Encoder()
JSON = {"Content-Type": "application/json"}


def request_body(png: bytes) -> bytes:
    """What a hand-written client sends: the same fields oxedit sends for `submit(...)`."""
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    return encoder.encode(
        {"model": "qwen-image-edit", "prompt": PROMPT, "input_image": uri, "aspect_ratio": "1:1"}
    )


def split_frames(buffer: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
    """Complete SSE frames (the server ends lines with LF only) and the unfinished rest."""
    frames = (buffer + chunk).split(b"\n\n")
    return frames, frames.pop()


# -- the raw client: the ceiling ---------------------------------------------------------------


class RawClient:
    """oxedit's protocol and nothing else, on bare aiohttp.

    One `GET /api/events` opened before any POST; at most `max_connections` POSTs in flight;
    one future per generation id in a dict; events that overtake their enqueue response are
    kept until it arrives. No retries, no reconciliation, no validation.

    `gate=True` bounds the POSTs with an `asyncio.Semaphore` (FIFO) taken before aiohttp is
    called, so a waiting POST is just a parked coroutine. `gate=False` leaves the bound to the
    connector's limit alone, as oxedit's transport did before 673bb25: aiohttp then builds
    each request (headers, URL, payload, timers) before it queues for a connection, and
    thousands of them wait fully built.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        max_connections: int = MAX_CONNECTIONS,
        gate: bool = True,
    ) -> None:
        self._url = url
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._max_connections = max_connections
        self._gate = asyncio.Semaphore(max_connections) if gate else contextlib.nullcontext()
        self._futures: dict[str, asyncio.Future[Event]] = {}
        self._early: dict[str, Event] = {}
        self._reader: asyncio.Task[None] | None = None
        self.requests = 0

    async def __aenter__(self) -> RawClient:
        self._loop = asyncio.get_running_loop()
        self._api = aiohttp.ClientSession(
            headers=self._auth, connector=aiohttp.TCPConnector(limit=self._max_connections)
        )
        self._streams = aiohttp.ClientSession(
            headers=self._auth, timeout=aiohttp.ClientTimeout(total=None)
        )
        resp = await self._streams.get(self._url + "/api/events")
        resp.raise_for_status()
        self.requests += 1
        self._reader = asyncio.create_task(self._read(resp))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._api.close()
        await self._streams.close()

    async def _read(self, resp: aiohttp.ClientResponse) -> None:
        buffer = b""
        async for chunk in resp.content.iter_any():
            frames, buffer = split_frames(buffer, chunk)
            for frame in frames:
                if frame.startswith(EVENT_PREFIX):
                    event = event_decoder.decode(frame[len(EVENT_PREFIX) :])
                    future = self._futures.pop(event.generation_id, None)
                    if future is None:
                        self._early[event.generation_id] = event
                    elif not future.done():
                        future.set_result(event)

    async def submit(self, body: bytes) -> asyncio.Future[Event]:
        self.requests += 1
        async with (
            self._gate,
            self._api.post(self._url + "/api/ai/queue", data=body, headers=JSON) as resp,
        ):
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"enqueue: HTTP {resp.status} {data[:200]!r}")
        generation_id = enqueue_decoder.decode(data).generations[0].generation_id
        future: asyncio.Future[Event] = self._loop.create_future()
        early = self._early.pop(generation_id, None)
        if early is not None:
            future.set_result(early)
        else:
            self._futures[generation_id] = future
        return future


# -- strategies (run in the child process) -----------------------------------------------------

Strategy = Callable[..., Awaitable[dict[str, Any]]]


async def _gather_jobs(n: int, one: Callable[[], Awaitable[Any]]) -> tuple[list[Any], float]:
    start = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return results, time.perf_counter() - start


def _summary(results: list[Any], wall: float) -> dict[str, Any]:
    """A run's outcome from its jobs' results: each a wake delay (float), or the job's
    completion stamp and wake time (a tuple: which full collections held it up can then be
    told), or an exception."""
    errors = [r for r in results if isinstance(r, BaseException)]
    spans = [r for r in results if isinstance(r, tuple)]
    delays = [r for r in results if isinstance(r, float)] + [woke - done for done, woke in spans]
    return {
        "wall_s": wall,
        "errors": len(errors),
        "first_error": repr(errors[0]) if errors else None,
        "delays": delays,
        "spans": spans,
    }


async def strategy_oxedit(url: str, api_key: str, n: int, png: bytes) -> dict[str, Any]:
    async def one() -> tuple[float, float]:
        job = await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")
        gen = await job
        woke = time.time()
        assert gen.completed_at is not None, "resolved without the server's completion stamp"
        return gen.completed_at, woke

    start = time.perf_counter()
    async with oxedit.Client(
        api_key=api_key, base_url=url, limits=oxedit.Limits(max_connections=MAX_CONNECTIONS)
    ) as client:
        results, _ = await _gather_jobs(n, one)
        wall = time.perf_counter() - start
        stats = client.stats
    out = _summary(results, wall)
    out["client_stats"] = {
        "requests": dict(stats.requests),
        "enqueue_requests": stats.enqueue_requests,
        "poll_requests": stats.poll_requests,
        "event_connections": stats.event_connections,
        "events": stats.events,
        "retries": stats.retries,
        "lost_responses": stats.lost_responses,
    }
    return out


async def strategy_raw(
    url: str, api_key: str, n: int, png: bytes, gate: bool = True
) -> dict[str, Any]:
    async def one() -> tuple[float, float]:
        future = await client.submit(request_body(png))
        event = await future
        woke = time.time()
        assert event.completed_at is not None
        return event.completed_at, woke

    start = time.perf_counter()
    async with RawClient(url, api_key, gate=gate) as client:
        results, _ = await _gather_jobs(n, one)
        wall = time.perf_counter() - start
    return _summary(results, wall)


async def strategy_poll(
    url: str, api_key: str, n: int, png: bytes, interval: float
) -> dict[str, Any]:
    """The docs' polling loop, on one shared aiohttp session with bounded connections."""
    woke: dict[str, float] = {}

    gate = asyncio.Semaphore(MAX_CONNECTIONS)

    async def one() -> None:
        async with gate, session.post(url + "/api/ai/queue", data=request_body(png)) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"enqueue: HTTP {resp.status}")
        generation_id = enqueue_decoder.decode(data).generations[0].generation_id
        while True:
            async with gate, session.get(f"{url}/api/ai/queue/{generation_id}") as resp:
                row = row_decoder.decode(await resp.read())
            if row.status in TERMINAL:
                break
            await asyncio.sleep(interval)
        woke[generation_id] = time.time()

    start = time.perf_counter()
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {api_key}", **JSON},
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
    ) as session:
        results, _ = await _gather_jobs(n, one)
        wall = time.perf_counter() - start
    out = _summary(results, wall)
    out["woke"] = woke  # joined with the completion stamps by the parent
    return out


async def strategy_sse_per_job(url: str, api_key: str, n: int, png: bytes) -> dict[str, Any]:
    """The docs' SSE example: one event stream per job, read line by line until its id."""

    async def one() -> float:
        async with streams.get(url + "/api/events") as stream:
            stream.raise_for_status()
            async with gate, api.post(url + "/api/ai/queue", data=request_body(png)) as resp:
                data = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"enqueue: HTTP {resp.status}")
            generation_id = json.loads(data)["generations"][0]["generation_id"]
            event_name = None
            async for raw_line in stream.content:
                line = raw_line.decode("utf-8").rstrip("\r\n")
                if line.startswith("event: "):
                    event_name = line.removeprefix("event: ")
                elif line.startswith("data: ") and event_name == "media_generation_completed":
                    payload = json.loads(line.removeprefix("data: "))
                    if payload.get("generation_id") == generation_id:
                        woke = time.time()
                        stream.close()  # as leaving the docs' `with requests.get(...)` does
                        return woke - float(payload["completed_at"])
            raise RuntimeError(f"stream ended before the event of {generation_id}")

    auth = {"Authorization": f"Bearer {api_key}"}
    gate = asyncio.Semaphore(MAX_CONNECTIONS)
    start = time.perf_counter()
    async with (
        aiohttp.ClientSession(
            headers=auth,
            connector=aiohttp.TCPConnector(limit=0),  # one connection per waiting job
            timeout=aiohttp.ClientTimeout(total=None),
        ) as streams,
        aiohttp.ClientSession(
            headers={**auth, **JSON}, connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
        ) as api,
    ):
        results, _ = await _gather_jobs(n, one)
        wall = time.perf_counter() - start
    return _summary(results, wall)


def _poll(interval: float) -> Strategy:
    async def run(url: str, api_key: str, n: int, png: bytes) -> dict[str, Any]:
        return await strategy_poll(url, api_key, n, png, interval)

    return run


async def strategy_raw_connector(url: str, api_key: str, n: int, png: bytes) -> dict[str, Any]:
    return await strategy_raw(url, api_key, n, png, gate=False)


STRATEGIES: dict[str, Strategy] = {
    "oxedit": strategy_oxedit,
    "raw": strategy_raw,
    "raw-connector": strategy_raw_connector,
    "poll-5s": _poll(5.0),
    "poll-0.5s": _poll(0.5),
    "sse-per-job": strategy_sse_per_job,
}
POLLING = frozenset({"poll-5s", "poll-0.5s"})


def strategy_child(
    conn: multiprocessing.connection.Connection,
    strategy: str,
    url: str,
    key: str,
    n: int,
    png: bytes,
) -> None:
    """The run's child process: one run of `strategy`, its result (or traceback) sent on
    `conn`."""
    try:
        rss0 = rss_bytes()
        cpu0 = cpu_seconds()
        with GcMonitor() as gc_monitor:
            result = asyncio.run(STRATEGIES[strategy](url, key, n, png))
        result["cpu_s"] = cpu_seconds() - cpu0
        result.update(gc_monitor.summary())
        result["rss_before"] = rss0
        result["peak_rss"] = peak_rss_bytes()
        conn.send(("ok", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()

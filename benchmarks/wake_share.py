"""Where the completion-to-wake delay goes: the server and the OS, or the client.

`end_to_end`'s wake delay (the awaiting coroutine's resume minus the server's completion
stamp) has two parts: the event's way from the server's job to the client's hands (the
server writes it, the kernel carries it, the client's loop wakes and reads the socket and
cuts the stream's frames out), and the client's own work from there (decoding and settling
each event of the chunk, waking the tasks, each task resuming). Only the second is the
client's; end to end, the first's noise (a fraction of a millisecond from run to run) hides
differences of tens of microseconds in it.

This stamps every chunk of the event stream where both clients have its frames in hand and
have decoded nothing yet: `oxedit` as its registry is handed the chunk's events
(`Registry.events`), `raw` (`end_to_end`'s ceiling, unchanged) as its frames are split
(`split_frames`). One wrapper call per chunk on either side. Each job's delay is then its
server-and-OS part (stamp minus completion) plus its client part (wake minus stamp).

The client runs in this process (so it can be stamped), against a local server in another
(`_server_proc`, completion stamps on, N workers, latency uniform 1-3 s as in `end_to_end`);
the strategies alternate run by run.

Run: `python -m benchmarks.wake_share [--n 10000] [--repeat 4] [--json PATH]`
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

import oxedit
from benchmarks import _e2e_strategies as strategies
from benchmarks._common import machine, median, percentile, print_table, tiny_png, write_json
from benchmarks._e2e_strategies import EVENT_PREFIX, MAX_CONNECTIONS, PROMPT, RawClient
from benchmarks._server_proc import ServerProcess
from oxedit._engine.registry import Registry

# One run's stamps: (when, the chunk's frames or events' data) for each chunk read.
Chunks = list[tuple[float, list[bytes]]]
# Each job: (generation id, the server's completion stamp, when its coroutine resumed).
Woken = list[tuple[str, float, float]]


@contextmanager
def stamped(chunks: Chunks) -> Iterator[None]:
    """Stamp each chunk of the event stream as either client has its frames in hand."""
    events, split = Registry.events, strategies.split_frames

    def registry_events(self: Registry, datas: list[bytes]) -> int:
        chunks.append((time.time(), datas))
        return events(self, datas)

    def split_frames(buffer: bytes, chunk: bytes) -> tuple[list[bytes], bytes]:
        frames, rest = split(buffer, chunk)
        chunks.append((time.time(), frames))
        return frames, rest

    Registry.events = registry_events  # type: ignore[method-assign]
    strategies.split_frames = split_frames
    try:
        yield
    finally:
        Registry.events = events  # type: ignore[method-assign]
        strategies.split_frames = split


async def run_oxedit(url: str, api_key: str, n: int, png: bytes) -> Woken:
    async def one() -> tuple[str, float, float]:
        job = await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")
        gen = await job
        woke = time.time()
        assert gen.completed_at is not None, "resolved without the server's completion stamp"
        return gen.id, gen.completed_at, woke

    limits = oxedit.Limits(max_connections=MAX_CONNECTIONS)
    async with oxedit.Client(api_key=api_key, base_url=url, limits=limits) as client:
        return list(await asyncio.gather(*(one() for _ in range(n))))


async def run_raw(url: str, api_key: str, n: int, png: bytes) -> Woken:
    body = strategies.request_body(png)

    async def one() -> tuple[str, float, float]:
        future = await client.submit(body)
        event = await future
        woke = time.time()
        assert event.completed_at is not None
        return event.generation_id, event.completed_at, woke

    async with RawClient(url, api_key) as client:
        return list(await asyncio.gather(*(one() for _ in range(n))))


RUNS: dict[str, Callable[[str, str, int, bytes], Any]] = {"oxedit": run_oxedit, "raw": run_raw}


class _Id(msgspec.Struct):
    generation_id: str


_id = msgspec.json.Decoder(_Id)


def split_delays(woken: Woken, chunks: Chunks) -> dict[str, Any]:
    """Each job's delay, and its two parts, from the jobs' stamps and the chunks'."""
    read: dict[str, tuple[float, int]] = {}  # id -> (when its chunk was stamped, events in it)
    for at, datas in chunks:
        for data in datas:
            if data.startswith(EVENT_PREFIX):
                data = data[len(EVENT_PREFIX) :]
            try:
                generation_id = _id.decode(data).generation_id
            except msgspec.DecodeError:
                continue  # a comment or keep-alive frame
            read.setdefault(generation_id, (at, len(datas)))
    total = [woke - done for _, done, woke in woken]
    server = [read[g][0] - done for g, done, _ in woken]
    client = [woke - read[g][0] for g, _, woke in woken]
    p99 = percentile(total, 99)
    tail = [read[g][1] for g, done, woke in woken if woke - done >= p99]
    return {
        "jobs": len(woken),
        "total_p50_ms": percentile(total, 50) * 1e3,
        "total_p99_ms": p99 * 1e3,
        "server_os_p50_ms": percentile(server, 50) * 1e3,
        "server_os_p99_ms": percentile(server, 99) * 1e3,
        "client_p50_us": percentile(client, 50) * 1e6,
        "client_p90_us": percentile(client, 90) * 1e6,
        "client_p99_us": percentile(client, 99) * 1e6,
        "client_share_of_tail": sum(client[i] for i, t in enumerate(total) if t >= p99)
        / sum(t for t in total if t >= p99),
        "tail_chunk_events": sum(tail) / len(tail),
        "chunk_events": sum(n for _, n in read.values()) / len(read),
    }


async def run_once(strategy: str, url: str, api_key: str, n: int, png: bytes) -> dict[str, Any]:
    chunks: Chunks = []
    with stamped(chunks):
        woken = await RUNS[strategy](url, api_key, n, png)
    return {"strategy": strategy, **split_delays(woken, chunks)}


METRICS = (
    "total_p50_ms",
    "total_p99_ms",
    "server_os_p50_ms",
    "server_os_p99_ms",
    "client_p50_us",
    "client_p90_us",
    "client_p99_us",
    "client_share_of_tail",
    "tail_chunk_events",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--json")
    args = parser.parse_args()
    png = tiny_png()
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in RUNS}
    for _ in range(args.repeat):
        for strategy in RUNS:  # alternated, each run against a fresh server
            with ServerProcess(latency=("uniform", 1.0, 3.0), workers=args.n) as server:
                row = asyncio.run(run_once(strategy, server.url, server.api_key, args.n, png))
            runs[strategy].append(row)
    rows = [[s, *(median([r[m] for r in rs]) for m in METRICS)] for s, rs in runs.items()]
    print_table(
        f"Completion-to-wake delay, split: N={args.n:,}, median of {args.repeat} runs",
        [
            "client",
            "total p50 ms",
            "total p99 ms",
            "server+OS p50 ms",
            "server+OS p99 ms",
            "client p50 us",
            "client p90 us",
            "client p99 us",
            "client share of p99 tail",
            "events/chunk at the tail",
        ],
        rows,
    )
    write_json(args.json, {"machine": machine(), "n": args.n, "runs": runs})


if __name__ == "__main__":
    main()

"""Capacity of the local server (`oxedit.testing`): can it carry a 10,000-job burst?

The server runs in its own process (as `oxedit serve` does); this process is the load: raw
aiohttp, no oxedit client. One SSE stream is opened first, then N jobs (8x8 PNG data URIs,
prompt "mirror") are enqueued with bounded concurrency while the stream counts completion
events. Measured:

- enqueue jobs/s: N / time from the first POST to the last response;
- events/s streamed: events / time from the first to the last event received;
- time to drain: from the last enqueue response to the last event;
- completion-to-receipt delay (p50/p99): the server stamps each event with its completion
  time (`Faults.stamp_events`), this process notes when it read it (same clock);
- server process CPU seconds over the run, and as a share of one core.

On a 2-core machine load generator and server share the cores, so the figures are a floor.

Run: `python -m benchmarks.server_capacity [--jobs 10000] [--concurrency 64] [--streams 1]
[--workers 8] [--json out.json]`
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp
import msgspec
import psutil
from PIL import Image

from benchmarks._common import print_table, write_json

_SERVER = (
    "import sys; from oxedit.testing import Faults, run_server; "
    "run_server('127.0.0.1', 0, 'bench-key', faults=Faults(stamp_events=True), "
    "workers=int(sys.argv[1]))"
)
_EVENT = b"event: media_generation_completed\n"


def tiny_png() -> str:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 230)).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


class StreamCounter:
    """Reads one event stream, counting completion events and their delivery delays."""

    def __init__(self, resp: aiohttp.ClientResponse, expected: int) -> None:
        self.resp = resp
        self.expected = expected
        self.count = 0
        self.first = self.last = 0.0
        self.delays: list[float] = []
        self.done = asyncio.Event()

    async def run(self) -> None:
        decode = msgspec.json.Decoder().decode
        while self.count < self.expected:
            frame = await self.resp.content.readuntil(b"\n\n")
            if not frame:
                raise RuntimeError(f"stream ended after {self.count} events")
            if not frame.startswith(_EVENT):
                continue
            now = time.time()
            self.delays.append(now - decode(frame[len(_EVENT) + 6 : -2])["completed_at"])
            self.count += 1
            if self.count == 1:
                self.first = time.perf_counter()
        self.last = time.perf_counter()
        self.done.set()


async def load(url: str, jobs: int, concurrency: int, streams: int) -> dict[str, Any]:
    body = msgspec.json.encode(
        {
            "model": "qwen-image-edit",
            "prompt": "mirror",
            "input_image": tiny_png(),
            "aspect_ratio": "1:1",
        }
    )
    headers = {"Authorization": "Bearer bench-key", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency + streams)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:
        counters = []
        for _ in range(streams):
            resp = await http.get("/api/events", timeout=aiohttp.ClientTimeout(total=None))
            counters.append(StreamCounter(resp, jobs))
        readers = [asyncio.create_task(c.run()) for c in counters]
        remaining = jobs

        async def enqueuer() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                async with http.post("/api/ai/queue", data=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"enqueue: HTTP {resp.status} {await resp.text()}")
                    await resp.read()

        start = time.perf_counter()
        await asyncio.gather(*(enqueuer() for _ in range(concurrency)))
        enqueued = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*readers), timeout=600)
        for c in counters:
            c.resp.close()
    last = max(c.last for c in counters)
    delays = sorted(d for c in counters for d in c.delays)
    return {
        "enqueue_s": enqueued - start,
        "enqueue_per_s": jobs / (enqueued - start),
        "events": sum(c.count for c in counters),
        "events_per_s": sum(c.count / (c.last - c.first) for c in counters),
        "drain_s": last - enqueued,
        "total_s": last - start,
        "delay_p50_ms": statistics.median(delays) * 1000,
        "delay_p99_ms": delays[int(len(delays) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(args.workers)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("oxedit local server: "):
            raise RuntimeError(f"server did not start: {line!r}")
        url = line.split(": ", 1)[1].strip()
        proc = psutil.Process(server.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        result = asyncio.run(load(url, args.jobs, args.concurrency, args.streams))
        result["server_cpu_s"] = sum(proc.cpu_times()[:2]) - cpu0
    finally:
        server.terminate()
        server.wait(timeout=10)
    result["server_cpu_share"] = result["server_cpu_s"] / result["total_s"]
    result.update(
        jobs=args.jobs, concurrency=args.concurrency, streams=args.streams, workers=args.workers
    )

    print_table(
        f"Local server capacity: {args.jobs:,} jobs, concurrency {args.concurrency}, "
        f"{args.streams} stream(s), {args.workers} workers",
        ["metric", "value"],
        [
            ["enqueue jobs/s", result["enqueue_per_s"]],
            ["events/s streamed (all streams)", result["events_per_s"]],
            ["time to drain after last enqueue (s)", result["drain_s"]],
            ["total wall time (s)", result["total_s"]],
            ["completion-to-receipt p50 (ms)", result["delay_p50_ms"]],
            ["completion-to-receipt p99 (ms)", result["delay_p99_ms"]],
            ["server CPU (s)", result["server_cpu_s"]],
            ["server CPU (share of one core)", f"{result['server_cpu_share']:.0%}"],
        ],
    )
    write_json(args.json, result)


if __name__ == "__main__":
    main()

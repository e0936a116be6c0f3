"""Section 4 of `hot_paths`: enqueue requests/s and client CPU, oxedit against raw aiohttp.

N `POST /api/ai/queue` (8x8 PNG data URI, prompt "mirror"), issued 1,000 at a time
(`asyncio.gather` of 1,000 calls, then the next 1,000), at most 64 in flight, against a fresh
local server in another process whose jobs take an hour (so no completion event arrives: only
the enqueue path is measured). Each client runs in its own child process, which measures its
CPU (`getrusage`) over the submits alone.

- `raw aiohttp`: a `ClientSession` with `TCPConnector(limit=64)` behind an
  `asyncio.Semaphore(64)`; per call: encode the body, POST, read, decode the id with msgspec.
  The floor.
- `raw aiohttp, connector queue`: the same without the semaphore: calls wait in the
  connector's queue, fully built (how oxedit's transport bounds its requests).
- `oxedit Transport.request`: oxedit's private transport for the same POST (the body encoded
  the same way): what oxedit's HTTP layer alone adds.
- `oxedit Client.submit`: the public call, `client.submit(prompt=..., image=png_bytes)`,
  which also validates, builds the data URI, waits for the event stream, registers the job.

Run alone: `python -m benchmarks._enqueue_rate [--n 5000] [--repeat 3]`; `hot_paths` prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing.connection
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

import oxedit
from benchmarks._common import (
    cpu_seconds,
    machine,
    median,
    print_table,
    run_in_child,
    spread,
    tiny_png,
    write_json,
)
from benchmarks._server_proc import ServerProcess
from benchmarks.end_to_end import (
    JSON,
    MAX_CONNECTIONS,
    PROMPT,
    enqueue_decoder,
    request_body,
)

BATCH = 1_000
HOUR = 3600.0
RUN_TIMEOUT = 300.0


async def _timed(n: int, call: Callable[[], Awaitable[object]]) -> dict[str, float]:
    await call()  # warm-up: connection pool (and for oxedit the event stream) up
    cpu0, start = cpu_seconds(), time.perf_counter()
    for done in range(0, n, BATCH):
        await asyncio.gather(*(call() for _ in range(min(BATCH, n - done))))
    return {"wall_s": time.perf_counter() - start, "cpu_s": cpu_seconds() - cpu0}


async def enqueue_raw(
    url: str, api_key: str, n: int, png: bytes, gate: bool = True
) -> dict[str, float]:
    bound = asyncio.Semaphore(MAX_CONNECTIONS) if gate else contextlib.nullcontext()
    async with aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {api_key}", **JSON},
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
    ) as session:

        async def call() -> str:
            async with (
                bound,
                session.post(url + "/api/ai/queue", data=request_body(png)) as resp,
            ):
                data = await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"enqueue: HTTP {resp.status}")
            return enqueue_decoder.decode(data).generations[0].generation_id

        return await _timed(n, call)


async def enqueue_transport(url: str, api_key: str, n: int, png: bytes) -> dict[str, float]:
    async with oxedit.Client(
        api_key=api_key, base_url=url, limits=oxedit.Limits(max_connections=MAX_CONNECTIONS)
    ) as client:
        transport = client._tracker.api.transport  # private on purpose: the HTTP layer alone

        async def call() -> str:
            resp = await transport.request("POST", "/api/ai/queue", body=request_body(png))
            if resp.status != 200:
                raise RuntimeError(f"enqueue: HTTP {resp.status}")
            return enqueue_decoder.decode(resp.body).generations[0].generation_id

        return await _timed(n, call)


async def enqueue_submit(url: str, api_key: str, n: int, png: bytes) -> dict[str, float]:
    async with oxedit.Client(
        api_key=api_key, base_url=url, limits=oxedit.Limits(max_connections=MAX_CONNECTIONS)
    ) as client:

        async def call() -> oxedit.Job:
            return await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")

        out = await _timed(n, call)
        if client.stats.enqueue_requests != n + 1:
            raise RuntimeError(f"expected {n + 1} POSTs, sent {client.stats.enqueue_requests}")
        return out


async def enqueue_raw_connector(url: str, api_key: str, n: int, png: bytes) -> dict[str, float]:
    return await enqueue_raw(url, api_key, n, png, gate=False)


CLIENTS: dict[str, Callable[[str, str, int, bytes], Awaitable[dict[str, float]]]] = {
    "raw aiohttp": enqueue_raw,
    "raw aiohttp, connector queue": enqueue_raw_connector,
    "oxedit Transport.request": enqueue_transport,
    "oxedit Client.submit": enqueue_submit,
}


def _child(
    conn: multiprocessing.connection.Connection,
    client: str,
    url: str,
    api_key: str,
    n: int,
    png: bytes,
) -> None:
    try:
        conn.send(("ok", asyncio.run(CLIENTS[client](url, api_key, n, png))))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def _run(n: int, repeat: int) -> list[dict[str, Any]]:
    png = tiny_png()
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in CLIENTS}
    for _ in range(repeat):
        for client in CLIENTS:  # interleaved: drift hits every client alike
            with ServerProcess(latency=HOUR, workers=100) as server:
                result, _ = await run_in_child(
                    _child, (client, server.url, server.api_key, n, png), limit_s=RUN_TIMEOUT
                )
            runs[client].append(result)
    rows = []
    for client, r in runs.items():
        cpu = [x["cpu_s"] for x in r]
        rate = [n / x["wall_s"] for x in r]
        rows.append(
            {
                "client": client,
                "req_per_s": median(rate),
                "cpu_s": median(cpu),
                "cpu_us_per_request": median(cpu) / n * 1e6,
                "noise": spread(cpu),
                "rate_noise": spread(rate),
                "runs": r,
            }
        )
    base = rows[0]["cpu_s"]
    for row in rows:
        row["ratio"] = row["cpu_s"] / base
        row["rate_ratio"] = row["req_per_s"] / rows[0]["req_per_s"]
    return rows


def bench_enqueue(n: int, repeat: int) -> list[dict[str, Any]]:
    """Enqueue rate and client CPU per client; keys `client`, `req_per_s`, `cpu_s`, `ratio`
    (CPU over raw aiohttp's), `noise` (spread of CPU over the repeats)."""
    return asyncio.run(_run(n, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    rows = bench_enqueue(args.n, args.repeat)
    print_table(
        f"Enqueue, {args.n:,} POSTs 1,000 at a time, local server process "
        f"(median of {args.repeat})",
        ["client", "req/s", "client CPU s", "CPU us/req", "x raw CPU", "noise CPU/rate"],
        [
            [
                r["client"],
                r["req_per_s"],
                r["cpu_s"],
                r["cpu_us_per_request"],
                r["ratio"],
                f"{r['noise']} / {r['rate_noise']}",
            ]
            for r in rows
        ],
    )
    write_json(
        args.json,
        {
            "benchmark": "enqueue_rate",
            "n": args.n,
            "repeat": args.repeat,
            "machine": machine(),
            "command": " ".join(["python -m benchmarks._enqueue_rate", *sys.argv[1:]]),
            "results": rows,
        },
    )


if __name__ == "__main__":
    main()

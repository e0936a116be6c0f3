"""Client memory per pending job: RSS growth with 10,000 and 100,000 generations pending.

The local server (own process) gives every job a latency of an hour, so nothing finishes
during the run: every submitted job stays pending. Each client runs in a fresh process:
it opens, submits one warm-up job (so the event stream and the connection pool exist), then
measures its RSS, submits N jobs 1,000 at a time (`asyncio.gather` of 1,000 `submit` calls,
keeping every returned job, as a caller must), collects garbage, and measures RSS again.
Per job = (RSS after - RSS before) / N. RSS is what the OS charges; it also holds freed memory
that Python keeps in its arenas, so it is an upper bound on what pending jobs really hold.

Alongside RSS, the growth of gc-tracked objects by type (per job) shows what a pending job is
made of; strings and bytes are not gc-tracked and do not appear there.

Clients: `oxedit` (`Client.submit`, jobs kept as `Job`s) and `raw` (the hand-written aiohttp
client of `end_to_end`: a future per id in a dict, same request body and connection bound).

`--hold S` keeps the oxedit jobs pending S seconds longer and measures again: past
`ReconcilePolicy.stale_after` (120 s) the client starts checking stale jobs through the queue
endpoints, and this shows what that costs with N jobs pending.

Run: `python -m benchmarks.memory [--n 10000 100000] [--clients oxedit raw] [--repeat 1]
[--hold S] [--json PATH]`
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing.connection
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import oxedit
from benchmarks._common import (
    machine,
    median,
    peak_rss_bytes,
    print_table,
    rss_bytes,
    run_in_child,
    spread,
    tiny_png,
    write_json,
)
from benchmarks._server_proc import ServerProcess
from benchmarks.end_to_end import MAX_CONNECTIONS, PROMPT, RawClient, request_body

BATCH = 1_000
HOUR = 3600.0
TARGET_BYTES = 2048
RUN_TIMEOUT = 600.0


def _types() -> Counter[str]:
    return Counter(type(o).__name__ for o in gc.get_objects())


async def _measure(
    n: int, warm_up: Callable[[], Awaitable[Any]], submit: Callable[[], Awaitable[Any]]
) -> dict[str, Any]:
    held = [await warm_up()]
    gc.collect()
    types0 = _types()
    rss0 = rss_bytes()
    start = time.perf_counter()
    for done in range(0, n, BATCH):
        held.extend(await asyncio.gather(*(submit() for _ in range(min(BATCH, n - done)))))
    submit_s = time.perf_counter() - start
    gc.collect()
    rss1 = rss_bytes()
    growth = _types() - types0
    return {
        "held": len(held) - 1,
        "rss_before": rss0,
        "rss_after": rss1,
        "bytes_per_job": (rss1 - rss0) / n,
        "submit_s": submit_s,
        "objects_per_job": {k: v / n for k, v in growth.most_common(10)},
        "gc_objects_per_job": sum(growth.values()) / n,
        "_held": held,
    }


async def pending_oxedit(
    url: str, api_key: str, n: int, png: bytes, hold: float = 0.0
) -> dict[str, Any]:
    async with oxedit.Client(
        api_key=api_key, base_url=url, limits=oxedit.Limits(max_connections=MAX_CONNECTIONS)
    ) as client:

        async def submit() -> oxedit.Job:
            return await client.submit(prompt=PROMPT, image=png, aspect_ratio="1:1")

        out = await _measure(n, submit, submit)
        jobs: list[oxedit.Job] = out.pop("_held")
        out["pending"] = sum(not job.done() for job in jobs[1:])
        if hold:
            # Pending jobs older than ReconcilePolicy.stale_after are checked through the
            # queue endpoints: what does that cost while N jobs stay pending?
            await asyncio.sleep(hold)
            gc.collect()
            out["rss_after_hold"] = rss_bytes()
            out["peak_rss_after_hold"] = peak_rss_bytes()
            out["pending_after_hold"] = sum(not job.done() for job in jobs[1:])
        out["client_stats"] = {
            "requests": dict(client.stats.requests),
            "poll_requests": client.stats.poll_requests,
            "event_connections": client.stats.event_connections,
        }
        del jobs
    return out


async def pending_raw(
    url: str, api_key: str, n: int, png: bytes, hold: float = 0.0
) -> dict[str, Any]:
    async with RawClient(url, api_key) as client:

        async def submit() -> asyncio.Future[Any]:
            return await client.submit(request_body(png))

        out = await _measure(n, submit, submit)
        futures: list[asyncio.Future[Any]] = out.pop("_held")
        out["pending"] = sum(not f.done() for f in futures[1:])
        for future in futures:
            future.cancel()
    return out


CLIENTS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "oxedit": pending_oxedit,
    "raw": pending_raw,
}


def _child(
    conn: multiprocessing.connection.Connection,
    client: str,
    url: str,
    api_key: str,
    n: int,
    png: bytes,
    hold: float,
) -> None:
    import traceback

    try:
        conn.send(("ok", asyncio.run(CLIENTS[client](url, api_key, n, png, hold))))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


async def run_once(client: str, n: int, png: bytes, hold: float = 0.0) -> dict[str, Any]:
    # A small worker pool: jobs wait `queued` or sleep `processing` for an hour; all pending.
    with ServerProcess(latency=HOUR, workers=100) as server:
        result, peak_connections = await run_in_child(
            _child,
            (client, server.url, server.api_key, n, png, hold),
            limit_s=RUN_TIMEOUT + hold,
        )
        stats = server.stats()
    result.update(
        client=client,
        n=n,
        peak_connections=peak_connections,
        server_generations=stats["generations_created"],
        server_routes=stats["requests_by_route"],
    )
    return result


async def run_all(
    ns: list[int], clients: list[str], repeat: int, hold: float = 0.0
) -> list[dict[str, Any]]:
    png = tiny_png()
    rows = []
    for n in ns:
        runs: dict[str, list[dict[str, Any]]] = {c: [] for c in clients}
        for i in range(repeat):
            for client in clients:
                print(
                    f"  N={n:,} run {i + 1}/{repeat}: {client} ...",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                run = await run_once(client, n, png, hold)
                print(f" {run['bytes_per_job']:,.0f} B/job", file=sys.stderr, flush=True)
                if run["pending"] != n:
                    raise RuntimeError(f"{client}: only {run['pending']} of {n} jobs pending")
                runs[client].append(run)
        for client in clients:
            r = runs[client]
            per_job = [x["bytes_per_job"] for x in r]
            rows.append(
                {
                    "client": client,
                    "n": n,
                    "runs": len(r),
                    "bytes_per_job": median(per_job),
                    "noise": spread(per_job),
                    "rss_before_mb": median([x["rss_before"] for x in r]) / 2**20,
                    "rss_after_mb": median([x["rss_after"] for x in r]) / 2**20,
                    "submit_s": median([x["submit_s"] for x in r]),
                    "gc_objects_per_job": median([x["gc_objects_per_job"] for x in r]),
                    "objects_per_job": r[-1]["objects_per_job"],
                    "peak_connections": max(x["peak_connections"] for x in r),
                    "all_runs": r,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--hold",
        type=float,
        default=0.0,
        metavar="S",
        help="keep the oxedit jobs pending S more seconds and measure again (past "
        "ReconcilePolicy.stale_after, 120 s by default, stale jobs get reconciled)",
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    rows = asyncio.run(run_all(args.n, args.clients, args.repeat, args.hold))
    print_table(
        f"Client memory per pending job (RSS growth / N; median of {args.repeat}); "
        f"target < {TARGET_BYTES:,} B",
        [
            "client",
            "pending",
            "B/job",
            "x raw",
            "RSS before MB",
            "RSS after MB",
            "gc objects/job",
            "submit s",
            "noise",
            "target",
        ],
        [
            [
                r["client"],
                r["n"],
                r["bytes_per_job"],
                _ratio(r, rows),
                r["rss_before_mb"],
                r["rss_after_mb"],
                r["gc_objects_per_job"],
                r["submit_s"],
                r["noise"],
                "met" if r["bytes_per_job"] < TARGET_BYTES else "MISSED",
            ]
            for r in rows
        ],
    )
    if args.hold:
        for r in rows:
            last = r["all_runs"][-1]
            if "rss_after_hold" in last:
                print(
                    f"  {r['client']} at {r['n']:,} after {args.hold:g} s more: RSS "
                    f"{last['rss_after_hold'] / 2**20:,.1f} MB (peak "
                    f"{last['peak_rss_after_hold'] / 2**20:,.1f} MB), still pending "
                    f"{last['pending_after_hold']:,}, client requests "
                    f"{last['client_stats']['requests']}"
                )
    for r in rows:
        top = ", ".join(f"{k} {v:.2f}" for k, v in list(r["objects_per_job"].items())[:6])
        print(f"  {r['client']} at {r['n']:,}: gc-tracked objects per job: {top}")
    write_json(
        args.json,
        {
            "benchmark": "memory",
            "machine": machine(),
            "command": " ".join(["python -m benchmarks.memory", *sys.argv[1:]]),
            "results": rows,
        },
    )


def _ratio(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    raw = next((r for r in rows if r["client"] == "raw" and r["n"] == row["n"]), None)
    return f"{row['bytes_per_job'] / raw['bytes_per_job']:.2f}" if raw else ""


if __name__ == "__main__":
    main()

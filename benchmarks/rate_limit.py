"""A burst against an account's rate limit: the adaptive enqueue rate vs fixed concurrency.

N submits at once against a local server whose enqueues are limited by a token bucket (R/s,
a burst of R or `--burst`; 429 "Rate limit exceeded" beyond it, no Retry-After as documented,
or `--retry-after S`). Measured:
submits that succeeded and failed (with the default `RetryPolicy`, 5 retries), enqueues answered
429, wall time and throughput. "fixed" is oxedit with its pacing switched off, which is what it
did before the adaptive rate: at most `max_connections` (64) requests in flight, each 429 retried
after a backoff. "fixed, 50 retries" lets every submit through eventually, to count the 429s.

    python -m benchmarks.rate_limit [--n 2000] [--rate 50] [--burst N] [--retry-after S]
                                    [--adaptive-only] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import oxedit
from oxedit.testing import Faults, LocalServer

from ._common import print_table, tiny_png, write_json


async def run(
    n: int,
    rate: float,
    *,
    adaptive: bool,
    retries: int,
    burst: int | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    png = tiny_png()
    faults = Faults(
        enqueue_rate_limit=rate, enqueue_burst=burst, retry_after=retry_after, latency=0.01
    )
    async with LocalServer(faults=faults, workers=64) as server:
        retry = oxedit.RetryPolicy(max_retries=retries)
        async with server.client(retry=retry) as client:
            if not adaptive:  # private on purpose: the pacing off, as before it existed
                pace = client._tracker.require_open().enqueuer.pace
                pace.refused = lambda *args, **kwargs: None  # type: ignore[method-assign]
            started = time.perf_counter()
            results = await asyncio.gather(
                *(client.submit(prompt=f"{i}", image=png) for i in range(n)),
                return_exceptions=True,
            )
            wall = time.perf_counter() - started
            stats = client.stats
        ok = sum(isinstance(r, oxedit.Job) for r in results)
        return {
            "mode": ("adaptive" if adaptive else "fixed")
            + ("" if retries == 5 else f", {retries} retries"),
            "n": n,
            "limit_per_s": rate,
            "submitted": ok,
            "failed": n - ok,
            "answered_429": server.stats.rate_limited,
            "share_429": round(server.stats.rate_limited / max(stats.enqueue_requests, 1), 3),
            "wall_s": round(wall, 1),
            "jobs_per_s": round(ok / wall, 1),
            "final_rate": None if stats.enqueue_rate is None else round(stats.enqueue_rate, 1),
            "created": server.stats.generations_created,
        }


async def main_async(
    n: int, rate: float, burst: int | None, retry_after: int | None, adaptive_only: bool
) -> list[dict[str, Any]]:
    rows = [await run(n, rate, adaptive=True, retries=5, burst=burst, retry_after=retry_after)]
    if not adaptive_only:
        for retries in (5, 50):
            rows.append(
                await run(
                    n, rate, adaptive=False, retries=retries, burst=burst, retry_after=retry_after
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--burst", type=int, default=None, help="bucket size (default: rate)")
    parser.add_argument("--retry-after", type=int, default=None, help="seconds, on each 429")
    parser.add_argument("--adaptive-only", action="store_true", help="skip the fixed modes")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = asyncio.run(
        main_async(args.n, args.rate, args.burst, args.retry_after, args.adaptive_only)
    )
    columns = list(rows[0])
    print_table("burst against a rate limit", columns, [[r[c] for c in columns] for r in rows])
    if args.json:
        write_json(args.json, {"runs": rows})


if __name__ == "__main__":
    main()

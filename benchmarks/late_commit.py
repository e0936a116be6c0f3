"""Lost enqueue answers whose rows the backend commits late, with the client's default settings.

N jobs at once against a local server that cuts a share of the enqueue connections and commits
those rows `--delay` seconds later (`Faults(lost_response_rate=, commit_delay=)`: a load balancer
that gave up while the backend went on). Measured: generations created (each one is billed),
POSTs sent, jobs settled by outcome, lost answers and adoptions, late duplicates cancelled, and
the wall time. Issue 20's scenario is the default: 300 jobs, 3% cut, committed 20 s later.

    python -m benchmarks.late_commit [--n 300] [--rate 0.03] [--delay 20] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter
from typing import Any

import oxedit
from oxedit.testing import Faults, LocalServer

from ._common import print_table, tiny_png, write_json


async def run(n: int, rate: float, delay: float, seed: int) -> dict[str, Any]:
    faults = Faults(seed=seed, lost_response_rate=rate, commit_delay=delay, latency=0.05)
    png = tiny_png()
    started = time.monotonic()
    async with LocalServer(faults=faults) as server:
        # The default ReconcilePolicy (its 30 s lost-response window) is the point here.
        async with oxedit.Client(api_key=server.api_key, base_url=server.url) as client:
            submitted = await asyncio.gather(
                *(client.submit(prompt=f"edit {i}", image=png) for i in range(n)),
                return_exceptions=True,
            )
            jobs = [j for j in submitted if isinstance(j, oxedit.Job)]
            outcomes: Counter[str] = Counter()
            for job in jobs:
                try:
                    outcomes[(await job).status] += 1
                except oxedit.GenerationError as exc:
                    outcomes[type(exc).__name__] += 1
                except oxedit.OxeditError as exc:
                    outcomes[f"error: {type(exc).__name__}"] += 1
            stats = client.stats
        rows = server.generations()
    return {
        "n": n,
        "cut_rate": rate,
        "commit_delay_s": delay,
        "submit_errors": sum(1 for j in submitted if not isinstance(j, oxedit.Job)),
        "generations_created": len(rows),
        "posts": stats.enqueue_requests,
        "lost_responses": stats.lost_responses,
        "adopted": stats.adopted,
        "late_duplicates_cancelled": stats.late_duplicates_cancelled,
        "outcomes": dict(outcomes),
        "wall_s": round(time.monotonic() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rate", type=float, default=0.03)
    parser.add_argument("--delay", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json")
    args = parser.parse_args()
    result = asyncio.run(run(args.n, args.rate, args.delay, args.seed))
    print_table(
        f"{args.n} jobs, {args.rate:.0%} of enqueues cut and committed {args.delay:g} s later",
        list(result),
        [list(result.values())],
    )
    write_json(args.json, result)


if __name__ == "__main__":
    main()

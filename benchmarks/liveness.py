"""Liveness under the full fault mix: how late does the last job settle, and at what cost?

Runs N jobs against a local server that cuts the event stream every 300 events and loses 3% of
events, duplicates 5%, sends 10% before their enqueue answer, cancels 3% silently (no event),
answers 3% of enqueues 429 and 2% 503, loses 2% of enqueue answers after creating the job, and
answers 5% of queue GETs 500; then the same N on a healthy server. Default client settings.

For each job it measures how long after the job really finished (on the server: succeeded,
failed, or cancelled by someone else) the client settled it: the bound documented in the README
is `max(first check, L + ReconcilePolicy.interval)` plus a tick and the check's requests, where
`L` is the job's completion age. It also counts polling requests per job and reconnects.

    python -m benchmarks.liveness [--n 2000] [--json benchmarks/results/liveness.json]

The server runs in-process (its CPU does not matter here: what is measured is lateness against
the server's own completion clock, read from its private store).
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

FAULT_MIX: dict[str, Any] = {
    "cut_stream_after_events": 300,
    "drop_event_rate": 0.03,
    "duplicate_event_rate": 0.05,
    "event_before_response_rate": 0.10,
    "silent_cancel_rate": 0.03,
    "enqueue_429_rate": 0.03,
    "enqueue_5xx_rate": 0.02,
    "lost_response_rate": 0.02,
    "get_error_rate": 0.05,
}


async def run(
    n: int,
    *,
    faults: dict[str, Any],
    latency: tuple[float, float] = (1.0, 3.0),
    reconcile: oxedit.ReconcilePolicy | None = None,
    retry: oxedit.RetryPolicy | None = None,
    seed: int = 10,
) -> dict[str, Any]:
    """N jobs through a server with `faults`; lateness, cost and outcome counts."""
    png = tiny_png()
    server_faults = Faults(seed=seed, latency=latency, **faults)
    async with LocalServer(faults=server_faults, workers=n) as server:
        client = oxedit.Client(
            api_key=server.api_key, base_url=server.url, reconcile=reconcile, retry=retry
        )
        settled: dict[str, tuple[float, str]] = {}
        started = time.time()

        async def one(i: int) -> None:
            job = await client.submit(prompt=f"job {i}", image=png)
            try:
                status = (await job).status
            except oxedit.GenerationFailed:
                status = "failed"
            except oxedit.GenerationCancelled:
                status = "cancelled"
            settled[job.id] = (time.time(), status)

        async with client:
            await asyncio.gather(*(one(i) for i in range(n)))
            stats = client.stats
        # The server's truth: when each job finished (float time, private on purpose).
        store = server._api.generations
        lateness = []
        ages = []
        mismatched = 0
        for generation_id, (at, status) in settled.items():
            gen = store[generation_id]
            if gen.status != status or gen.completed_time is None:
                mismatched += 1
                continue
            lateness.append(at - gen.completed_time)
            ages.append(gen.completed_time - gen.enqueued_at)  # whole seconds on the server
        created = server.stats.generations_created
    last = max(at for at, _ in settled.values()) - started
    return {
        "n": n,
        "created": created,
        "mismatched": mismatched,
        "statuses": dict(Counter(status for _, status in settled.values())),
        "last_settled_s": round(last, 2),
        "slowest_job_s": round(max(ages), 2),
        "max_lateness_s": round(max(lateness), 2),
        "polls_per_job": round(stats.poll_requests / n, 3),
        "reconnects": stats.event_connections - 1,
        "lost_responses": stats.lost_responses,
        "events": stats.events,
    }


async def main_async(n: int) -> list[dict[str, Any]]:
    rows = []
    for name, faults in (("full fault mix", FAULT_MIX), ("healthy", {})):
        result = await run(n, faults=faults)
        rows.append({"run": name, **result})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args.n))
    policy = oxedit.ReconcilePolicy()
    print(
        f"default ReconcilePolicy: floor {policy.stale_floor:g} s, first check <= "
        f"{policy.stale_after:g} s, interval {policy.interval:g} s"
    )
    columns = [
        "run",
        "n",
        "created",
        "mismatched",
        "slowest_job_s",
        "last_settled_s",
        "max_lateness_s",
        "polls_per_job",
        "reconnects",
        "lost_responses",
    ]
    print_table("liveness", columns, [[row[c] for c in columns] for row in rows])
    if args.json:
        write_json(args.json, {"policy": str(policy), "runs": rows})


if __name__ == "__main__":
    main()

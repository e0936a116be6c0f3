"""`oxedit.ray.Edit` on a local Ray: 1, 2 and 4 actors, with and without an account rate limit.

For each configuration: ROWS rows (a tiny PNG as bytes, distinct prompts) through
`ds.map_batches(oxedit.ray.Edit, concurrency=ACTORS)` against `oxedit serve` in its own
process (instant edits; the limited runs: a token bucket of `--rate`/s, burst 20,
`Retry-After: 1`), one shared rate budget (fresh for each configuration); wall time of the
pipeline (Ray's actor start-up included), the enqueues accepted per second from the first
accepted to the last (the budget's count: the rate against the limit), enqueues refused, the
budget's drops and leases, the actors' CPU per row (their whole process: Ray's batch plumbing
included), streams, events and foreign events per actor.

Then the listener's own cost of an event that is not its process's: `--events` completion
events for unknown generations, fed to an open client's listener (decode + registry miss; the
SSE framing and socket read come on top: `python -m benchmarks.scale --only foreign` has them).

    python -m benchmarks.ray_scale --rows 4000 --rate 50 --actors 1,2,4 --limits none,50
        [--events 0] [--json PATH]

(one configuration per run keeps each under a couple of minutes on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import ray

import oxedit
import oxedit.ray
from oxedit import _constants as C
from oxedit.server import DEFAULT_API_KEY

from ._common import machine, print_table, tiny_png, write_json


def start_server(rate: float | None) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "oxedit", "serve", "--port", "0", "--workers", "64"]
    if rate is not None:
        argv += ["--enqueue-rate-limit", str(rate), "--enqueue-burst", "20", "--retry-after", "1"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    first = process.stdout.readline()
    return process, first.split(": ", 1)[1].strip()


def run(url: str, actors: int, rows: int, tag: str) -> dict[str, Any]:
    fresh_budget()
    image = tiny_png()
    items = [{"image": image, "prompt": f"{tag} {i}"} for i in range(rows)]
    ds = ray.data.from_items(items, override_num_blocks=max(8, actors * 4))
    edited = ds.map_batches(
        oxedit.ray.Edit,
        fn_constructor_kwargs={"api_key": DEFAULT_API_KEY, "base_url": url, "concurrency": 256},
        concurrency=actors,
        batch_size=100,
        num_cpus=0.25,
    )
    started = time.monotonic()
    out = edited.take_all()
    wall = time.monotonic() - started
    stats = oxedit.ray.budget_stats()
    per_actor = list(stats["actors"].values())
    ok = sum(r["status"] == "succeeded" for r in out)
    attempts = stats["accepted"] + stats["refusals"]
    return {
        "actors": actors,
        "rows": rows,
        "succeeded": ok,
        "wall_s": round(wall, 2),
        "rows_per_s": round(rows / wall, 1),
        "accepted_per_s": round(stats["accepted_per_s"] or 0.0, 1),
        "refused": stats["refusals"],
        "refused_share": round(stats["refusals"] / max(1, attempts), 4),
        "drops": stats["drops"],
        "leases": stats["leases"],
        "cpu_ms_per_row": round(1000 * sum(a["cpu_seconds"] for a in per_actor) / rows, 3),
        "streams_per_actor": [a["streams"] for a in per_actor],
        "foreign_events_per_actor": [a["foreign_events"] for a in per_actor],
        "events_per_actor": [a["events"] for a in per_actor],
    }


def fresh_budget() -> None:
    """A fresh budget (and counters) for each configuration."""
    with contextlib.suppress(ValueError):  # none yet
        ray.kill(ray.get_actor(C.RAY_BUDGET_NAME, namespace=C.RAY_BUDGET_NAMESPACE))


async def foreign_event_cost(url: str, events: int) -> float:
    """Microseconds of CPU per completion event the listener gets for a generation it does
    not follow (another process's)."""
    async with oxedit.Client(api_key=DEFAULT_API_KEY, base_url=url) as client:
        registry = client._tracker.require_open().registry
        raws = [
            json.dumps(
                {"generation_id": f"gen-{i:08d}", "status": "succeeded", "url": "http://x/y.png"}
            ).encode()
            for i in range(events)
        ]
        started = time.process_time()
        for start in range(0, events, 100):  # as the stream hands them over: a chunk at once
            registry.events(raws[start : start + 100])
        spent = time.process_time() - started
        assert client.stats.foreign_events == events
    return 1e6 * spent / events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--rate", type=float, default=50.0, help="the limited runs' limit /s")
    parser.add_argument("--actors", default="1,2,4")
    parser.add_argument("--limits", default="none,50", help="'none' and/or the --rate run")
    parser.add_argument("--events", type=int, default=50_000, help="0: no listener figure")
    parser.add_argument("--json")
    args = parser.parse_args()
    limits = [None if x == "none" else args.rate for x in args.limits.split(",")]
    # A short temp folder: Ray's AF_UNIX sockets live under it (107 bytes at most).
    temp = tempfile.mkdtemp(prefix="oxray-", dir="/tmp" if os.path.isdir("/tmp") else None)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        namespace="oxedit",
        log_to_driver=False,
        _temp_dir=temp,
    )
    results: list[dict[str, Any]] = []
    cost: float | None = None
    try:
        for rate in limits:
            process, url = start_server(rate)
            try:
                for actors in [int(a) for a in args.actors.split(",")]:
                    result = run(url, actors, args.rows, f"r{rate}-a{actors}")
                    result["limit"] = rate
                    results.append(result)
                    print(result, flush=True)
                if cost is None and args.events:
                    cost = asyncio.run(foreign_event_cost(url, args.events))
            finally:
                process.terminate()
                process.wait(timeout=30)
    finally:
        ray.shutdown()
    print_table(
        f"oxedit.ray, {args.rows} rows",
        [
            "limit/s", "actors", "ok", "wall s", "rows/s", "accepted/s", "refused", "drops",
            "CPU ms/row", "streams", "events/actor", "foreign/actor",
        ],
        [
            [
                r["limit"] or "none", r["actors"], r["succeeded"], r["wall_s"], r["rows_per_s"],
                r["accepted_per_s"], f"{r['refused']} ({100 * r['refused_share']:.1f}%)",
                r["drops"], r["cpu_ms_per_row"], r["streams_per_actor"], r["events_per_actor"],
                r["foreign_events_per_actor"],
            ]
            for r in results
        ],
    )  # fmt: skip
    if cost is not None:
        print(f"listener CPU per foreign event: {cost:.1f} us")
    write_json(
        args.json,
        {"machine": machine(), "results": results, "foreign_event_us": cost, "args": vars(args)},
    )


if __name__ == "__main__":
    main()

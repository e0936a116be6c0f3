"""End to end: N edits enqueued at once and awaited, oxedit against the ways people do it by hand.

Every strategy runs in the same invocation, each run in its own child process (so its CPU and
memory are its own) against a fresh local server in another process (`_server_proc`). The
server draws each job's latency from a fixed distribution (default uniform 1-3 s), has as many
workers as there are jobs (so the distribution, not a worker pool, decides when jobs finish),
and stamps each completion event with the time the job finished (`Faults(stamp_events=True)`).
Every job is one coroutine that enqueues (8x8 PNG as a data URI, prompt "mirror") and awaits
its result; all N start at once.

Strategies:
- `oxedit`: `client.submit(...)` then `await job` (one shared event stream).
- `raw`: the ceiling. oxedit's protocol on bare aiohttp: one shared SSE stream opened first,
  POSTs bounded by an `asyncio.Semaphore(64)` taken before aiohttp is called, futures in a
  dict, a minimal SSE parse. What the transport alone costs.
- `raw-connector`: the same client bounded only by the connector's limit (64), as oxedit's
  transport was before commit 673bb25: waiting POSTs are then fully built aiohttp requests
  queued in the connector.
  Shows what that choice costs at large N.
- `poll-5s`, `poll-0.5s`: the docs' polling example (`GET /api/ai/queue/{id}` right after
  the enqueue, then every 5 s / 0.5 s), on raw aiohttp with one shared session and at most
  64 requests in flight (semaphore, as `raw`).
- `sse-per-job`: the docs' SSE example: each job opens its own `GET /api/events` and reads it
  until its id appears (json.loads of every completion event, as the docs do). The stream is
  opened before the POST, not after it as in the docs, whose order can miss a fast event.
  Every stream carries every user's event, so the cost grows as N^2; run only at N <= 1,000.

Measured per run: wall time (first submit to last job awaited), jobs/s, client CPU (the child's
`getrusage`, per 1,000 jobs), HTTP requests per job as the server counted them (event-stream
GETs included) and polls per job, peak TCP connections of the client process (sampled every
0.2 s by the parent with psutil), peak client RSS (the child's `ru_maxrss`; it includes the
~40 MB of interpreter and imports, so the growth over the pre-run RSS is given too), and the
completion-to-wake delay p50/p99: `time.time()` when the job's awaiting coroutine resumes minus
the server's completion stamp (for the polling strategies, which see no events, the parent
process reads the stamps from an event stream of its own and joins them by id), and the
child's garbage collections (`gc.callbacks`: full collections, total pause in wall and CPU
time, longest pause; "gen2 GCs late": the full collections that ran once jobs had begun to
complete, and "p99 tail in gen2 GC": of the jobs woken at or past the p99 delay, the share a
full collection held up, i.e. one ran between the job's completion on the server and its
wake-up; for `oxedit` and `raw`, which report each job's completion stamp). Runs are
repeated and medians quoted; noise is (max - min) / median / 2 over the repeats.

Run: `python -m benchmarks.end_to_end [--n 1000 10000] [--repeat 3]
[--strategies oxedit raw ...] [--latency uniform:1:3] [--json PATH] [--plot PATH]`
(Default: N = 1,000 and 10,000, 3 runs each, ~3.5 minutes. 50,000 jobs: `--n 50000`, one run
per strategy by default, ~2 minutes.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
from typing import Any

import aiohttp

from benchmarks._common import (
    machine,
    median,
    percentile,
    print_table,
    run_in_child,
    spread,
    tiny_png,
    write_json,
)
from benchmarks._e2e_strategies import (
    EVENT_PREFIX,
    JSON,
    MAX_CONNECTIONS,
    POLLING,
    PROMPT,
    STRATEGIES,
    RawClient,
    enqueue_decoder,
    event_decoder,
    request_body,
    split_frames,
    strategy_child,
    strategy_oxedit,
    strategy_poll,
    strategy_raw,
    strategy_sse_per_job,
)
from benchmarks._server_proc import LatencySpec, ServerProcess, describe_latency

# What other benchmarks and the smoke tests import from here (the code lives in _e2e_strategies).
__all__ = [
    "JSON",
    "MAX_CONNECTIONS",
    "PROMPT",
    "STRATEGIES",
    "RawClient",
    "aggregate",
    "enqueue_decoder",
    "main",
    "request_body",
    "run_once",
    "strategy_oxedit",
    "strategy_poll",
    "strategy_raw",
    "strategy_sse_per_job",
]

SSE_PER_JOB_MAX = 1_000  # beyond this the N^2 fan-out makes the baseline take minutes
RUN_TIMEOUT = 900.0  # one child run; a hang is reported, not waited for
MAX_WORKERS = 50_000


# -- the parent: server, child, sampling, the observer stream -----------------------------------


class Observer:
    """An event stream in the parent process that records each job's completion stamp, for the
    strategies that never see events."""

    def __init__(self, url: str, api_key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.completed: dict[str, float] = {}

    async def __aenter__(self) -> Observer:
        self._session = aiohttp.ClientSession(
            headers=self.headers, timeout=aiohttp.ClientTimeout(total=None)
        )
        # The server registers a stream before its 200: every later event reaches us.
        self._resp = await self._session.get(self.url + "/api/events")
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        buffer = b""
        async for chunk in self._resp.content.iter_any():
            frames, buffer = split_frames(buffer, chunk)
            for frame in frames:
                if frame.startswith(EVENT_PREFIX):
                    event = event_decoder.decode(frame[len(EVENT_PREFIX) :])
                    if event.completed_at is not None:
                        self.completed[event.generation_id] = event.completed_at

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._resp.close()
        await self._session.close()


async def run_once(strategy: str, n: int, latency: LatencySpec, png: bytes) -> dict[str, Any]:
    """One run of one strategy: fresh server process, fresh client process."""
    with ServerProcess(latency=latency, workers=min(max(n, 100), MAX_WORKERS)) as server:
        observer = Observer(server.url, server.api_key) if strategy in POLLING else None
        async with observer or contextlib.nullcontext():
            cpu_server0 = server.cpu_seconds()
            result, peak_connections = await run_in_child(
                strategy_child, (strategy, server.url, server.api_key, n, png), limit_s=RUN_TIMEOUT
            )
            server_cpu = server.cpu_seconds() - cpu_server0
            if observer is not None:
                woke: dict[str, float] = result.pop("woke")
                await asyncio.sleep(0.1)  # the last event may still be on its way to us
                stamps = observer.completed
                result["delays"] = [t - stamps[g] for g, t in woke.items() if g in stamps]
        stats = server.stats()
    routes: dict[str, int] = stats["requests_by_route"]
    streams = routes.get("GET /api/events", 0) - (1 if strategy in POLLING else 0)
    total = sum(routes.values()) - (1 if strategy in POLLING else 0)
    polls = routes.get("GET /api/ai/queue/{generation_id}", 0) + routes.get("GET /api/ai/queue", 0)
    delays = result.pop("delays")
    tail, late = _full_gc_share(result.pop("spans", []), result["gc_full_windows"], delays)
    return {
        "strategy": strategy,
        "n": n,
        **result,
        "jobs_per_s": n / result["wall_s"],
        "cpu_per_1k": result["cpu_s"] / n * 1000,
        "requests": total,
        "requests_per_job": total / n,
        "polls_per_job": polls / n,
        "event_streams": streams,
        "peak_connections": peak_connections,
        "peak_rss_mb": result["peak_rss"] / 2**20,
        "rss_growth_mb": (result["peak_rss"] - result["rss_before"]) / 2**20,
        "delay_p50_ms": percentile(delays, 50) * 1000,
        "delay_p99_ms": percentile(delays, 99) * 1000,
        "delay_max_ms": max(delays) * 1000 if delays else float("nan"),
        "delays_measured": len(delays),
        "tail_in_full_gc": tail,
        "gc_gen2_late": late,
        "server_cpu_s": server_cpu,
        "server_events_sent": stats["events_sent"],
        "server_routes": routes,
    }


def _full_gc_share(
    spans: list[tuple[float, float]], windows: list[tuple[float, float]], delays: list[float]
) -> tuple[float, int]:
    """Of the jobs whose wake delay is at or past the p99, the share a full collection held up
    (one ran between the job's completion on the server and its awaiting coroutine's
    wake-up), and how many full collections ran once jobs had begun to complete (NaN and 0
    for strategies that report no spans)."""
    if not spans:
        return float("nan"), 0
    p99 = percentile(delays, 99)
    tail = [(done, woke) for done, woke in spans if woke - done >= p99]
    held = sum(any(a < woke and b > done for a, b in windows) for done, woke in tail)
    first = min(done for done, _ in spans)
    return held / len(tail), sum(a > first for a, _ in windows)


# -- aggregation and output --------------------------------------------------------------------

METRICS = (
    "wall_s",
    "jobs_per_s",
    "cpu_s",
    "cpu_per_1k",
    "requests_per_job",
    "polls_per_job",
    "peak_connections",
    "peak_rss_mb",
    "rss_growth_mb",
    "delay_p50_ms",
    "delay_p99_ms",
    "delay_max_ms",
    "server_cpu_s",
    "gc_gen2",
    "gc_pause_s",
    "gc_cpu_s",
    "gc_max_pause_ms",
    "gc_gen2_late",
    "tail_in_full_gc",
    "errors",
)


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats of one (strategy, N), with the noise of wall and CPU."""
    out: dict[str, Any] = {"strategy": runs[0]["strategy"], "n": runs[0]["n"], "runs": len(runs)}
    for key in METRICS:
        out[key] = median([r[key] for r in runs])
    out["wall_noise"] = spread([r["wall_s"] for r in runs])
    out["cpu_noise"] = spread([r["cpu_s"] for r in runs])
    out["p99_noise"] = spread([r["delay_p99_ms"] for r in runs])
    return out


def print_results(n: int, rows: list[dict[str, Any]], latency: str) -> None:
    raw = next((r for r in rows if r["strategy"] == "raw"), None)
    table = []
    for r in rows:
        if r.get("skipped"):
            table.append([r["strategy"], r["skipped"], *[""] * 19])
            continue
        table.append(
            [
                r["strategy"],
                r["wall_s"],
                r["jobs_per_s"],
                r["cpu_per_1k"],
                r["requests_per_job"],
                r["polls_per_job"],
                int(r["peak_connections"]),
                r["peak_rss_mb"],
                r["delay_p50_ms"],
                r["delay_p99_ms"],
                f"{r['wall_s'] / raw['wall_s']:.2f}" if raw else "",
                f"{r['cpu_s'] / raw['cpu_s']:.2f}" if raw else "",
                f"{r['wall_noise']} / {r['cpu_noise']}",
                r["server_cpu_s"],
                int(r["gc_gen2"]),
                r["gc_pause_s"],
                r["gc_cpu_s"],
                r["gc_max_pause_ms"],
                int(r["gc_gen2_late"]),
                "" if math.isnan(r["tail_in_full_gc"]) else f"{r['tail_in_full_gc']:.0%}",
                int(r["errors"]),
            ]
        )
    print_table(
        f"End to end, N={n:,} jobs at once, latency {latency} (median of {rows[0].get('runs', 1)})",
        [
            "strategy",
            "wall s",
            "jobs/s",
            "CPU s/1k jobs",
            "req/job",
            "polls/job",
            "peak conns",
            "peak RSS MB",
            "wake p50 ms",
            "wake p99 ms",
            "wall x raw",
            "CPU x raw",
            "noise wall/CPU",
            "server CPU s",
            "gen2 GCs",
            "GC pause s",
            "GC CPU s",
            "max GC ms",
            "gen2 GCs late",
            "p99 tail in gen2 GC",
            "errors",
        ],
        table,
    )


def parse_latency(text: str) -> LatencySpec:
    """`2` (fixed), `uniform:1:3`, or `lognormal:MU:SIGMA`."""
    parts = text.split(":")
    if len(parts) == 1:
        return float(parts[0])
    if len(parts) == 3 and parts[0] in ("uniform", "lognormal"):
        return (parts[0], float(parts[1]), float(parts[2]))
    raise argparse.ArgumentTypeError(f"latency {text!r}: use 2, uniform:1:3 or lognormal:0.5:0.4")


async def run_all(
    ns: list[int], strategies: list[str], repeat: int | None, latency: LatencySpec
) -> list[dict[str, Any]]:
    png = tiny_png()
    results = []
    for n in ns:
        reps = repeat if repeat is not None else (3 if n <= 10_000 else 1)
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in strategies}
        skipped: dict[str, str] = {}
        for i in range(reps):  # interleaved, so a slow minute hits every strategy alike
            for strategy in strategies:
                if strategy == "sse-per-job" and n > SSE_PER_JOB_MAX:
                    skipped[strategy] = f"skipped: N > {SSE_PER_JOB_MAX:,}"
                    continue
                print(
                    f"  N={n:,} run {i + 1}/{reps}: {strategy} ...",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )
                run = await run_once(strategy, n, latency, png)
                print(f" {run['wall_s']:.1f} s", file=sys.stderr, flush=True)
                runs[strategy].append(run)
        rows = []
        for strategy in strategies:
            if strategy in skipped:
                rows.append({"strategy": strategy, "n": n, "skipped": skipped[strategy]})
            else:
                row = aggregate(runs[strategy])
                row["all_runs"] = [
                    {k: v for k, v in r.items() if k != "server_routes"} for r in runs[strategy]
                ]
                row["server_routes"] = runs[strategy][-1]["server_routes"]
                rows.append(row)
        print_results(n, rows, describe_latency(latency))
        results.extend(rows)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per strategy and N (default 3 up to 10,000 jobs, else 1)",
    )
    parser.add_argument(
        "--strategies", nargs="+", choices=list(STRATEGIES), default=list(STRATEGIES)
    )
    parser.add_argument("--latency", type=parse_latency, default=("uniform", 1.0, 3.0))
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument("--plot", metavar="PATH", help="also plot delay and CPU against N (PNG)")
    args = parser.parse_args()

    results = asyncio.run(run_all(args.n, args.strategies, args.repeat, args.latency))
    out = {
        "benchmark": "end_to_end",
        "latency": describe_latency(args.latency),
        "max_connections": MAX_CONNECTIONS,
        "machine": machine(),
        "command": " ".join(["python -m benchmarks.end_to_end", *sys.argv[1:]]),
        "results": results,
    }
    write_json(args.json, out)
    if args.plot:
        from benchmarks.plot import plot_end_to_end

        plot_end_to_end([out], args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()

"""Photo-size inputs: data URIs vs `upload_repo`, with the event stream cut twice mid-run.

N edits (`client.map`, its default concurrency of 256) over D distinct photo-like PNGs of ~1.4 MB
each (a blurred scene under noise, generated from a seed and cached in the temp folder), while
the local server, in its own process, cuts every event stream when a third and when two thirds of
the jobs have finished (`LocalServer.drop_event_streams()`). Two strategies, each in a fresh
client process against a fresh server process:

- `data-uri`: the default: every enqueue body carries its image inline, and the API echoes it
  in every row it returns;
- `upload-repo`: `Client(upload_repo="ox/inputs")`: each distinct image is uploaded once to the
  server's repository file API, and the jobs send its URL.

Measured in the client process:

- bytes sent and received **at the socket level** (every byte the client's TCP sockets wrote
  or read: request and response headers, bodies, the uploads and the event stream; results are
  not downloaded, so downloads are excluded), next to `ClientStats.bytes_sent/received` (API
  bodies only);
- wall time (the whole `map`, uploads included), client CPU, peak RSS (`ru_maxrss`);
- reconciled jobs (ids passed to the listener's reconciliation, a job counted each time), and
  the bytes received by the reconciliation's requests (`GET /api/ai/queue`, `GET
  /api/ai/queue/{id}`: body + headers as received) per reconciled job.

Targets with `upload_repo`: bytes sent within 1.1x of the distinct images' total size, and
bytes received per reconciled job under 2 KB.

The model is `qwen-image-edit-plus` with `output_format="jpg"`: the local server's PNG encoder
spends ~0.26 s per 1024x768 output, JPEG ~0.04 s, and the server shares the 2 cores with the
client. Its rows echo `input_image` as an array, like every multi-image model.

    python -m benchmarks.inputs [--n 1000] [--distinct 100] [--repeat 1] \
        [--json benchmarks/results/inputs.json]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from ._common import machine, print_table, spread, write_json
from ._inputs_parts import NOISE, SIZE, _Reconciled, _Server, _Wire, images, photo

# What the smoke tests import from here (the photos live in _inputs_parts).
__all__ = ["NOISE", "SIZE", "STRATEGIES", "images", "main", "photo", "run_client", "run_once"]

STRATEGIES = ("data-uri", "upload-repo")
UPLOAD_REPO = "ox/inputs"
MODEL = "qwen-image-edit-plus"
DEFAULT_CONCURRENCY = 256  # `client.map`'s default
TARGET_SENT_RATIO = 1.1
TARGET_RECONCILE_BYTES = 2048


# -- the client process -------------------------------------------------------------------------


async def run_client(
    url: str,
    api_key: str,
    paths: list[str],
    n: int,
    strategy: str,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, Any]:
    """N edits over `paths` (job i uses image i mod len(paths)) through `client.map`; the
    measurements of the client side."""
    import oxedit
    from oxedit._resources.inputs import LargeInlineImageWarning

    from ._common import cpu_seconds

    upload_repo = UPLOAD_REPO if strategy == "upload-repo" else None
    requests = [
        oxedit.EditRequest(
            image=paths[i % len(paths)],
            prompt=f"mirror it, take {i // len(paths) + 1}",
            model=MODEL,
            params={"aspect_ratio": "4:3", "output_format": "jpg"},
        )
        for i in range(n)
    ]
    statuses: dict[str, int] = {}
    first_error = None
    sent0, received0, cpu0 = _Wire.sent, _Wire.received, cpu_seconds()
    with warnings.catch_warnings(record=True) as caught:
        # As a user sees it: the default filter (once per place of warning).
        warnings.simplefilter("default", LargeInlineImageWarning)
        started = time.perf_counter()
        async with oxedit.Client(api_key=api_key, base_url=url, upload_repo=upload_repo) as client:
            async with client.map(requests, concurrency=concurrency) as run:
                async for result in run:
                    statuses[result.status] = statuses.get(result.status, 0) + 1
                    if result.status != "succeeded" and first_error is None:
                        first_error = str(result.error)
            wall = time.perf_counter() - started
            stats = client.stats
            uploads = client.upload_stats
    return {
        "strategy": strategy,
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu0,
        "statuses": statuses,
        "first_error": first_error,
        "wire_sent": _Wire.sent - sent0,
        "wire_received": _Wire.received - received0,
        "api_body_sent": stats.bytes_sent,
        "api_body_received": stats.bytes_received,
        "requests": dict(stats.requests),
        "poll_requests": stats.poll_requests,
        "event_connections": stats.event_connections,
        "events": stats.events,
        "reconcile_calls": _Reconciled.calls,
        "reconciled_jobs": _Reconciled.ids,
        "reconcile_responses": _Reconciled.responses,
        "reconcile_bytes": _Reconciled.bytes,
        "reconcile_body_bytes": _Reconciled.body_bytes,
        "history_bytes": _Reconciled.history_bytes,
        "uploaded": uploads.uploaded if uploads else 0,
        "upload_skipped": uploads.skipped if uploads else 0,
        "bytes_uploaded": uploads.bytes_uploaded if uploads else 0,
        "large_inline_warnings": sum(
            issubclass(w.category, LargeInlineImageWarning) for w in caught
        ),
    }


def _client_child(
    conn: Any, url: str, api_key: str, paths: list[str], n: int, kind: str, concurrency: int
) -> None:
    try:
        _Wire.install()
        _Reconciled.install()
        result = asyncio.run(run_client(url, api_key, paths, n, kind, concurrency))
        from ._common import peak_rss_bytes

        result["peak_rss_mb"] = peak_rss_bytes() / 1e6
        conn.send(("ok", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


# -- one run, and the table ---------------------------------------------------------------------


async def run_once(
    strategy: str,
    paths: list[Path],
    n: int,
    *,
    cuts: int = 2,
    concurrency: int = DEFAULT_CONCURRENCY,
    latency: tuple[float, float] = (1.0, 2.0),
    limit_s: float = 900.0,
) -> dict[str, Any]:
    """One strategy in a fresh client process against a fresh server process."""
    from ._common import run_in_child

    cut_at = [n * (k + 1) // (cuts + 1) for k in range(cuts)]
    server = _Server(latency, workers=max(n, 1), cut_at=cut_at)
    try:
        result, _ = await run_in_child(
            _client_child,
            (server.url, server.api_key, [str(p) for p in paths], n, strategy, concurrency),
            limit_s=limit_s,
        )
        served = server.stats()
    finally:
        server.stop()
    distinct = len({str(p) for p in paths[: min(n, len(paths))]})
    distinct_bytes = sum(p.stat().st_size for p in paths[:distinct])
    reconciled = result["reconciled_jobs"]
    return {
        **result,
        "n": n,
        "distinct": distinct,
        "distinct_bytes": distinct_bytes,
        "sent_ratio": result["wire_sent"] / distinct_bytes,
        "reconcile_bytes_per_job": result["reconcile_bytes"] / reconciled if reconciled else 0.0,
        "cuts": len(served["cuts"]),
        "server": served,
    }


_PER_RUN = (
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "wire_sent",
    "wire_received",
    "reconciled_jobs",
    "reconcile_bytes_per_job",
    "history_bytes",
)


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, whole (its numbers belong together: how many jobs a cut
    caught pending varies from run to run), with every run's key numbers and the noise of
    wall time."""
    out = dict(sorted(rows, key=lambda r: float(r["wall_s"]))[len(rows) // 2])
    out["noise_wall"] = spread([r["wall_s"] for r in rows])
    out["runs"] = len(rows)
    out["repeats"] = [{k: r[k] for k in _PER_RUN} for r in rows]
    return out


def targets(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """Whether every run met each target."""
    return {
        "sent_within_1.1x": all(r["sent_ratio"] <= TARGET_SENT_RATIO for r in rows),
        "reconcile_under_2kb": all(
            0 < r["reconcile_bytes_per_job"] < TARGET_RECONCILE_BYTES for r in rows
        ),
    }


COLUMNS = [
    "strategy",
    "wall s",
    "noise wall",
    "sent MB",
    "sent / distinct",
    "received MB",
    "of which reconciling / history MB",
    "API bodies sent/recv MB",
    "peak RSS MB",
    "CPU s",
    "reconciled jobs",
    "recv B / reconciled job",
    "pending at cuts",
    "succeeded",
]


def table_row(row: dict[str, Any]) -> list[Any]:
    return [
        row["strategy"],
        round(row["wall_s"], 1),
        row["noise_wall"],
        round(row["wire_sent"] / 1e6, 1),
        f"{row['sent_ratio']:.3f}x",
        round(row["wire_received"] / 1e6, 1),
        f"{row['reconcile_bytes'] / 1e6:.1f} / {row['history_bytes'] / 1e6:.1f}",
        f"{row['api_body_sent'] / 1e6:.1f} / {row['api_body_received'] / 1e6:.1f}",
        round(row["peak_rss_mb"]),
        round(row["cpu_s"], 1),
        int(row["reconciled_jobs"]),
        round(row["reconcile_bytes_per_job"]),
        " / ".join(str(c["active"]) for c in row["server"]["cuts"]),
        f"{row['statuses'].get('succeeded', 0)} / {row['n']}",
    ]


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    paths = images(args.distinct)
    rows = []
    for strategy in args.strategies:
        runs = []
        for _ in range(args.repeat):
            runs.append(
                await run_once(
                    strategy, paths, args.n, cuts=args.cuts, concurrency=args.concurrency
                )
            )
            print(f"{strategy}: {runs[-1]['wall_s']:.1f} s", flush=True)
        row = aggregate(runs)
        row["targets"] = targets(runs) if strategy == "upload-repo" else {}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="jobs (default 1000)")
    parser.add_argument("--distinct", type=int, default=100, help="distinct images (100)")
    parser.add_argument("--cuts", type=int, default=2, help="event stream cuts (2)")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="client.map's (256)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    print_table(
        f"inputs: {args.n} jobs over {args.distinct} distinct ~1.4 MB PNGs, "
        f"{args.cuts} stream cuts",
        COLUMNS,
        [table_row(r) for r in rows],
    )
    for row in rows:
        ranges = ", ".join(
            f"{k} {min(r[k] for r in row['repeats']):,.0f}-{max(r[k] for r in row['repeats']):,.0f}"
            for k in ("wall_s", "peak_rss_mb", "reconciled_jobs", "reconcile_bytes_per_job")
        )
        print(f"{row['strategy']}, {row['runs']} run(s): {ranges}")
        if row["targets"]:
            print(f"{row['strategy']} targets (every run): {row['targets']}")
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine(),
                "n": args.n,
                "distinct": args.distinct,
                "cuts": args.cuts,
                "concurrency": args.concurrency,
                "model": MODEL,
                "results": rows,
            },
        )


if __name__ == "__main__":
    main()

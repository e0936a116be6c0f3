"""Smoke tests of the benchmarks: each core function runs at a tiny N and returns sane numbers.

No timing is asserted (the machine may be busy); only that the code paths work end to end:
the strategies in-process against an in-process server, and one full run of each benchmark's
process machinery (server process, client child process, observer stream).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import _e2e_strategies as strategies
from benchmarks import end_to_end, inputs, memory, scale, wake_share
from benchmarks._common import percentile, tiny_png
from benchmarks._enqueue_rate import CLIENTS as ENQUEUE_CLIENTS
from benchmarks._enqueue_rate import bench_enqueue
from benchmarks.plot import plot_end_to_end
from oxedit._engine.registry import Registry
from oxedit.testing import Faults, LocalServer

N = 12
PNG = tiny_png()


def test_tiny_png_and_percentile() -> None:
    assert PNG.startswith(b"\x89PNG\r\n\x1a\n") and len(PNG) < 100
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0


@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["oxedit", "raw", "raw-connector", "sse-per-job"])
async def test_event_strategies(strategy: str) -> None:
    faults = Faults(latency=(0.02, 0.05), stamp_events=True)
    async with LocalServer(faults=faults, workers=N) as server:
        result = await end_to_end.STRATEGIES[strategy](server.url, server.api_key, N, PNG)
        await server.wait_idle()
        routes = server.stats.requests_by_route
    assert result["errors"] == 0, result["first_error"]
    assert len(result["delays"]) == N
    assert all(-1.0 < d < 10.0 for d in result["delays"])  # a wake after its completion, roughly
    assert result["wall_s"] > 0
    assert routes["POST /api/ai/queue"] == N
    assert "GET /api/ai/queue/{generation_id}" not in routes  # no polling
    if strategy in ("oxedit", "raw"):  # each job's completion stamp and wake time too
        assert sorted(w - c for c, w in result["spans"]) == sorted(result["delays"])
    if strategy == "oxedit":
        assert result["client_stats"]["poll_requests"] == 0
        assert result["client_stats"]["events"] == N



@pytest.mark.anyio
@pytest.mark.parametrize("strategy", ["oxedit", "raw"])
async def test_wake_share_splits_every_jobs_delay_at_its_chunk(strategy: str) -> None:
    events, split = Registry.events, strategies.split_frames
    faults = Faults(latency=(0.02, 0.05), stamp_events=True)
    async with LocalServer(faults=faults, workers=N) as server:
        row = await wake_share.run_once(strategy, server.url, server.api_key, N, PNG)
    assert row["jobs"] == N  # each job's chunk was stamped (else a KeyError)
    assert row["client_p50_us"] > 0  # woken after its chunk was read
    assert 0 < row["client_share_of_tail"] <= 1
    assert row["chunk_events"] >= 1
    assert (Registry.events, strategies.split_frames) == (events, split)  # unstamped after

def test_full_gc_share_counts_the_tail_a_full_collection_held_up() -> None:
    # 100 jobs completed at t=i, woken 10 ms later; two woken 1 s later (the p99 tail).
    spans = [(float(i), i + 0.01) for i in range(98)] + [(50.0, 51.0), (70.0, 71.0)]
    delays = [w - c for c, w in spans]
    # A full collection before any completion, one inside the first slow job's wait, one
    # between jobs.
    windows = [(-5.0, -4.9), (50.5, 50.7), (80.5, 80.6)]
    share, late = end_to_end._full_gc_share(spans, windows, delays)
    assert share == 0.5 and late == 2
    assert end_to_end._full_gc_share(spans, [], delays) == (0.0, 0)
    share, late = end_to_end._full_gc_share([], windows, [0.1])  # a polling strategy
    assert share != share and late == 0  # NaN: not measured


@pytest.mark.anyio
async def test_polling_strategy() -> None:
    faults = Faults(latency=(0.02, 0.05), stamp_events=True)
    async with LocalServer(faults=faults, workers=N) as server:
        result = await end_to_end.strategy_poll(server.url, server.api_key, N, PNG, 0.02)
        polls = server.stats.requests_by_route["GET /api/ai/queue/{generation_id}"]
    assert result["errors"] == 0, result["first_error"]
    assert len(result["woke"]) == N
    assert polls >= N  # at least one GET per job


@pytest.mark.slow
@pytest.mark.anyio
async def test_end_to_end_run_once_in_processes() -> None:
    # The whole machinery: server process, client child, parent-side stamps for polling.
    row = await end_to_end.run_once("poll-0.5s", N, 0.05, PNG)
    assert row["errors"] == 0
    assert row["delays_measured"] == N
    assert row["requests_per_job"] >= 2.0  # one POST and at least one GET
    assert row["cpu_s"] > 0 and row["peak_rss_mb"] > 10
    assert row["peak_connections"] >= 0
    agg = end_to_end.aggregate([row, row])
    assert agg["wall_s"] == row["wall_s"] and agg["runs"] == 2


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["oxedit", "raw"])
async def test_memory_pending(client: str) -> None:
    async with LocalServer(faults=Faults(latency=3600.0), workers=4) as server:
        result = await memory.CLIENTS[client](server.url, server.api_key, N, PNG)
    assert result["pending"] == N
    assert result["rss_after"] > 0 and result["rss_before"] > 0
    assert result["objects_per_job"]  # the gc-tracked breakdown is filled


@pytest.mark.anyio
@pytest.mark.parametrize("client", ["oxedit", "raw"])
async def test_scale_path_runs_every_job_to_its_event(client: str) -> None:
    result = await scale.RUNS[("path", client)](N)
    assert result["us_per_job"] > 0


@pytest.mark.anyio
@pytest.mark.parametrize("client", list(ENQUEUE_CLIENTS))
async def test_enqueue_clients(client: str) -> None:
    async with LocalServer(faults=Faults(latency=3600.0), workers=4) as server:
        result = await ENQUEUE_CLIENTS[client](server.url, server.api_key, N, PNG)
        created = server.stats.generations_created
    assert created == N + 1  # one warm-up
    assert result["wall_s"] > 0 and result["cpu_s"] >= 0


@pytest.mark.slow
def test_bench_enqueue_shape() -> None:
    rows = bench_enqueue(N, 1)
    assert [r["client"] for r in rows] == list(ENQUEUE_CLIENTS)
    for row in rows:
        assert {"client", "req_per_s", "cpu_s", "ratio", "noise"} <= row.keys()
        assert row["req_per_s"] > 0
    assert rows[0]["ratio"] == 1.0


@pytest.mark.slow
def test_plot(tmp_path: Path) -> None:
    rows = [
        {"strategy": s, "n": n, "delay_p50_ms": 1.0 * n, "delay_p99_ms": 2.0 * n, "cpu_per_1k": 0.2}
        for s in ("oxedit", "raw")
        for n in (100, 1000)
    ]
    rows.append({"strategy": "sse-per-job", "n": 1000, "skipped": "skipped: N > 1,000"})
    out = {"latency": "fixed 0.1 s", "machine": {"nproc": 2}, "results": rows}
    (tmp_path / "e2e.json").write_text(json.dumps(out))
    target = tmp_path / "e2e.png"
    plot_end_to_end([out], target)
    assert target.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
@pytest.mark.anyio
async def test_inputs_run_once_in_processes(tmp_path: Path) -> None:
    # Both strategies through the whole machinery (server process with its stream cuts, client
    # child counting socket bytes), at 6 jobs over 2 photos.
    paths = inputs.images(2, tmp_path)
    size = sum(p.stat().st_size for p in paths)
    assert all(len(p.read_bytes()) > 1_000_000 for p in paths)
    rows = {s: await inputs.run_once(s, paths, 6, latency=(0.2, 0.4)) for s in inputs.STRATEGIES}
    for row in rows.values():
        assert row["statuses"] == {"succeeded": 6}, row["first_error"]
        assert row["wire_sent"] >= row["api_body_sent"] > 0  # headers on top of the bodies
        assert row["wire_received"] >= row["api_body_received"] > 0
        assert row["distinct_bytes"] == size and row["peak_rss_mb"] > 10
    hosted, inline = rows["upload-repo"], rows["data-uri"]
    assert hosted["uploaded"] == 2 and hosted["server"]["files_uploaded"] == 2
    assert size < hosted["wire_sent"] < 1.1 * size  # each photo once
    assert inline["wire_sent"] > 6 * size / 2  # each photo in every enqueue body
    assert (inline["large_inline_warnings"], hosted["large_inline_warnings"]) == (1, 0)


@pytest.mark.anyio
async def test_response_bomb_is_one_request_and_bounded_memory() -> None:
    from benchmarks import response_bomb

    route = {"GET /api/ai/models/{id}": "model"}
    [result] = await response_bomb.run(inflated_mb=64, routes=route)  # twice the default cap
    assert result["outcome"] == "ResponseTooLargeError" and result["requests"] == 1
    assert result["peak_rss_mb"] < 300, result

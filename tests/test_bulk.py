"""`client.map`: bounded fan-out, per-item errors, a journal that resumes without re-sending."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import oxedit
from oxedit.testing import Faults, LocalServer

from .helpers import FAST, FAST_RETRY, client_for, png

pytestmark = pytest.mark.anyio


def bulk_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "BulkRun" in t.get_coro().__qualname__]  # type: ignore[union-attr]


def make_images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:04d}.png"
        path.write_bytes(png((i % 256, (i * 7) % 256, 90)))
        paths.append(path)
    return paths


@pytest.mark.slow
async def test_thousand_items_with_faults(tmp_path: Path) -> None:
    faults = Faults(
        seed=31,
        latency=(0.0, 0.01),
        failure_rate=0.05,
        enqueue_429_rate=0.05,
        retry_after=0,
        enqueue_5xx_rate=0.02,
        lost_response_rate=0.02,
        drop_event_rate=0.02,
        duplicate_event_rate=0.05,
        cut_stream_after_events=300,
    )
    paths = make_images(tmp_path / "in", 1000)
    requests = [oxedit.EditRequest(image=str(p), prompt=f"mirror {i}") for i, p in enumerate(paths)]
    async with LocalServer(faults=faults) as server:
        async with client_for(server, reconcile=FAST, retry=FAST_RETRY) as client:
            results: list[oxedit.BulkResult] = []
            async with client.map(
                requests,
                concurrency=100,
                journal=tmp_path / "j.sqlite",
                output_dir=tmp_path / "out",
            ) as run:
                async for result in run:
                    assert run.in_flight <= 100
                    results.append(result)
        truth = {row["generation_id"]: row["status"] for row in server.generations()}
        assert server.stats.file_requests > 900
        assert server.stats.file_requests_with_auth == 0  # the key stayed on the API host
    assert sorted(r.index for r in results) == list(range(1000))  # each exactly once
    assert len(truth) == 1000  # nothing created twice
    for result in results:
        assert result.status == truth[result.generation_id]
        if result.ok:
            assert result.output is not None and result.output.read_bytes()[:4] == b"\x89PNG"
    counts = Counter(r.status for r in results)
    assert counts["failed"] > 0 and counts["succeeded"] > 900


async def test_rerun_skips_finished_and_follows_pending(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "in", 20)
    requests = [{"image": str(p), "prompt": "grayscale"} for p in paths]
    journal = tmp_path / "j.sqlite"
    async with LocalServer() as server:
        async with client_for(server, reconcile=FAST) as client:
            async with client.map(
                requests, concurrency=4, journal=journal, output_dir=tmp_path / "out"
            ) as run:
                async for _ in run:
                    pass
            server.faults.latency = 0.05
            rerun = [
                r async for r in client.map(requests, journal=journal, output_dir=tmp_path / "out")
            ]
        assert len(server.generations()) == 20
    assert all(r.resumed and r.ok for r in rerun)


async def test_leaving_early_cancels_in_flight_and_resumes_later(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "in", 30)
    requests = [{"image": str(p), "prompt": "blur"} for p in paths]
    journal = tmp_path / "j.sqlite"
    async with LocalServer(faults=Faults(latency=(0.0, 0.2), seed=4)) as server:
        async with client_for(server, reconcile=FAST) as client:
            async with client.map(requests, concurrency=10, journal=journal) as run:
                first = await anext(run)
                assert first.ok
                assert bulk_tasks()
            assert not bulk_tasks()  # nothing left running
            results = [r async for r in client.map(requests, concurrency=10, journal=journal)]
        await server.wait_idle()
        created = len(server.generations())
    assert sorted(r.index for r in results) == list(range(30))
    assert all(r.ok for r in results)
    assert created == 30  # the items in flight at the break were followed, not re-sent


async def test_bad_items_do_not_stop_the_batch(tmp_path: Path) -> None:
    good = make_images(tmp_path / "in", 3)
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image at all")
    requests: list[object] = [
        {"image": str(good[0]), "prompt": "invert"},
        {"image": str(tmp_path / "missing.png"), "prompt": "invert"},
        {"image": str(tmp_path / "in" / "broken.png"), "prompt": "invert"},
        {"image": str(good[1]), "prompt": "invert", "aspect_ratio": "5:1"},
        {"prompt": "no image"},
        42,
        {"image": str(good[2]), "prompt": "invert", "model": "no-such-model"},
    ]
    async with LocalServer() as server, client_for(server) as client:
        results = sorted([r async for r in client.map(requests)], key=lambda r: r.index)  # type: ignore[arg-type]
    assert [r.status for r in results] == ["succeeded"] + ["error"] * 6
    messages = [r.error or "" for r in results[1:]]
    assert "no such file" in messages[0]
    assert "is not a jpeg, png, gif or webp image" in messages[1]
    assert "aspect_ratio='5:1' is not one of" in messages[2]
    assert "has no 'image'" in messages[3]
    assert "is not an edit request" in messages[4]
    assert "no-such-model" in messages[5]


async def test_async_iterable_source(tmp_path: Path) -> None:
    paths = make_images(tmp_path / "in", 5)

    async def source() -> AsyncIterator[oxedit.EditRequest]:
        for p in paths:
            yield oxedit.EditRequest(image=str(p), prompt="sepia", name=f"out-{p.stem}")

    async with LocalServer() as server, client_for(server) as client:
        results = [r async for r in client.map(source(), output_dir=tmp_path / "o")]
    assert sorted(r.output.name for r in results if r.output) == sorted(
        f"out-{p.stem}.png" for p in paths
    )


async def test_crash_between_record_and_response_is_adopted(tmp_path: Path) -> None:
    """A journal entry left in 'sending' (the process died before recording the id) is
    looked up on the server: its generation is adopted, not paid for again."""
    paths = make_images(tmp_path / "in", 4)
    requests = [oxedit.EditRequest(image=str(p), prompt="rotate") for p in paths]
    journal = tmp_path / "j.sqlite"
    async with LocalServer() as server:
        async with (
            client_for(server, reconcile=FAST) as client,
            client.map(requests, journal=journal) as run,
        ):
            async for _ in run:
                pass
        # Simulate the crash: forget the outcome of two items as if only 'sending' was written.
        from oxedit._bulk.journal import Journal

        with Journal(journal) as j:
            stranded = j.entries()[:2]
            for entry in stranded:
                j._db.execute(
                    "UPDATE items SET state='sending', generation_id=NULL WHERE key=?",
                    (entry.key,),
                )
        async with client_for(server, reconcile=FAST) as client:
            rerun = [r async for r in client.map(requests, journal=journal)]
            assert client.stats.enqueue_requests == 0
        assert len(server.generations()) == 4
    assert {r.generation_id for r in rerun} == {e.generation_id for e in stranded} | {
        r.generation_id for r in rerun if r.resumed
    }
    assert all(r.ok for r in rerun)

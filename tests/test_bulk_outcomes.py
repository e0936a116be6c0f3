"""One item's trouble is that item's result; an unknown outcome is never taken for a failure
(so nothing is billed twice), and a full disk stops the batch cleanly."""

from __future__ import annotations

import asyncio
import errno
import os
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import oxedit
import oxedit._bulk.run
from oxedit._engine.tracker import Tracker
from oxedit.testing import LocalServer

from .helpers import FAST, client_for, png

pytestmark = pytest.mark.anyio


def images(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"im{i:03d}.png"
        path.write_bytes(png((i * 9 % 256, 40, 200)))
        paths.append(str(path))
    return paths


def journal_states(path: Path) -> Counter[str]:
    """The journal's rows by state, read as another process would."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:  # not created yet
        return Counter()
    try:
        return Counter(state for (state,) in db.execute("SELECT state FROM items"))
    except sqlite3.OperationalError:  # no table yet
        return Counter()
    finally:
        db.close()


async def wait_for_journal(path: Path, state: str, count: int) -> None:
    """Return once the journal holds `count` rows in `state` (another task writes them)."""
    async with asyncio.timeout(30):
        # The journal is a file another task (or process) writes: there is no event to await,
        # so poll it; the condition, not the delay, ends the wait.
        while journal_states(path)[state] < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_an_item_that_cannot_be_saved_or_encoded_is_its_own_error(tmp_path: Path) -> None:
    paths = images(tmp_path / "in", 4)
    out = tmp_path / "out"
    (out / "im001.png").mkdir(parents=True)  # the output cannot be written: an OSError
    journal = tmp_path / "j.sqlite"
    requests = [{"image": p, "prompt": "mirror"} for p in paths]
    requests.append({"image": paths[0], "prompt": "lone surrogate \ud800", "name": "odd"})
    async with LocalServer() as server:
        async with (
            client_for(server) as client,
            client.map(requests, journal=journal, output_dir=out) as run,
        ):
            results = sorted([r async for r in run], key=lambda r: r.index)
        assert [r.status for r in results] == [
            "succeeded",
            "error",
            "succeeded",
            "succeeded",
            "error",
        ]
        assert "its save failed" in (results[1].error or "") and "re-run" in (
            results[1].error or ""
        )
        assert "UnicodeEncodeError" in (results[4].error or "")
        assert len(server.generations()) == 4
        # The generation was paid for: a re-run downloads it again and sends nothing.
        (out / "im001.png").rmdir()
        async with client_for(server) as client:
            rerun = [r async for r in client.map(requests[:4], journal=journal, output_dir=out)]
            assert client.stats.enqueue_requests == 0
        assert len(server.generations()) == 4
    again = {r.index: r for r in rerun}
    assert again[1].ok and not again[1].resumed and again[1].output == out / "im001.png"
    assert (out / "im001.png").read_bytes()[:4] == b"\x89PNG"
    assert all(again[i].resumed for i in (0, 2, 3))


async def test_a_full_disk_stops_sending_and_ends_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = images(tmp_path / "in", 10)

    async def full_disk(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("oxedit._bulk.run.save_atomic", full_disk)
    requests = [{"image": p, "prompt": "blur"} for p in paths]
    async with LocalServer() as server, client_for(server) as client:
        async with client.map(requests, concurrency=2, output_dir=tmp_path / "out") as run:
            results = [r async for r in run]
        created = len(server.generations())
    assert run.stopped is not None and "disk is full" in run.stopped
    assert created == 2 == len(results)  # what was in flight finished; nothing new was sent
    assert all(r.status == "error" and "No space left" in (r.error or "") for r in results)


async def test_lost_track_is_unknown_and_followed_not_resent(tmp_path: Path) -> None:
    """The client closes while its jobs are pending: their outcome is unknown, not failed. The
    journal keeps them enqueued; a re-run (even with retry_failed) follows them and downloads
    their results without sending anything."""
    paths = images(tmp_path / "in", 6)
    requests = [{"image": p, "prompt": "grayscale"} for p in paths]
    journal = tmp_path / "j.sqlite"
    out = tmp_path / "out"
    async with LocalServer() as server:
        server.faults.stall_streams = True  # the jobs finish, but no event reaches the client
        async with client_for(server) as client:
            run = client.map(requests, concurrency=6, journal=journal, output_dir=out)

            async def collect() -> list[oxedit.BulkResult]:
                async with run:
                    return [r async for r in run]

            collecting = asyncio.ensure_future(collect())
            await wait_for_journal(journal, "enqueued", 6)
            await server.wait_idle()
            await client.aclose()
            first = await collecting
        assert [r.status for r in first] == ["unknown"] * 6
        assert all(r.generation_id and "re-run" in (r.error or "") for r in first)
        assert journal_states(journal) == Counter(enqueued=6)
        server.faults.stall_streams = False
        async with client_for(server) as client:
            rerun = [
                r
                async for r in client.map(
                    requests, journal=journal, output_dir=out, retry_failed=True
                )
            ]
            assert client.stats.enqueue_requests == 0
        assert len(server.generations()) == 6
    assert all(r.ok and not r.resumed and r.output and r.output.exists() for r in rerun)
    assert {r.generation_id for r in rerun} == {r.generation_id for r in first}


async def test_a_journal_in_use_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    from oxedit._bulk.journal import Journal

    paths = images(tmp_path / "in", 3)
    journal = tmp_path / "j.sqlite"
    requests = [{"image": p, "prompt": "blur"} for p in paths]
    async with LocalServer() as server, client_for(server) as client:
        holder = Journal(journal)  # another run holds it
        try:
            with pytest.raises(oxedit.ConfigurationError, match=rf"process {os.getpid()}\b"):
                async with client.map(requests, journal=journal) as run:
                    await anext(run)
        finally:
            holder.close()
        assert server.generations() == []
        results = [r async for r in client.map(requests, journal=journal)]  # free again
    assert [r.status for r in results] == ["succeeded"] * 3


async def test_an_unexpected_exception_in_one_item_ends_only_that_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stands for an unexpected response body: the code reading it raises something that is
    not an OxeditError, for one item. The others finish and each item gets one result."""
    paths = images(tmp_path / "in", 6)
    real_sniff = oxedit._bulk.run.sniff_mime  # type: ignore[attr-defined]
    calls = Counter[str]()

    def sniff(data: bytes) -> str | None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyError("unexpected field")
        return real_sniff(data)

    monkeypatch.setattr("oxedit._bulk.run.sniff_mime", sniff)
    requests = [{"image": p, "prompt": "sepia"} for p in paths]
    async with LocalServer() as server, client_for(server) as client:
        results = [r async for r in client.map(requests, output_dir=tmp_path / "out")]
    assert sorted(r.index for r in results) == list(range(6))
    statuses = Counter(r.status for r in results)
    assert statuses == Counter(succeeded=5, error=1)
    (bad,) = [r for r in results if not r.ok]
    assert "KeyError" in (bad.error or "") and "re-run" in (bad.error or "")
    assert bad.generation_id is not None


async def test_an_enqueue_that_may_have_created_stays_sending_and_is_adopted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The POST created the generation but the client cannot tell (AmbiguousRequestError):
    the row stays 'sending', and the next run finds the generation instead of paying again."""
    paths = images(tmp_path / "in", 3)
    journal = tmp_path / "j.sqlite"
    requests = [{"image": p, "prompt": "invert"} for p in paths]
    original = Tracker.enqueue

    async def created_but_unknown(
        self: Tracker, payload: dict[str, Any], n: int, on_send: Callable[[float], None] | None
    ) -> list[oxedit.Job]:
        await original(self, payload, n, on_send)  # the server did create it...
        raise oxedit.AmbiguousRequestError("enqueue response was lost")  # ...we cannot tell

    async with LocalServer() as server:
        async with client_for(server) as client:
            monkeypatch.setattr(Tracker, "enqueue", created_but_unknown)
            first = [r async for r in client.map(requests, journal=journal)]
            monkeypatch.undo()
        assert [r.status for r in first] == ["unknown"] * 3
        assert journal_states(journal) == Counter(sending=3)
        async with client_for(server, reconcile=FAST) as client:
            rerun = [r async for r in client.map(requests, journal=journal)]
            assert client.stats.enqueue_requests == 0
        assert len(server.generations()) == 3
    assert all(r.ok for r in rerun)


async def test_recovery_adopts_only_rows_its_own_post_could_have_created(tmp_path: Path) -> None:
    """Issue 11, item 6: a run recorded 'sending' long ago and died before its POST; rows
    with identical requests made later (by another batch) are not its own. Only a row enqueued
    within that POST's deadline after the recorded send time may be adopted."""
    paths = images(tmp_path / "in", 4)
    journal = tmp_path / "j.sqlite"
    requests = [{"image": p, "prompt": "invert"} for p in paths]
    async with LocalServer() as server:
        async with client_for(server) as client:
            assert all(r.ok for r in [r async for r in client.map(requests, journal=journal)])
        # As if the run had recorded its sends an hour ago and died before any POST: the four
        # rows on the server (made now) are someone else's identical requests.
        with sqlite3.connect(journal) as db:
            db.execute(
                "UPDATE items SET state = 'sending', generation_id = NULL, output = NULL, "
                "sent_at = sent_at - 3600"
            )
        async with client_for(server, reconcile=FAST) as client:
            rerun = [r async for r in client.map(requests, journal=journal)]
            assert client.stats.enqueue_requests == 4  # nothing adopted: all sent anew
        assert len(server.generations()) == 8
    assert all(r.ok for r in rerun)

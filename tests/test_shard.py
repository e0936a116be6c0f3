"""`oxedit batch --shard i/N`: N processes started at once into one output folder cover every
item exactly once, bill nothing twice, never take one another's output names, and leave one
merged report (real subprocesses of the CLI against one local server)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from oxedit._atomic import temp_name
from oxedit._bulk.journal import item_key
from oxedit._bulk.shard import Shard, journals_in
from oxedit.testing import LocalServer

from .helpers import png, run_process

pytestmark = pytest.mark.anyio

# The README's figure comes from a 2,000-item run of the same scenario; the test keeps to a
# few hundred so that it stays fast on a shared machine.
ITEMS = 240
SHARDS = 4


def env_for(server: LocalServer) -> dict[str, str]:
    return {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}


def manifest(tmp_path: Path, items: int, prompt: str = "mirror") -> Path:
    """`items` rows of one image (so each wants the output name `a.png`: the shards race for
    it), told apart by their prompts."""
    (tmp_path / "a.png").write_bytes(png((30, 120, 200)))
    path = tmp_path / f"{prompt}.jsonl"
    rows = [{"image": "a.png", "prompt": f"{prompt} {i}"} for i in range(items)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def batch(source: Path, out: Path, *argv: str) -> list[str]:
    return [sys.executable, "-m", "oxedit", "batch", str(source), "--out", str(out), *argv]


def select(journal: Path, query: str) -> list[Any]:
    """The rows of `query` in a journal, opened read-only."""
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return db.execute(query).fetchall()
    finally:
        db.close()


def journal_rows(journal: Path) -> list[tuple[str, str, str | None, str | None]]:
    return select(journal, "SELECT key, state, generation_id, output FROM items")


def journal_errors(folder: Path) -> list[str]:
    """The errors the journals in `folder` recorded (what a failed run says went wrong: its
    printed summary, a wide table, hides them)."""
    errors = []
    for journal in sorted(folder.glob("*.sqlite")):
        rows = select(journal, "SELECT key, error FROM items WHERE error IS NOT NULL")
        errors += [f"{journal.name} {key[:12]}: {error}" for key, error in rows]
    return errors


def test_the_shards_partition_the_keys() -> None:
    shards = [Shard.parse(f"{i}/{SHARDS}") for i in range(1, SHARDS + 1)]
    keys = [item_key(f"item {i}".encode(), 1 + i % 3) for i in range(4000)]
    owners = [[s.index for s in shards if s.owns(k)] for k in keys]
    assert all(len(o) == 1 for o in owners)  # every key in exactly one shard
    sizes = [sum(o == [s.index] for o in owners) for s in shards]
    assert min(sizes) > 4000 / SHARDS * 0.9  # and evenly
    assert Shard.parse("1/1").owns(keys[0])


@pytest.mark.parametrize("text", ["0/4", "5/4", "1/0", "a/b", "1-4", ""])
def test_a_bad_shard_is_refused_naming_it(text: str) -> None:
    with pytest.raises(Exception, match="--shard") as caught:
        Shard.parse(text)
    assert repr(text) in str(caught.value)


async def test_four_shards_at_once_into_one_out_cover_every_item_once(tmp_path: Path) -> None:
    source = manifest(tmp_path, ITEMS)
    out = tmp_path / "out"
    async with LocalServer() as server:
        env = env_for(server)
        runs = await asyncio.gather(
            *(
                run_process(*batch(source, out, "--shard", f"{i}/{SHARDS}"), env=env)
                for i in range(1, SHARDS + 1)
            )
        )
        for code, output in runs:
            assert code == 0, output[-3000:]
        assert server.stats.generations_created == ITEMS  # none billed twice, none left out
        assert server.stats.requests_by_route["POST /api/ai/queue"] == ITEMS
        # Run again: every shard finds its items done, and sends nothing.
        again = await asyncio.gather(
            *(
                run_process(*batch(source, out, "--shard", f"{i}/{SHARDS}"), env=env)
                for i in range(1, SHARDS + 1)
            )
        )
        assert all(code == 0 for code, _ in again)
        assert server.stats.generations_created == ITEMS
    journals = journals_in(out)
    assert [j.name for j in journals] == [
        f".oxedit-journal.shard-{i}-of-{SHARDS}.sqlite" for i in range(1, SHARDS + 1)
    ]
    rows = [row for journal in journals for row in journal_rows(journal)]
    assert len(rows) == ITEMS and len({key for key, *_ in rows}) == ITEMS
    assert {state for _, state, *_ in rows} == {"succeeded"}
    outputs = [output for *_, output in rows]
    assert len(set(outputs)) == ITEMS  # no shard took another's name
    assert len(list(out.glob("*.png"))) == ITEMS
    assert sum(Path(o or "").name == "a.png" for o in outputs) == 1  # one shard won the race
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["total"] == ITEMS
    assert report["summary"]["succeeded"] == ITEMS
    assert len(report["summary"]["shards"]) == SHARDS
    items = report["items"]
    assert sorted(item["index"] for item in items) == list(range(ITEMS))
    assert len({item["generation_id"] for item in items}) == ITEMS
    assert (out / "report.html").is_file()
    # `oxedit report` merges the same way.
    (out / "report.json").unlink()
    code, output = await run_process(
        sys.executable, "-m", "oxedit", "report", str(out), env={**os.environ}
    )
    assert code == 0, output
    assert json.loads((out / "report.json").read_text())["summary"]["total"] == ITEMS


async def test_two_batches_sharing_a_folder_never_take_the_same_name(tmp_path: Path) -> None:
    """Two runs with journals of their own (shards, or two manifests) into one folder, at
    once: each item keeps its own output file, whatever the timing."""
    first, second = manifest(tmp_path, 40, "mirror"), manifest(tmp_path, 40, "flip")
    out = tmp_path / "out"
    async with LocalServer() as server:
        env = env_for(server)
        runs = await asyncio.gather(
            run_process(*batch(first, out, "--journal", str(out / "one.sqlite")), env=env),
            run_process(*batch(second, out, "--journal", str(out / "two.sqlite")), env=env),
        )
        for code, output in runs:
            assert code == 0, journal_errors(out) or output[-3000:]
    outputs = [
        row[3] for journal in ("one", "two") for row in journal_rows(out / f"{journal}.sqlite")
    ]
    assert len(outputs) == 80 and len(set(outputs)) == 80
    assert len(list(out.glob("*.png"))) == 80


async def test_a_shard_starting_leaves_another_shards_write_in_progress_alone(
    tmp_path: Path,
) -> None:
    """A shard (re)starting cleans up what a crash left, but not the temporary file another
    shard is writing right now: its rename would fail and the item would lose its output."""
    source = manifest(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    live = out / ".b.png.oxedit-0123456789ab.part"  # `_atomic.temp_name`'s form
    live.write_bytes(b"half a file")
    async with LocalServer() as server:
        code, output = await run_process(*batch(source, out, "--shard", "1/2"), env=env_for(server))
    assert code == 0, output[-3000:]
    assert live.read_bytes() == b"half a file"


async def test_a_batch_starting_leaves_a_write_in_progress_of_a_live_process_alone(
    tmp_path: Path,
) -> None:
    """Not only shards share a folder: two batches with journals of their own can write into
    one at once. A run starting cleared every temporary file of oxedit's it found there, so the
    other run's write of the moment lost its file and its item failed "not saved" (seen in a
    fresh clone as `test_two_batches_sharing_a_folder_never_take_the_same_name`). A write in
    progress is one by a process still running: this test's, here."""
    source = manifest(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    live = out / temp_name("b.png")  # as this (running) process would be writing it
    live.write_bytes(b"half a file")
    async with LocalServer() as server:
        code, output = await run_process(*batch(source, out), env=env_for(server))
    assert code == 0, output[-3000:]
    assert live.read_bytes() == b"half a file"


async def test_client_map_takes_a_shard_and_the_shards_cover_every_item_once(
    tmp_path: Path,
) -> None:
    """The same split from the Python API: `client.map(..., shard="i/N")`; a bad shard is
    refused before anything is sent."""
    import oxedit

    (tmp_path / "a.png").write_bytes(png())
    requests = [{"image": str(tmp_path / "a.png"), "prompt": f"mirror {i}"} for i in range(12)]
    async with LocalServer() as server:
        async with server.client() as client:
            with pytest.raises(oxedit.InvalidRequestError, match="'3/2'"):
                client.map(requests, shard="3/2")
            done = []
            for text in ("1/2", "2/2"):
                async with client.map(requests, shard=text) as run:
                    done += [result async for result in run]
        assert len(server.generations()) == 12
    assert sorted(r.request.prompt for r in done) == sorted(r["prompt"] for r in requests)
    assert all(r.ok for r in done)


async def test_a_merge_reading_the_journals_never_keeps_a_shard_from_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last shard to finish merges every shard's journal; while it reads one, that shard
    may be starting again (a re-run of all shards at once): the merge must not hold its lock
    (it did, and the shard refused to start: "in use by process ...")."""
    import threading

    from oxedit._bulk.journal import Journal
    from oxedit._cli.report import build

    source = manifest(tmp_path, 8)
    out = tmp_path / "out"
    async with LocalServer() as server:
        env = env_for(server)
        for i in (1, 2):
            code, output = await run_process(*batch(source, out, "--shard", f"{i}/2"), env=env)
            assert code == 0, output[-3000:]
    reading, release = threading.Event(), threading.Event()

    def paused(original: Any) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            reading.set()  # the merge is reading a journal now
            assert release.wait(10)
            return original(*args, **kwargs)

        return read

    # Paused as it reads each journal's end times (the old code read them holding its lock).
    monkeypatch.setattr(build, "_ended_at", paused(build._ended_at))
    merge = threading.Thread(target=build.write_merged_report, args=(out,))
    merge.start()
    try:
        assert reading.wait(10)
        for journal in journals_in(out):  # each shard starting again meanwhile
            Journal(journal).close()
    finally:
        release.set()
        merge.join(10)
    assert (out / "report.json").is_file()


def test_the_lock_probe_names_a_running_batch_and_holds_nothing(tmp_path: Path) -> None:
    import oxedit
    from oxedit._bulk.journal import Journal, lock_holder, read_entries

    path = tmp_path / "j.sqlite"
    assert lock_holder(path) is None  # no journal yet
    with Journal(path):
        assert lock_holder(path) == str(os.getpid())
        with pytest.raises(oxedit.ConfigurationError, match=f"in use by process {os.getpid()}"):
            read_entries(path)
    assert lock_holder(path) is None
    assert read_entries(path) == []
    with Journal(path):  # the probes left nothing held
        pass

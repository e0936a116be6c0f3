"""An item's identity in a batch's journal does not depend on the working folder or on how a
path is spelled: the same batch re-run from anywhere bills nothing again (real subprocesses of
the CLI against the local server)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from oxedit import EditRequest
from oxedit.testing import Faults, LocalServer

from .helpers import eventually, png, run_process

pytestmark = pytest.mark.anyio

NAMES = ("a", "b", "c")


def images(root: Path) -> Path:
    folder = root / "data" / "imgs"
    folder.mkdir(parents=True)
    for i, name in enumerate(NAMES):
        (folder / f"{name}.png").write_bytes(png((40 * i, 90, 160)))
    return folder


def manifest(path: Path, spell: list[str]) -> Path:
    path.write_text("".join(json.dumps({"image": s, "prompt": "mirror"}) + "\n" for s in spell))
    return path


def env_for(server: LocalServer) -> dict[str, str]:
    return {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}


def batch(*argv: str) -> list[str]:
    return [sys.executable, "-m", "oxedit", "batch", *argv, "--concurrency", "8"]


@pytest.mark.slow
async def test_the_same_batch_from_three_folders_spelled_three_ways_bills_once(
    tmp_path: Path,
) -> None:
    folder = images(tmp_path)
    data, other = folder.parent, tmp_path / "other"
    other.mkdir()
    manifest(data / "m1.jsonl", [f"imgs/{n}.png" for n in NAMES])
    absolute = manifest(data / "m2.jsonl", [str(folder / f"{n}.png") for n in NAMES])
    dotted = manifest(data / "m3.jsonl", [f"./imgs/../imgs/{n}.png" for n in NAMES])
    out = tmp_path / "out"
    runs = [
        (tmp_path, ["data/m1.jsonl", "--out", "out"]),
        (data, [absolute.name, "--out", "../out/"]),
        (other, [f"../data/{dotted.name}", "--out", f"./../{out.name}/."]),
    ]
    async with LocalServer() as server:
        for cwd, argv in runs:
            code, output = await run_process(*batch(*argv), env=env_for(server), cwd=cwd)
            assert code == 0, output[-2000:]
        assert server.stats.generations_created == len(NAMES)  # billed once, not three times
    assert "already done earlier (skipped)" in output
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["resumed"] == len(NAMES)
    assert sorted(p.name for p in out.glob("*.png")) == [f"{n}.png" for n in NAMES]


def _rows(journal: Path, where: str) -> int:
    try:
        db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(db.execute(f"SELECT count(*) FROM items WHERE {where}").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0
    finally:
        db.close()


@pytest.mark.slow
async def test_a_killed_batch_rerun_from_elsewhere_spelled_otherwise_bills_once(
    tmp_path: Path,
) -> None:
    n = 40
    folder = tmp_path / "data" / "imgs"
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"p{i:02d}.png").write_bytes(png((i * 5, 90, 160)))
    relative = manifest(tmp_path / "data" / "m.jsonl", [f"imgs/p{i:02d}.png" for i in range(n)])
    absolute = manifest(
        tmp_path / "abs.jsonl", [str(folder / f"p{i:02d}.png") for i in range(n)]
    )
    out = tmp_path / "out"
    journal = out / ".oxedit-journal.sqlite"
    faults = Faults(seed=5, latency=(0.05, 0.15))
    async with LocalServer(faults=faults, workers=4) as server:
        process = await asyncio.create_subprocess_exec(
            *batch("data/m.jsonl", "--out", "out"),
            cwd=tmp_path,
            env=env_for(server),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:  # killed with items finished, in flight and unsent
            await eventually(lambda: _rows(journal, "state = 'succeeded'") >= 8, within=60)
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert server.stats.generations_created < n
        code, output = await run_process(
            *batch(str(absolute), "--out", str(out) + "/"), env=env_for(server), cwd=folder
        )
        assert code == 0, output[-2000:]
        assert server.stats.generations_created == n  # nothing sent twice
    assert relative.is_file()
    report = json.loads((out / "report.json").read_text())
    assert [i["status"] for i in report["items"]] == ["succeeded"] * n
    assert sorted(p.name for p in out.glob("*.png")) == [f"p{i:02d}.png" for i in range(n)]


def _legacy_key(request: EditRequest) -> str:
    """How journals keyed an item before 0.x: the request as written, hashed."""
    encoded = request.encoded()
    return f"{hashlib.sha256(encoded).hexdigest()[:24]}-1"


@pytest.mark.slow
async def test_a_journal_keyed_the_old_way_is_resumed_not_billed_again(tmp_path: Path) -> None:
    images(tmp_path)
    data = tmp_path / "data"
    source = manifest(data / "m.jsonl", [f"imgs/{n}.png" for n in NAMES])
    out = tmp_path / "out"
    journal = out / ".oxedit-journal.sqlite"
    async with LocalServer() as server:
        code, output = await run_process(
            *batch("data/m.jsonl", "--out", "out"), env=env_for(server), cwd=tmp_path
        )
        assert code == 0, output[-2000:]
        # Rewrite the rows as an older oxedit wrote them: keyed by the image path as written
        # (relative to the folder it ran in), that path in the stored request; one row left
        # 'enqueued' (killed before it ended), one with its output removed.
        db = sqlite3.connect(journal)
        rows = db.execute("SELECT key, request FROM items").fetchall()
        for key, text in rows:
            request = EditRequest(**json.loads(text))
            old = EditRequest(
                image=f"data/imgs/{Path(request.image).name}",
                prompt=request.prompt,
                model=request.model,
                params=request.params,
                name=request.name,
            )
            db.execute(
                "UPDATE items SET key = ?, request = ? WHERE key = ?",
                (_legacy_key(old), old.encoded().decode(), key),
            )
        db.execute("UPDATE items SET state = 'enqueued' WHERE request LIKE '%a.png%'")
        db.commit()
        db.close()
        (out / "b.png").unlink()
        code, output = await run_process(
            *batch("data/m.jsonl", "--out", "out"), env=env_for(server), cwd=tmp_path
        )
        assert code == 0, output[-2000:]
        # The same batch again, from another folder, spelled otherwise: still nothing sent.
        code, output = await run_process(
            *batch(str(source), "--out", str(out)), env=env_for(server), cwd=data
        )
        assert code == 0, output[-2000:]
        assert server.stats.generations_created == len(NAMES)
    assert sorted(p.name for p in out.glob("*.png")) == [f"{n}.png" for n in NAMES]
    assert len(sqlite3.connect(journal).execute("SELECT key FROM items").fetchall()) == 3

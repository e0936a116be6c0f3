"""What a batch does to the files of its output folder: only its own temporaries go, outputs
honour the umask, and a row's `name` never leaves the folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import oxedit
from oxedit.testing import LocalServer

from .helpers import client_for, png

pytestmark = pytest.mark.anyio


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_temp_names_are_recognised_and_nothing_else() -> None:
    from oxedit._atomic import is_own_temp, temp_name

    name = temp_name("cat.png")
    assert name.startswith(".cat.png.") and is_own_temp(name)
    for other in (".movie.mkv.part", ".cat.png.abcd.part", "cat.png", ".x.oxedit.part"):
        assert not is_own_temp(other), other


def test_only_the_temporaries_of_writers_gone_are_removed(tmp_path: Path) -> None:
    import subprocess
    import sys

    from oxedit._atomic import remove_own_temps, temp_name

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    dead = int(gone.stdout)  # a process that ended: its write can be in progress no more
    names = {
        "ours": temp_name("a.png"),  # this process, running: a write in progress
        "dead": f".b.png.oxedit-{dead}-0123456789ab.part",
        "legacy": ".c.png.oxedit-0123456789ab.part",  # an older version's: no process id
        "absurd": f".d.png.oxedit-{2**80}-0123456789ab.part",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    assert remove_own_temps(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [names["ours"]]


def test_write_atomic_honours_the_umask(tmp_path: Path) -> None:
    from oxedit._atomic import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        write_atomic(tmp_path / "b.bin", b"y")
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "b.bin"]


async def test_a_run_removes_only_its_own_temporary_files(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(png())
    out = tmp_path / "out"
    out.mkdir()
    theirs = [out / ".movie.mkv.part", out / ".notes.txt.1234.part", out / "keep.part"]
    for path in theirs:
        path.write_bytes(b"not oxedit's")
    ours = out / ".in.png.oxedit-0123456789ab.part"  # what a killed run leaves
    ours.write_bytes(b"half an image")
    old = os.umask(0o022)
    try:
        async with LocalServer() as server, client_for(server) as client:
            results = [
                r
                async for r in client.map(
                    [{"image": str(image), "prompt": "mirror"}], output_dir=out
                )
            ]
    finally:
        os.umask(old)
    assert [r.status for r in results] == ["succeeded"]
    assert all(p.read_bytes() == b"not oxedit's" for p in theirs)
    assert not ours.exists()
    assert (out / "in.png").stat().st_mode & 0o777 == 0o644


async def test_names_that_leave_the_output_folder_are_per_row_errors(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    image.write_bytes(png())
    (tmp_path / "victim").mkdir()
    victim = tmp_path / "victim" / "keep.png"
    victim.write_bytes(b"precious")
    out = tmp_path / "work" / "out"
    bad_names = ["../escaped", str(tmp_path / "absolute"), "../../victim/keep", "a/b", "..", "a\\b"]
    rows: list[object] = [{"image": str(image), "prompt": "mirror", "name": n} for n in bad_names]
    rows.append(oxedit.EditRequest(image=str(image), prompt="mirror", name="../direct"))
    rows.append({"image": str(image), "prompt": "mirror", "name": "fine"})
    async with LocalServer() as server, client_for(server) as client:
        results = sorted(
            [r async for r in client.map(rows, output_dir=out)],  # type: ignore[arg-type]
            key=lambda r: r.index,
        )
        created = len(server.generations())
    assert [r.status for r in results] == ["error"] * 7 + ["succeeded"]
    for result in results[:-1]:
        assert "name" in (result.error or "") and "file name" in (result.error or "")
    assert created == 1  # nothing was sent for a bad name
    assert victim.read_bytes() == b"precious"
    # (and the folder's reservation of the one name taken: `_bulk.names`)
    assert all_files(tmp_path) == [
        "in.png",
        "victim/keep.png",
        "work/out/.oxedit-names/fine",
        "work/out/fine.png",
    ]

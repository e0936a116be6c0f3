"""Ctrl-C and SIGTERM stop a batch the same way: exit 130, a partial report, and a re-run that
finishes the rest without sending anything twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from oxedit.testing import Faults, LocalServer

from .helpers import interrupt, png, run_process

pytestmark = pytest.mark.anyio


def succeeded_in_journal(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return 0
    try:
        (count,) = db.execute("SELECT count(*) FROM items WHERE state = 'succeeded'").fetchone()
        return int(count)
    except sqlite3.OperationalError:  # the table is not there yet
        return 0
    finally:
        db.close()


@pytest.mark.parametrize(
    ("signum", "ignored"),
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    # SIGINT inherited as ignored: how a script's background job starts (`cmd &`)
    ids=["SIGINT", "SIGTERM", "SIGINT-started-ignored"],
)
@pytest.mark.slow
async def test_interrupted_batch_writes_a_partial_report_and_resumes(
    tmp_path: Path, signum: signal.Signals, ignored: bool
) -> None:
    n = 60  # at 4 workers and 0.05-0.15 s a job, ~1.5 s of work: the signal lands mid-run
    images = tmp_path / "in"
    images.mkdir()
    for i in range(n):
        (images / f"p{i:02d}.png").write_bytes(png((i * 4, 90, 160)))
    out = tmp_path / "out"
    journal = out / ".oxedit-journal.sqlite"
    async with LocalServer(faults=Faults(seed=3, latency=(0.05, 0.15)), workers=4) as server:
        env = {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}
        command = [sys.executable, "-m", "oxedit", "batch", str(images), "--prompt", "blur"]
        command += ["--out", str(out), "--concurrency", "8"]
        started = command
        if ignored:  # exec keeps an ignored disposition, as a shell's `&` leaves SIGINT
            exec_ignoring = (
                "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                "os.execv(sys.argv[1], sys.argv[1:])"
            )
            started = [sys.executable, "-c", exec_ignoring, *command]
        process = await asyncio.create_subprocess_exec(
            *started, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        # The journal is written by another process: polled (the count ends the wait).
        stderr = await interrupt(
            process, lambda: succeeded_in_journal(journal) >= n * 3 // 10, signum
        )
        assert process.returncode == 130, stderr.decode()[-2000:]
        assert "interrupted" in stderr.decode()
        report = json.loads((out / "report.json").read_text())
        assert report["summary"]["interrupted"] is True
        done_first = [item for item in report["items"] if item["status"] == "succeeded"]
        assert n * 3 // 10 <= len(done_first) < n
        assert report["summary"]["total"] == len(report["items"]) < n
        code, output = await run_process(*command, env=env)
        assert code == 0, output[-2000:]
        rows = server.generations()
    assert len(rows) == n  # one generation per image, ever
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["interrupted"] is False
    assert sorted(item["index"] for item in report["items"]) == list(range(n))
    assert sum(item["resumed"] for item in report["items"]) >= len(done_first)

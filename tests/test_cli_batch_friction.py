"""What a user reads from `oxedit batch`: one vocabulary for outcomes on the bar and in the
summary, no empty bar before a whole-batch refusal (which leaves no journal), and an
interrupted summary that counts what was in flight and says what to do once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from oxedit.testing import Faults, LocalServer

from .helpers import cli, interrupt, png
from .test_cli_signals import succeeded_in_journal

pytestmark = pytest.mark.anyio


def squeeze(text: str) -> list[str]:
    return [" ".join(line.replace("│", " ").split()) for line in text.splitlines()]


async def test_the_bar_and_the_summary_name_outcomes_alike(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # the bar's counts on one line
    (tmp_path / "ok.png").write_bytes(png())
    source = tmp_path / "m.jsonl"
    rows = [{"image": "ok.png", "prompt": "mirror"}]
    rows += [{"image": f"gone{i}.png", "prompt": "mirror"} for i in range(3)]
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    async with LocalServer() as server:
        use_server(server)
        assert await cli("batch", str(source), "--out", str(tmp_path / "out")) == 1
    lines = squeeze(capsys.readouterr().err)
    (bar,) = [line for line in lines if "in flight" in line]
    assert "1 succeeded 3 errors 0 in flight" in bar and "failed" not in bar
    assert "errors (not sent / not saved) 3" in lines and "failed 0" in lines


async def test_a_refused_cap_shows_no_bar_and_leaves_no_journal(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "a.png").write_bytes(png())
    source = tmp_path / "m.jsonl"
    source.write_text('{"image": "a.png", "prompt": "mirror"}\n')
    out = tmp_path / "out"
    async with LocalServer() as server:
        use_server(server)
        assert await cli("batch", str(source), "--out", str(out), "--max-cost", "0.01") == 2
        assert server.stats.generations_created == 0
    err = capsys.readouterr().err
    assert "exceeds max_cost" in err
    assert "in flight" not in err and "0%" not in err  # no empty bar before the error
    assert not [p.name for p in out.iterdir() if p.name.startswith(".oxedit-journal")]


@pytest.mark.slow
async def test_an_interrupted_summary_counts_what_was_in_flight_and_says_so_once(
    tmp_path: Path,
) -> None:
    n = 60
    images = tmp_path / "in"
    images.mkdir()
    for i in range(n):
        (images / f"p{i:02d}.png").write_bytes(png((i * 4, 90, 160)))
    out = tmp_path / "out"
    async with LocalServer(faults=Faults(seed=4, latency=(0.05, 0.15)), workers=4) as server:
        env = {
            **os.environ,
            "OXEN_BASE_URL": server.url,
            "OXEN_API_KEY": server.api_key,
            "COLUMNS": "300",
        }
        command = [sys.executable, "-m", "oxedit", "batch", str(images), "--prompt", "blur"]
        command += ["--out", str(out), "--concurrency", "8"]
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        journal = out / ".oxedit-journal.sqlite"
        stderr = (
            await interrupt(process, lambda: succeeded_in_journal(journal) >= 10, signal.SIGINT)
        ).decode()
    assert process.returncode == 130, stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    unknown = [item for item in report["items"] if item["status"] == "unknown"]
    assert 0 < summary["unknown"] == len(unknown) <= 8  # the items in flight
    assert f"outcome unknown (re-run to follow) {summary['unknown']}" in squeeze(stderr)
    assert stderr.count("re-run the same command") == 1, stderr

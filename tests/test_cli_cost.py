"""`oxedit batch --dry-run / --max-cost`: the estimate before sending, the cap, costs in the
report (against the local server, at any terminal width)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from oxedit.testing import LocalServer

from .helpers import cli, png

pytestmark = pytest.mark.anyio

QUEUE = "POST /api/ai/queue"


def manifest(folder: Path) -> Path:
    (folder / "a.png").write_bytes(png())
    path = folder / "m.jsonl"
    path.write_text(
        '{"image": "a.png", "prompt": "mirror"}\n'
        '{"image": "a.png", "prompt": "invert", "name": "b"}\n'
        '{"image": "a.png", "prompt": "blur", "model": "flux-kontext-dev", "name": "c"}\n'
        '{"image": "gone.png", "prompt": "mirror"}\n'
    )
    return path


async def test_dry_run_sends_nothing_and_prints_the_estimate(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    columns: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = manifest(tmp_path)
    async with LocalServer() as server:
        use_server(server)
        code = await cli("batch", str(source), "--out", str(tmp_path / "out"), "--dry-run")
        assert QUEUE not in server.stats.requests_by_route
        assert server.generations() == []
    assert code == 1  # a row is bad
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert "m.jsonl line 4: image 'gone.png' not found" in text
    lines = [" ".join(line.replace("│", " ").split()) for line in captured.out.splitlines()]
    assert "qwen-image-edit 2 2 $0.0300 $0.0600" in lines
    assert "flux-kontext-dev 1 1 $0.0250 $0.0250" in lines
    assert "total 3 3 $0.0850" in lines
    assert not (tmp_path / "out").exists()  # nothing written either


async def test_max_cost_refuses_then_a_higher_cap_runs_and_reports_costs(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    columns: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source = manifest(tmp_path)
    out = tmp_path / "out"
    async with LocalServer() as server:
        use_server(server)
        assert await cli("batch", str(source), "--out", str(out), "--max-cost", "0.08") == 2
        assert QUEUE not in server.stats.requests_by_route
        err = capsys.readouterr().err
        assert "$0.0850" in err and "exceeds max_cost $0.0800" in err
        assert await cli("batch", str(source), "--out", str(out), "--max-cost", "0.09") == 1
        assert len(server.generations()) == 3
    report = json.loads((out / "report.json").read_text())
    summary = report["summary"]
    assert summary["estimated_cost"] == summary["cost"] == "0.085"
    assert [i["cost"] for i in report["items"]] == ["0.03", "0.03", "0.025", None]
    assert "actual cost" in capsys.readouterr().err

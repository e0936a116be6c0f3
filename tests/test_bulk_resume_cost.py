"""After an interrupted run, the re-run's estimate, spend against the cap and actual cost cover
the whole batch (items the first run sent included), the same in the summary, report.json and
report.html."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from oxedit._cli.sources import load_source
from oxedit.testing import LocalServer

from .helpers import cli, client_for, png

pytestmark = pytest.mark.anyio

_FACT = re.compile(r"<dt>([^<]*)</dt><dd>([^<]*)</dd>")
N = 12
PRICE = Decimal("0.03")


async def test_costs_after_a_resume_cover_the_whole_batch(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the summary's cost rows on one line each
    for i in range(N):
        (tmp_path / f"p{i:02d}.png").write_bytes(png((i * 20, 90, 160)))
    source = tmp_path / "m.jsonl"
    source.write_text(
        "".join(json.dumps({"image": f"p{i:02d}.png", "prompt": "mirror"}) + "\n" for i in range(N))
    )
    out = tmp_path / "out"
    whole = str(N * PRICE)
    async with LocalServer() as server:
        use_server(server)
        # The first run leaves early (as Ctrl-C does): some items done, the rest in flight.
        items = load_source(source, defaults={})
        async with client_for(server) as client:
            run = client.map(
                items,
                journal=out / ".oxedit-journal.sqlite",
                output_dir=out,
                concurrency=6,
                max_cost=whole,
            )
            async with run:
                done = 0
                async for _ in run:
                    done += 1
                    if done == 2:
                        break
        sent = server.stats.generations_created
        assert 2 <= sent < N
        # The cap holds the whole batch, the first run's items included: one cent short
        # refuses before sending anything.
        short = str(N * PRICE - Decimal("0.01"))
        assert await cli("batch", str(source), "--out", str(out), "--max-cost", short) == 2
        assert server.stats.generations_created == sent
        capsys.readouterr()
        assert await cli("batch", str(source), "--out", str(out), "--max-cost", whole) == 0
        assert server.stats.generations_created == N
    err = " ".join(capsys.readouterr().err.replace("│", " ").split())
    money = f"${N * PRICE:,.4f}"
    assert f"estimated cost {money}" in err and f"actual cost (history) {money}" in err
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["estimated_cost"] == report["summary"]["cost"] == whole
    assert all(item["estimated_cost"] == str(PRICE) for item in report["items"])
    page = dict(_FACT.findall((out / "report.html").read_text()))
    shown = [page["estimated cost"], page["actual cost (history)"]]
    assert [Decimal(amount.removeprefix("$")) for amount in shown] == [N * PRICE] * 2

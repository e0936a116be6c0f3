"""`num_generations` 2-4 in a batch row: one enqueue, several outputs `name-1.png`, ...,
resumed without sending again; priced per generation."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

import oxedit
from oxedit._cli.main import main
from oxedit._cli.sources import load_source
from oxedit.testing import LocalServer

from .helpers import client_for, png, run_all

pytestmark = pytest.mark.anyio

PRICE = Decimal("0.03")


async def test_a_row_with_three_generations_gives_three_outputs_and_resumes(
    tmp_path: Path,
) -> None:
    (tmp_path / "cat.png").write_bytes(png())
    items: list[dict[str, object]] = [
        {"image": str(tmp_path / "cat.png"), "prompt": "mirror", "num_generations": 3},
        {"image": str(tmp_path / "cat.png"), "prompt": "invert", "name": "one"},
    ]
    out, journal = tmp_path / "out", tmp_path / "j.sqlite"
    async with LocalServer() as server, client_for(server) as client:
        first = await run_all(client.map(items, output_dir=out, journal=journal))
        assert sorted(server.stats.generations_created_per_request) == [1, 3]
        again = await run_all(client.map(items, output_dir=out, journal=journal))
        assert server.stats.generations_created == 4  # the re-run sent nothing
    multi, single = first
    assert (
        multi.ok and len(multi.generation_ids) == 3 and multi.generation_id in multi.generation_ids
    )
    assert [p.name for p in multi.outputs] == ["cat-1.png", "cat-2.png", "cat-3.png"]
    assert multi.output == multi.outputs[0]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in multi.outputs)
    assert multi.estimated_cost == multi.cost == 3 * PRICE
    assert single.outputs == (out / "one.png",) and single.generation_ids == (single.generation_id,)
    assert [r.resumed for r in again] == [True, True]
    assert again[0].outputs == multi.outputs and again[0].generation_ids == multi.generation_ids


async def test_a_missing_output_of_a_multi_row_is_downloaded_again_not_resent(
    tmp_path: Path,
) -> None:
    (tmp_path / "cat.png").write_bytes(png())
    items = [{"image": str(tmp_path / "cat.png"), "prompt": "mirror", "num_generations": 2}]
    out, journal = tmp_path / "out", tmp_path / "j.sqlite"
    async with LocalServer() as server, client_for(server) as client:
        (first,) = await run_all(client.map(items, output_dir=out, journal=journal))
        first.outputs[1].unlink()
        (again,) = await run_all(client.map(items, output_dir=out, journal=journal))
        assert server.stats.generations_created == 2
    assert again.ok and not again.resumed and again.outputs == first.outputs
    assert first.outputs[1].exists()


async def test_cli_manifest_rows_may_ask_for_several_generations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a.png").write_bytes(png())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"image": "a.png", "prompt": "mirror", "name": "hat", "num_generations": 2}\n'
        '{"image": "a.png", "prompt": "mirror", "name": "bad", "num_generations": 5}\n'
    )
    async with LocalServer() as server:
        monkeypatch.setenv("OXEN_BASE_URL", server.url)
        monkeypatch.setenv("OXEN_API_KEY", server.api_key)
        code = await anyio.to_thread.run_sync(
            main, ["batch", str(manifest), "--out", str(tmp_path / "out")]
        )
        assert server.stats.generations_created == 2
    assert code == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    hat, bad = report["items"]
    assert hat["status"] == "succeeded" and len(hat["generation_ids"]) == 2
    assert [Path(p).name for p in hat["outputs"]] == ["hat-1.png", "hat-2.png"]
    assert bad["status"] == "error" and "num_generations=5" in bad["error"]


def test_a_csv_num_generations_is_read_as_a_number(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "m.csv").write_text("image,prompt,num_generations\na.png,mirror,2\na.png,x,two\n")
    good, bad = load_source(tmp_path / "m.csv", defaults={})
    assert isinstance(good, oxedit.EditRequest) and good.params == {"num_generations": 2}
    assert isinstance(bad, oxedit.EditRequest) and bad.params == {"num_generations": "two"}

"""Output names are reserved: no item overwrites another item's output (of this run, of an
earlier run or another manifest sharing the folder) nor a file oxedit did not write; the JSON
report and the page describe the same items."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oxedit.testing import LocalServer

from .helpers import cli, client_for, png, run_all

pytestmark = pytest.mark.anyio

_BLOB = re.compile(r'<script type="application/json" id="oxedit-data">(.*?)</script>', re.S)


def page_items(page: Path) -> list[dict[str, Any]]:
    (blob,) = _BLOB.findall(page.read_text())
    items: list[dict[str, Any]] = json.loads(blob)["items"]
    return items


async def test_several_generations_and_a_row_named_like_their_suffix_keep_every_output(
    tmp_path: Path,
) -> None:
    (tmp_path / "cat.png").write_bytes(png())
    image = str(tmp_path / "cat.png")
    items: list[dict[str, object]] = [
        {"image": image, "prompt": "mirror", "name": "a", "num_generations": 2},
        {"image": image, "prompt": "invert", "name": "a-1"},
    ]
    out, journal = tmp_path / "out", tmp_path / "j.sqlite"
    async with LocalServer() as server, client_for(server) as client:
        first = await run_all(client.map(items, output_dir=out, journal=journal))
        again = await run_all(client.map(items, output_dir=out, journal=journal))
        assert server.stats.generations_created == 3
    outputs = [p for r in first for p in r.outputs]
    assert len(outputs) == len(set(outputs)) == 3  # 3 paid generations, 3 files
    assert all(p.is_file() for p in outputs)
    assert first[0].outputs == (out / "a-1.png", out / "a-2.png")
    assert first[1].outputs[0].name.startswith("a-1-")  # "a-1.png" was taken
    assert [r.outputs for r in again] == [r.outputs for r in first] and all(
        r.resumed for r in again
    )
    # Each file is its own item's image (mirror vs invert).
    assert first[0].outputs[0].read_bytes() != first[1].outputs[0].read_bytes()


async def test_a_second_manifest_into_the_same_folder_overwrites_nothing(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
) -> None:
    for i, name in enumerate("abc"):
        (tmp_path / f"{name}.png").write_bytes(png((60 * i, 90, 160)))
    first = tmp_path / "first.jsonl"
    first.write_text(
        "".join(json.dumps({"image": f"{n}.png", "prompt": "mirror"}) + "\n" for n in "ab")
    )
    second = tmp_path / "second.jsonl"
    second.write_text(
        json.dumps({"image": "c.png", "prompt": "invert", "name": "a"})
        + "\n"
        + json.dumps({"image": "c.png", "prompt": "invert", "name": "mine"})
        + "\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    mine = png((1, 2, 3))
    (out / "mine.png").write_bytes(mine)  # the user's own file, not oxedit's
    async with LocalServer() as server:
        use_server(server)
        assert await cli("batch", str(first), "--out", str(out)) == 0
        kept = (out / "a.png").read_bytes()
        assert await cli("batch", str(second), "--out", str(out)) == 0
        assert server.stats.generations_created == 4
    assert (out / "a.png").read_bytes() == kept
    assert (out / "mine.png").read_bytes() == mine
    assert len(list(out.glob("*.png"))) == 5  # 4 outputs and the user's file
    report = json.loads((out / "report.json").read_text())
    outputs = [Path(o).name for item in report["items"] for o in item["outputs"]]
    assert len(outputs) == len(set(outputs)) == 4
    assert "a.png" in outputs and "mine.png" not in outputs
    # The JSON report and the page describe the same items: every item of the journal.
    cards = page_items(out / "report.html")
    assert len(cards) == len(report["items"]) == 4
    shown = sorted(Path(p["h"]).name for card in cards for p in card["out"] if p.get("h"))
    assert shown == sorted(outputs)
    assert report["summary"]["total"] == 2  # this run's own items
    assert report["summary"]["earlier_items"] == 2

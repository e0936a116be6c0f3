"""`client.map` and money: the cap, actual costs from the history, a 402 stops sending."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import oxedit
from oxedit.testing import Faults, LocalServer

from .helpers import client_for, png, run_all

pytestmark = pytest.mark.anyio

PRICE = Decimal("0.03")  # qwen-image-edit in the local catalogue


def rows(folder: Path, n: int) -> list[dict[str, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for i in range(n):
        path = folder / f"img{i}.png"
        path.write_bytes(png((i * 20 % 256, 40, 90)))
        found.append({"image": str(path), "prompt": f"mirror {i}"})
    return found


def lazily(items: list[dict[str, str]]) -> Iterator[dict[str, str]]:
    """A source of unknown size: no estimate can be made up front."""
    yield from items


async def test_the_cap_stops_sending_at_the_right_item_and_a_rerun_continues(
    tmp_path: Path,
) -> None:
    items = rows(tmp_path / "in", 8)
    journal = tmp_path / "j.sqlite"
    async with LocalServer() as server, client_for(server) as client:
        run = client.map(lazily(items), concurrency=1, journal=journal, max_cost="0.10")
        first = await run_all(run)
        # 3 x 0.03 = 0.09 fits; a fourth would make 0.12 > 0.10.
        assert [r.index for r in first] == [0, 1, 2] and all(r.ok for r in first)
        assert run.stopped_at == 3 and run.stopped is not None
        assert "img3.png" in run.stopped and "higher cap" in run.stopped
        assert len(server.generations()) == 3
        assert all(r.cost == PRICE and r.estimated_cost == PRICE for r in first)

        # The batch's cap counts what the first run spent: 0.09 + 4 x 0.03 = 0.21 <= 0.22.
        again = client.map(lazily(items), concurrency=3, journal=journal, max_cost=0.22)
        second = await run_all(again)
        assert [r.index for r in second] == [0, 1, 2, 3, 4, 5, 6]
        assert [r.resumed for r in second] == [True] * 3 + [False] * 4
        assert again.stopped_at == 7
        assert len(server.generations()) == 7  # nothing sent twice

        last = await run_all(client.map(items, journal=journal, max_cost=1))
        assert len(last) == 8 and last[-1].ok and last[-1].cost == PRICE
        assert len(server.generations()) == 8


async def test_a_sized_batch_over_the_cap_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    items = rows(tmp_path / "in", 4)
    items.append({"image": str(tmp_path / "gone.png"), "prompt": "x"})  # not sent: costs 0
    async with LocalServer() as server, client_for(server) as client:
        with pytest.raises(oxedit.InvalidRequestError, match=r"\$0\.1200.*exceeds.*\$0\.1100"):
            await run_all(client.map(items, max_cost="0.11"))
        assert "POST /api/ai/queue" not in server.stats.requests_by_route
        results = await run_all(client.map(items, max_cost="0.12"))
    assert [r.status for r in results] == ["succeeded"] * 4 + ["error"], results


async def test_bad_amounts_are_refused_naming_the_value() -> None:
    async with LocalServer() as server, client_for(server) as client:
        with pytest.raises(oxedit.InvalidRequestError, match="max_cost='lots'"):
            client.map([], max_cost="lots")
        with pytest.raises(oxedit.InvalidRequestError, match="unknown_cost=-1"):
            await client.estimate([], unknown_cost=-1)


async def test_a_402_stops_sending_and_a_rerun_with_credits_continues(tmp_path: Path) -> None:
    items = rows(tmp_path / "in", 6)
    journal = tmp_path / "j.sqlite"
    async with LocalServer(faults=Faults(insufficient_credits_after=2)) as server:
        async with client_for(server) as client:
            run = client.map(items, concurrency=1, journal=journal)
            first = await run_all(run)
            assert [r.status for r in first] == ["succeeded", "succeeded", "error"]
            assert "Insufficient credits" in (first[2].error or "")
            assert run.stopped_at == 2 and "lack of credits" in (run.stopped or "")
            assert server.stats.requests_by_route["POST /api/ai/queue"] == 3  # not one more

            server.faults.insufficient_credits_after = None  # credits were added
            second = await run_all(client.map(items, concurrency=2, journal=journal))
        assert len(server.generations()) == 6
    assert [r.status for r in second] == ["succeeded"] * 6
    assert [r.resumed for r in second] == [True, True] + [False] * 4


async def test_an_unencodable_item_under_a_cap_is_only_that_items_error(tmp_path: Path) -> None:
    items = rows(tmp_path / "in", 2)
    items.insert(1, {"image": items[0]["image"], "prompt": "bad \ud800 surrogate"})
    async with LocalServer() as server, client_for(server) as client:
        results = await run_all(client.map(items, max_cost="0.06"))
    assert [r.status for r in results] == ["succeeded", "error", "succeeded"]

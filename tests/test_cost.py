"""Cost: the history calls, 402 as its own exception, and `client.estimate` (real sockets)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import oxedit
from oxedit._bulk.cost import unit_cost
from oxedit._exceptions import status_error
from oxedit._models import Model
from oxedit._response import Response
from oxedit.testing import Faults, LocalServer

from .helpers import client_for, png

pytestmark = pytest.mark.anyio

PRICE = Decimal("0.03")  # qwen-image-edit in the local catalogue


async def test_history_pages_and_one_entry_are_typed(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png())
    async with LocalServer() as server, client_for(server) as client:
        jobs = await client.submit_generations(prompt="mirror", image=image, num_generations=3)
        ids = {(await job).id for job in jobs}
        first = await client.history(page_size=2)
        second = await client.history(page=2, page_size=2)
        entry = await client.history_entry(jobs[0].id)
    entries = first.generations + second.generations
    assert {e.generation.id for e in entries} == ids
    assert all(e.cost == PRICE and e.generation.status == "succeeded" for e in entries)
    assert first.total_cost == 3 * PRICE
    assert entry.generation.id == jobs[0].id and entry.cost == PRICE


async def test_history_checks_page_size_before_sending() -> None:
    async with LocalServer() as server, client_for(server) as client:
        with pytest.raises(oxedit.InvalidRequestError, match="page_size=1001"):
            await client.history(page_size=1001)
        assert "GET /api/ai/generations" not in server.stats.requests_by_route


async def test_a_402_is_insufficient_credits_with_the_servers_message(tmp_path: Path) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(png())
    faults = Faults(insufficient_credits_after=0)
    async with LocalServer(faults=faults) as server, client_for(server) as client:
        with pytest.raises(oxedit.InsufficientCreditsError) as caught:
            await client.submit(prompt="mirror", image=image)
    assert caught.value.status_code == 402
    assert "Insufficient credits" in str(caught.value)
    assert isinstance(caught.value, oxedit.APIStatusError)
    assert server.stats.requests_by_route["POST /api/ai/queue"] == 1  # not retried


def test_a_body_typed_insufficient_credits_is_the_same_exception_whatever_its_status() -> None:
    body = b'{"error": {"type": "insufficient_credits", "title": "Out of credits"}}'
    error = status_error(Response(400, {}, body), what="enqueue")
    assert isinstance(error, oxedit.InsufficientCreditsError)
    assert "Out of credits" in str(error) and error.status_code == 400


def test_unit_cost_knows_per_image_pricing_only() -> None:
    def model(pricing: dict[str, object]) -> Model:
        return Model(id="m", pricing=pricing)

    assert unit_cost(model({"method": "per_image", "cost_per_image": 0.03})) == PRICE
    assert unit_cost(model({"method": "per_image", "cost_per_image": "0.125"})) == Decimal("0.125")
    assert unit_cost(model({"method": "per_image"})) is None
    assert unit_cost(model({"method": "time", "cost_per_second": 0.01})) is None
    assert unit_cost(model({"method": "token", "cost_per_image": 0.03})) is None
    assert unit_cost(model({})) is None
    assert unit_cost(model({"method": "per_image", "cost_per_image": -1})) is None
    assert unit_cost(model({"method": "per_image", "cost_per_image": True})) is None


async def test_estimate_counts_items_generations_and_cost_and_names_bad_rows(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "junk.png").write_bytes(b"not an image")
    rows: list[dict[str, object]] = [
        {"image": str(tmp_path / "a.png"), "prompt": "mirror"},
        {"image": str(tmp_path / "a.png"), "prompt": "mirror", "num_generations": 3},
        {"image": str(tmp_path / "a.png"), "prompt": "x", "model": "flux-kontext-dev"},
        {"image": str(tmp_path / "junk.png"), "prompt": "mirror"},
        {"image": str(tmp_path / "a.png"), "prompt": "mirror", "model": "no-such-model"},
        {"image": str(tmp_path / "a.png"), "prompt": "mirror", "num_generations": 5},
        {"image": str(tmp_path / "a.png"), "prompt": "mirror", "name": "../up"},
    ]
    async with LocalServer() as server, client_for(server) as client:
        estimate = await client.estimate(rows)
        assert "POST /api/ai/queue" not in server.stats.requests_by_route
    assert estimate.items == 3 and estimate.generations == 5
    qwen, flux = estimate.models["qwen-image-edit"], estimate.models["flux-kontext-dev"]
    assert (qwen.items, qwen.generations, qwen.unit_cost, qwen.cost) == (2, 4, PRICE, 4 * PRICE)
    assert (flux.items, flux.generations, flux.unit_cost) == (1, 1, Decimal("0.025"))
    assert estimate.cost == 4 * PRICE + Decimal("0.025")
    assert estimate.unknown == []
    assert [index for index, _ in estimate.errors] == [3, 4, 5, 6]
    messages = dict(estimate.errors)
    assert "not a jpeg, png, gif or webp image" in messages[3]
    assert "no-such-model" in messages[4]
    assert "num_generations=5" in messages[5]
    assert "not a plain file name" in messages[6]

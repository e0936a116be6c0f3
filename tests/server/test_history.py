"""The history routes (`GET /api/ai/generations[/{id}]`, with `cost`) and the 402 fault, over
real sockets with plain aiohttp."""

from __future__ import annotations

from decimal import Decimal

import aiohttp
import pytest

from oxedit.testing import Faults, LocalServer

from ._helpers import assert_typed_error, edit_body, enqueue, session_for

pytestmark = pytest.mark.anyio

PRICE = Decimal("0.03")  # qwen-image-edit's cost_per_image in the local catalogue


async def test_history_pages_rows_with_a_decimal_cost_and_a_total(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    ids = await enqueue(http, edit_body(num_generations=3))
    ids += await enqueue(http, edit_body(prompt="mirror"))
    await server.wait_idle()
    async with http.get("/api/ai/generations", params={"page": "1", "page_size": "3"}) as resp:
        assert resp.status == 200
        first = await resp.json()
    async with http.get("/api/ai/generations", params={"page": "2", "page_size": "3"}) as resp:
        second = await resp.json()
    rows = first["generations"] + second["generations"]
    assert len(first["generations"]) == 3 and len(second["generations"]) == 1
    assert sorted(row["generation_id"] for row in rows) == sorted(ids)
    for row in rows:
        assert row["status"] == "succeeded"
        assert isinstance(row["cost"], str) and Decimal(row["cost"]) == PRICE
    assert Decimal(first["total_cost"]) == Decimal(second["total_cost"]) == 4 * PRICE


async def test_one_history_row_is_wrapped_and_unknown_ids_are_404(
    server: LocalServer, http: aiohttp.ClientSession
) -> None:
    server.faults.failure_rate = 1.0
    (gen_id,) = await enqueue(http, edit_body())
    await server.wait_idle()
    async with http.get(f"/api/ai/generations/{gen_id}") as resp:
        assert resp.status == 200
        body = await resp.json()
    assert set(body) == {"generation"}
    row = body["generation"]
    assert row["generation_id"] == gen_id and row["status"] == "failed"
    assert Decimal(row["cost"]) == 0  # a failed generation is not billed [guess]
    async with http.get("/api/ai/generations/nope") as resp:
        await assert_typed_error(resp, 404, "resource_not_found")


@pytest.mark.parametrize(
    "query",
    [{"page_size": "1001"}, {"page_size": "0"}, {"page": "0"}, {"page": "x"}, {"sort": "asc"}],
)
async def test_history_refuses_bad_paging(
    http: aiohttp.ClientSession, query: dict[str, str]
) -> None:
    async with http.get("/api/ai/generations", params=query) as resp:
        await assert_typed_error(resp, 400, "invalid_params")


async def test_insufficient_credits_after_n_generations_is_a_402() -> None:
    async with LocalServer(faults=Faults(insufficient_credits_after=3)) as server:
        async with session_for(server) as http:
            assert len(await enqueue(http, edit_body(num_generations=2))) == 2
            async with http.post("/api/ai/queue", json=edit_body(num_generations=2)) as resp:
                body = await assert_typed_error(resp, 402, "insufficient_credits")
            assert "credits" in body["error"]["title"].lower()
            assert len(await enqueue(http, edit_body())) == 1  # the third one still fits
            async with http.post("/api/ai/queue", json=edit_body()) as resp:
                await assert_typed_error(resp, 402, "insufficient_credits")
        assert server.stats.generations_created == 3


def test_insufficient_credits_after_must_be_a_count() -> None:
    with pytest.raises(ValueError, match="insufficient_credits_after"):
        Faults(insufficient_credits_after=-1)


@pytest.mark.parametrize("path", ["/api/ai/generations", "/api/ai/generations/x"])
async def test_history_routes_require_the_bearer_key(server: LocalServer, path: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(server.url + path) as resp:
        await assert_typed_error(resp, 401, "unauthenticated")

"""The choice between per-id GETs and one list, by bytes: its edges, and over sockets."""

from __future__ import annotations

import asyncio
import io
import os

import pytest
from PIL import Image

import oxedit
from oxedit._engine.reconcile_cost import ReconcileCost
from oxedit.testing import LocalServer

from .helpers import FAST, client_for, eventually

pytestmark = pytest.mark.anyio


def test_one_id_is_always_a_get() -> None:
    assert not ReconcileCost(row_bytes=10).use_list(None, 1, 1)


def test_small_rows_make_a_list_worth_it_for_many_ids() -> None:
    cost = ReconcileCost(request_bytes=1000, row_bytes=1000, active_share=1.0)
    # 100 ids, 100 pending: a list of 100 rows (101 KB) spares 100 GETs (200 KB).
    assert cost.use_list(None, 100, 100)
    # 5 due among 1,000 pending: the list carries 995 rows nobody asked about.
    assert not cost.use_list(None, 5, 1000)


def test_large_rows_make_gets_cheaper_once_the_list_is_known_to_be_long() -> None:
    cost = ReconcileCost(request_bytes=1000, row_bytes=1000)
    cost.listed(None, rows=500, nbytes=500 * 2_000_000)  # others' rows too, 2 MB each
    assert cost.row_bytes > 500_000
    assert not cost.use_list(None, 100, 100)  # 500 rows of 2 MB to spare 100 GETs
    assert cost.use_list("org", 100, 100)  # another namespace: its list is not known long


def test_finished_ids_are_not_spared_by_a_list() -> None:
    cost = ReconcileCost(request_bytes=1000, row_bytes=1000)
    for _ in range(30):
        cost.found_active(checked=100, active=0)  # every check found the job finished
    assert cost.active_share < 0.01
    assert not cost.use_list(None, 100, 100)


def noisy_png(side: int) -> bytes:
    """A PNG that does not compress: about 3 bytes per pixel."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
async def test_large_echoed_inputs_are_checked_with_gets_not_lists_of_every_row() -> None:
    """Inputs of 190 KB, echoed in every row, and another client of the account with 100
    jobs active: once a list showed that rows are large and the list long, this client's 20
    jobs with lost events are checked one GET each, not by listing 120 large rows each time."""
    big = noisy_png(250)
    assert len(big) > 180_000
    faults = oxedit.testing.Faults(drop_event_rate=1.0, latency=600)
    async with (
        LocalServer(faults=faults) as server,
        client_for(server) as other,
        client_for(server, reconcile=FAST) as client,
    ):
        await asyncio.gather(*(other.submit(prompt=f"o{i}", image=big) for i in range(100)))
        jobs = await asyncio.gather(*(client.submit(prompt=f"{i}", image=big) for i in range(20)))
        await eventually(lambda: client.stats.requests.get("GET /api/ai/queue/{id}", 0) >= 60)
        lists = client.stats.requests.get("GET /api/ai/queue", 0)
        await asyncio.gather(*(job.cancel() for job in jobs))
    assert lists <= 1

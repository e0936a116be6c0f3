"""Billing on the local server: the history routes with each generation's `cost`, and the
402 of `Faults.insufficient_credits_after`.

The spec gives `GET /api/ai/generations?page=&page_size=` (page_size <= 1000) with rows that
carry `cost` (a decimal string) and a `total_cost`, and `GET /api/ai/generations/{id}` as
`{"generation": row}`. Everything else here is the smallest plausible shape, tagged [guess]
(`oxedit doctor` checks the page's shape and numbering, and `--spend` a row's cost; the
span of `total_cost` and the 402 need a history and a balance it cannot make):
- the page is `{"generations": [...], "total_cost": "..."}`, newest first, `page` counted
  from 1, `page_size` 100 by default; a short page is the last one;
- `total_cost` is the sum over the whole history, not over the page;
- a row is the queue row plus `cost`: the model's `cost_per_image` once it succeeded, `"0"`
  when it failed or was cancelled (not billed), null while it is still active;
- the 402 body is the typed error shape with type `insufficient_credits`.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Protocol

import msgspec
from aiohttp import web

from ._faults import Faults
from ._jobs import ACTIVE, Generation
from ._responses import invalid_params, json_response, not_found, typed_error


class Rows(Protocol):
    """The generations of the server's API (`_api.Api`), and how each is shown as a row."""

    generations: dict[str, Generation]
    faults: Faults

    def row(self, gen: Generation) -> dict[str, Any]: ...


__all__ = ["History", "cost_of", "credits_refusal"]

MAX_PAGE_SIZE = 1000  # [spec]
DEFAULT_PAGE_SIZE = 100  # [guess]; no doctor check: oxedit always sends page_size
_QUERY = frozenset({"page", "page_size"})


def cost_of(gen: Generation) -> Decimal | None:
    """What `gen` was billed: its model's per-image price once it succeeded [guess: doctor
    --spend compares the hub's]."""
    if gen.status in ACTIVE:
        return None
    if gen.status != "succeeded":
        return Decimal(0)
    # Read as plain data: the catalogue's Pricing struct may grow or change shape.
    pricing = msgspec.to_builtins(gen.model.pricing)
    price = pricing.get("cost_per_image") if isinstance(pricing, dict) else None
    return Decimal(str(price)) if isinstance(price, int | float) else Decimal(0)


def _total(gens: Iterable[Generation]) -> Decimal:
    return sum((cost_of(g) or Decimal(0) for g in gens), Decimal(0))


def credits_refusal(faults: Faults, created: int, count: int) -> web.Response | None:
    """The 402 for an enqueue of `count` generations once `created` ones exhaust the credits
    `Faults.insufficient_credits_after` allows; None when it fits."""
    limit = faults.insufficient_credits_after
    if limit is None or created + count <= limit:
        return None
    return typed_error(
        402,
        "insufficient_credits",
        title="Insufficient credits",
        detail=f"your balance does not cover {count} more generation(s); add credits",
    )


class History:
    """Handlers of the history routes, over the generations of an `Api`."""

    def __init__(self, api: Rows) -> None:
        self._api = api

    def _row(self, gen: Generation) -> dict[str, Any]:
        cost = cost_of(gen)
        return {**self._api.row(gen), "cost": None if cost is None else str(cost)}

    async def list(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        for key in query:
            if key not in _QUERY:
                raise invalid_params(f"Unknown query parameter '{key}'")
        first = self._api.faults.history_first_page  # 1, or 0 (`Faults.history_first_page`)
        page = _whole(query, "page", first, None, minimum=first) - first
        size = _whole(query, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        gens = [g for g in self._api.generations.values() if g.visible]
        newest_first = gens[::-1]
        rows = [self._row(g) for g in newest_first[page * size : (page + 1) * size]]
        return json_response({"generations": rows, "total_cost": str(_total(gens))})

    async def get(self, request: web.Request) -> web.StreamResponse:
        gen_id = request.match_info["generation_id"]
        gen = self._api.generations.get(gen_id)
        if gen is None:
            raise not_found(f"Generation not found: {gen_id}")
        return json_response({"generation": self._row(gen)})


def _whole(query: Any, name: str, default: int, maximum: int | None, *, minimum: int = 1) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum or (maximum is not None and value > maximum):
        limit = f"between 1 and {maximum}" if maximum is not None else f"at least {minimum}"
        raise invalid_params(f"{name} must be a whole number {limit}, got {raw!r}")
    return value

"""The billing history: `GET /api/ai/generations?page=&page_size=` and
`GET /api/ai/generations/{id}` [spec], as typed calls over `Api`.

The spec gives only this much: rows carry `cost` (a decimal string), the page a `total_cost`,
one row comes wrapped as `{"generation": row}`, and `page_size` is at most 1000. So the reading
is tolerant: the rows may sit under `generations` or `data`, a cost may be a string, a number
or missing (unknown, never zero), and anything else is ignored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote

import msgspec

from .. import _constants as C
from .._exceptions import InvalidRequestError
from .._http.api import Api
from .._models import Generation, GenerationRow, generation_of_row

__all__ = [
    "HistoryEntry",
    "HistoryPage",
    "history_entry",
    "history_page",
    "raw_history_page",
    "to_decimal",
]


class HistoryRow(GenerationRow, frozen=True, kw_only=True):
    """A history row: a queue row plus what it cost."""

    cost: str | float | None = None


_R = TypeVar("_R")


class _Page(msgspec.Struct, Generic[_R], frozen=True, kw_only=True):
    generations: list[_R] | None = None
    data: list[_R] | None = None  # the models list's name for rows, just in case
    total_cost: str | float | None = None


class _Wrapped(msgspec.Struct, frozen=True, kw_only=True):
    generation: HistoryRow


_page_decoder: Final = msgspec.json.Decoder(_Page[HistoryRow])
_raw_page_decoder: Final = msgspec.json.Decoder(_Page[Any])  # rows as echoed, for recovery
_wrapped_decoder: Final = msgspec.json.Decoder(_Wrapped)


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One generation of the billing history and what it cost.

    Attributes:
        generation: The generation (bound to the client: `await entry.generation.save(...)`
            works for a succeeded one).
        cost: What it was billed in USD, or None when the API did not say (not yet billed,
            or no `cost` given): unknown, never zero.

    Example:
        ```python
        entry = await client.history_entry(job.id)
        print(entry.generation.status, entry.cost)
        ```
    """

    generation: Generation
    cost: Decimal | None = None


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of `client.history()`, newest first as the API orders it.

    Attributes:
        generations: The page's entries; fewer than `page_size` means the last page.
        total_cost: The API's `total_cost` in USD, or None when it gave none.
    """

    generations: list[HistoryEntry]
    total_cost: Decimal | None = None


def to_decimal(value: Any) -> Decimal | None:
    """A cost as the API sends it (decimal string or number) as a `Decimal`; None when it is
    missing or not a finite, non-negative amount."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


Bind = Callable[[Generation], Generation]


def _entry(row: HistoryRow, bind: Bind) -> HistoryEntry:
    return HistoryEntry(generation=bind(generation_of_row(row)), cost=to_decimal(row.cost))


def _unbound(generation: Generation) -> Generation:
    return generation


async def history_page(
    api: Api, *, page: int, page_size: int, bind: Bind = _unbound
) -> HistoryPage:
    """One page of the history (`page` from 1, `page_size` 1-1000); `bind` ties each
    generation to the client that can download it."""
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise InvalidRequestError(f"page={page!r} must be a whole number from 1")
    maximum = C.MAX_HISTORY_PAGE_SIZE
    whole = isinstance(page_size, int) and not isinstance(page_size, bool)
    if not whole or not 0 < page_size <= maximum:
        raise InvalidRequestError(
            f"page_size={page_size!r} must be a whole number from 1 to {maximum}"
        )
    rows, total_cost = await _page(api, page, page_size, _page_decoder)
    return HistoryPage(
        generations=[_entry(row, bind) for row in rows], total_cost=to_decimal(total_cost)
    )


async def _page(
    api: Api, page: int, page_size: int, decoder: msgspec.json.Decoder[_Page[_R]]
) -> tuple[list[_R], str | float | None]:
    """One page of `GET /api/ai/generations`: its rows and its `total_cost`."""
    listed = await api.call(
        "GET",
        "/api/ai/generations",
        route="/api/ai/generations",
        # `page` counts from 1 here; the hub's own numbering may start at 0 (`oxedit doctor`).
        params={"page": str(page - 1 + api.history_first_page), "page_size": str(page_size)},
        what="history",
        decoder=decoder,
    )
    rows = listed.generations if listed.generations is not None else listed.data or []
    return rows, listed.total_cost


async def history_entry(api: Api, generation_id: str, *, bind: Bind = _unbound) -> HistoryEntry:
    """One generation's history row; `NotFoundError` when the history does not have it."""
    wrapped = await api.call(
        "GET",
        f"/api/ai/generations/{quote(generation_id, safe='')}",
        route="/api/ai/generations/{id}",
        what=f"history of {generation_id!r}",
        decoder=_wrapped_decoder,
    )
    return _entry(wrapped.generation, bind)


async def raw_history_page(api: Api, *, page: int, page_size: int) -> list[dict[str, Any]]:
    """One page of the history, rows as plain dicts with the request parameters they echo
    (lost-enqueue recovery matches them against a request body)."""
    rows, _ = await _page(api, page, page_size, _raw_page_decoder)
    return [row for row in rows if isinstance(row, dict)]

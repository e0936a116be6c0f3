"""The `Client` methods about money: `estimate` and the billing history.

A mixin only so that `_client.py` stays small; it holds no state and relies on the `Client`
it is mixed into for the open-state check, the API calls and binding results to the client.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from . import _constants as C
from ._bulk.cost import Estimate, estimate, to_amount
from ._bulk.requests import BulkItem
from ._models import bind
from ._resources.history import HistoryEntry, HistoryPage, history_entry, history_page

if TYPE_CHECKING:
    from ._engine.tracker import Tracker
    from ._models import Model

__all__ = ["CostMethods"]


class CostMethods:
    """`Client.estimate`, `Client.history` and `Client.history_entry`."""

    if TYPE_CHECKING:  # provided by `Client`
        _tracker: Tracker

        async def model(self, model_id: str) -> Model: ...

    async def estimate(
        self,
        requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
        *,
        unknown_cost: Decimal | float | str | None = None,
    ) -> Estimate:
        """Check every item as `map` would and price the valid ones from their models'
        pricing; sends nothing (only the models are read).

        Args:
            requests: What `map` would take.
            unknown_cost: USD to assume per generation of a model whose pricing gives no
                exact price (otherwise `Estimate.cost` is None for a batch with one).

        Example:
            ```python
            estimate = await client.estimate(requests)
            print(estimate.items, estimate.generations, estimate.cost, estimate.errors)
            ```
        """
        self._tracker.require_open()
        return await estimate(self, requests, to_amount(unknown_cost, "unknown_cost"))

    async def history(
        self, *, page: int = 1, page_size: int = C.DEFAULT_HISTORY_PAGE_SIZE
    ) -> HistoryPage:
        """One page (from 1; `page_size` up to 1000) of the billing history,
        `GET /api/ai/generations`: generations with what each cost, and the `total_cost`."""
        tracker = self._tracker
        tracker.require_open()
        return await history_page(
            tracker.api, page=page, page_size=page_size, bind=lambda g: bind(g, tracker)
        )

    async def history_entry(self, generation_id: str) -> HistoryEntry:
        """One generation's billing history row (`GET /api/ai/generations/{id}`);
        `NotFoundError` when the history does not have it."""
        tracker = self._tracker
        tracker.require_open()
        return await history_entry(tracker.api, generation_id, bind=lambda g: bind(g, tracker))

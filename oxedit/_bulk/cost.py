"""What a batch costs: estimates from each model's pricing, and the spend a cap is held to.

An item's estimated cost is its generations times its model's `cost_per_image`, for
`per_image` pricing. Any other pricing (`token`, `time`, ...) or a missing price is *unknown*:
never counted as zero. A caller who wants to go ahead anyway names a price per generation to
assume for those (`unknown_cost`, 0 to count them as free); the actual cost, read from the
history endpoint, replaces an estimate once it is known.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from .._exceptions import InvalidRequestError, NotFoundError, OxeditError
from .._models import Model
from .._resources.history import history_entry, to_decimal
from .._resources.inputs import build_payload, check_num_generations
from .requests import BulkItem, EditRequest, check_name, coerce

if TYPE_CHECKING:
    from .._http.api import Api

log = logging.getLogger("oxedit")

__all__ = [
    "Budget",
    "Estimate",
    "ModelEstimate",
    "Prices",
    "Spending",
    "check_request",
    "estimate",
    "money",
    "to_amount",
    "unit_cost",
]


def unit_cost(model: Model) -> Decimal | None:
    """The cost of one generation of `model` in USD, or None when its pricing says nothing
    exact about it (only `per_image` pricing does)."""
    pricing = model.pricing
    if pricing.get("method") != "per_image":
        return None
    return to_decimal(pricing.get("cost_per_image"))


def to_amount(value: Decimal | float | str | None, what: str) -> Decimal | None:
    """A user-given amount in USD (`max_cost`, `unknown_cost`) as a Decimal."""
    if value is None:
        return None
    amount = to_decimal(value)
    if amount is None:
        raise InvalidRequestError(f"{what}={value!r} is not an amount in USD (a number >= 0)")
    return amount


def money(amount: Decimal | None) -> str:
    """`$0.0300` style: enough places for per-image prices; "unknown" for None."""
    return "unknown" if amount is None else f"${amount:,.4f}"


def generations_of(request: EditRequest) -> int:
    return check_num_generations(request.params.get("num_generations", 1))


async def check_request(request: EditRequest) -> dict[str, Any]:
    """Every check a batch makes before sending `request`; its payload (without queue
    parameters). Raises `InvalidRequestError` naming the problem."""
    if request.name is not None:
        check_name(request.name)
    generations_of(request)
    params = {k: v for k, v in request.params.items() if k != "num_generations"}
    return await build_payload(
        prompt=request.prompt, image=request.image, model=request.model, params=params
    )


class ModelSource(Protocol):
    async def model(self, model_id: str) -> Model: ...


class Prices:
    """Models looked up once each, for their pricing (None: the API does not know the id)."""

    def __init__(self, client: ModelSource) -> None:
        self._client = client
        self._models: dict[str, Model | None] = {}
        self._lock = asyncio.Lock()

    async def model(self, model_id: str) -> Model | None:
        if model_id not in self._models:
            async with self._lock:  # one lookup per model, however many items ask at once
                if model_id not in self._models:
                    try:
                        self._models[model_id] = await self._client.model(model_id)
                    except NotFoundError:
                        self._models[model_id] = None
        return self._models[model_id]


@dataclass(frozen=True)
class ModelEstimate:
    """One model's share of an `Estimate`."""

    model: str
    items: int
    generations: int
    method: str | None  # the model's pricing method, as the API names it
    unit_cost: Decimal | None  # per generation; None: unknown

    @property
    def cost(self) -> Decimal | None:
        return None if self.unit_cost is None else self.unit_cost * self.generations


@dataclass(frozen=True)
class Estimate:
    """What a batch would send and cost (see `Client.estimate`).

    Attributes:
        items: Valid items (each one enqueue request).
        generations: Generations they would create.
        models: Per model id: items, generations, price per generation, cost.
        errors: `(index, message)` of every item that would not be sent.
        unknown_cost: The price assumed per generation of a model with unknown pricing.
    """

    items: int
    generations: int
    models: dict[str, ModelEstimate]
    errors: list[tuple[int, str]] = field(default_factory=list)
    unknown_cost: Decimal | None = None

    @property
    def unknown(self) -> list[str]:
        """Models whose pricing gives no exact cost per generation."""
        return sorted(m for m, e in self.models.items() if e.unit_cost is None)

    @property
    def known_cost(self) -> Decimal:
        """The cost of the items whose models have a known price."""
        return sum((e.cost or Decimal(0) for e in self.models.values()), Decimal(0))

    @property
    def cost(self) -> Decimal | None:
        """The estimated total in USD; None when some pricing is unknown and no
        `unknown_cost` was given."""
        unknown = sum(self.models[m].generations for m in self.unknown)
        if unknown and self.unknown_cost is None:
            return None
        return self.known_cost + (self.unknown_cost or Decimal(0)) * unknown


async def estimate(
    client: ModelSource,
    requests: Iterable[BulkItem] | AsyncIterable[BulkItem],
    unknown_cost: Decimal | None,
) -> Estimate:
    """Check every item as a batch would before sending it, and price the valid ones."""
    prices = Prices(client)
    counts: dict[str, list[int]] = {}
    errors: list[tuple[int, str]] = []
    index = 0
    async for item in _each(requests):
        request = coerce(item)
        try:
            if isinstance(request, OxeditError):
                raise request
            await check_request(request)
            if await prices.model(request.model) is None:
                raise InvalidRequestError(
                    f"{request.image}: unknown model {request.model!r}; `oxedit models` lists "
                    "the known ones"
                )
        except OxeditError as exc:
            errors.append((index, str(exc)))
        else:
            tally = counts.setdefault(request.model, [0, 0])
            tally[0] += 1
            tally[1] += generations_of(request)
        index += 1
    models = {}
    for model_id, (items, gens) in counts.items():
        model = await prices.model(model_id)
        assert model is not None
        method = model.pricing.get("method")
        models[model_id] = ModelEstimate(
            model_id, items, gens, method if isinstance(method, str) else None, unit_cost(model)
        )
    return Estimate(
        items=sum(e.items for e in models.values()),
        generations=sum(e.generations for e in models.values()),
        models=models,
        errors=errors,
        unknown_cost=unknown_cost,
    )


async def _each(source: Iterable[BulkItem] | AsyncIterable[BulkItem]) -> Any:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


class Budget:
    """The spend of a batch against its cap, in USD.

    An item is charged its estimate when it is sent; when it ends, `settle` swaps that for what
    it actually cost (0 for a refused enqueue, the history's cost when known). An item is sent
    only if its estimate still fits: the spend never passes the cap by estimate.
    """

    def __init__(self, cap: Decimal, spent: Decimal = Decimal(0)) -> None:
        self.cap = cap
        self.spent = spent

    def fits(self, amount: Decimal) -> bool:
        return self.spent + amount <= self.cap

    def charge(self, amount: Decimal) -> None:
        self.spent += amount

    def settle(self, charged: Decimal, actual: Decimal) -> None:
        self.spent += actual - charged


class Spending:
    """The money side of one `BulkRun`: each item's estimate, the cap it is held to, and
    actual costs read from the history as items end."""

    def __init__(
        self,
        models: ModelSource,
        api: Api,
        *,
        max_cost: Decimal | None,
        unknown_cost: Decimal | None,
    ) -> None:
        self._api = api
        self.prices = Prices(models)
        self.max_cost = max_cost
        self.unknown_cost = unknown_cost
        self.budget: Budget | None = None
        self._history = True  # False once the history proved it does not know our ids

    def start(self, earlier: Decimal) -> None:
        """Begin the run with `earlier` already spent (by earlier runs of its journal)."""
        if self.max_cost is not None:
            self.budget = Budget(self.max_cost, earlier)

    async def estimate(self, request: EditRequest) -> tuple[Decimal | None, bool]:
        """`(estimate, priced)`: the item's estimated cost (None: unknown) and whether that
        is exact from pricing. An item that will not be sent (bad input, unknown model)
        costs 0."""
        try:
            generations = generations_of(request)
        except InvalidRequestError:
            return Decimal(0), True  # refused before sending
        model = await self.prices.model(request.model)  # errors other than 404 propagate
        if model is None:
            return Decimal(0), True
        price = unit_cost(model)
        if price is None:
            return (None if self.unknown_cost is None else self.unknown_cost * generations), False
        return price * generations, True

    async def check_all(self, requests: list[EditRequest]) -> None:
        """Refuse to start (nothing sent) when what would be sent cannot fit the cap."""
        budget = self.budget
        if budget is None:
            return
        total = Decimal(0)
        for request in requests:
            amount, _ = await self.estimate(request)
            if amount is None:
                raise InvalidRequestError(_unknown_pricing(request))
            total += amount
        if not budget.fits(total):
            earlier = (
                f" ({money(budget.spent)} of it spent by earlier runs)" if budget.spent else ""
            )
            raise InvalidRequestError(
                f"the estimated cost {money(budget.spent + total)}{earlier} exceeds max_cost "
                f"{money(budget.cap)}; nothing was sent. Raise the cap (--max-cost) or send "
                "fewer items"
            )

    async def charge(self, index: int, request: EditRequest) -> tuple[Decimal | None, str | None]:
        """Price an item about to be sent and charge it: `(charge, None)` when it may go,
        else `(None, why not)`. Without a cap, pricing that cannot be read is no estimate."""
        try:
            amount, _ = await self.estimate(request)
        except OxeditError as exc:
            if self.budget is None:
                return None, None
            return None, (
                f"item {index} ({request.image}): the pricing of model {request.model!r} could "
                f"not be read ({exc}), so the cap cannot hold it; run again to continue"
            )
        return amount, self.admit(index, request, amount)

    def admit(self, index: int, request: EditRequest, amount: Decimal | None) -> str | None:
        """Charge an item about to be sent; None when it may go, else why it may not."""
        budget = self.budget
        if budget is None:
            return None
        if amount is None:
            return f"item {index} ({request.image}): {_unknown_pricing(request)}"
        if not budget.fits(amount):
            return (
                f"the spend reached the cap: {money(budget.spent)} of max_cost "
                f"{money(budget.cap)} is spent or committed, and item {index} "
                f"({request.image}, {money(amount)}) would pass it; it and the items after it "
                "were not sent. Run again with a higher cap to continue"
            )
        budget.charge(amount)
        return None

    def settle(self, charged: Decimal | None, actual: Decimal | None) -> None:
        """An item ended: what it actually cost replaces its charge (when known)."""
        if self.budget is not None and charged is not None and actual is not None:
            self.budget.settle(charged, actual)

    async def actual(self, generation_ids: list[str]) -> Decimal | None:
        """What the generations cost, from the history; None when it does not say."""
        if not self._history:
            return None
        total = Decimal(0)
        for generation_id in generation_ids:
            try:
                entry = await history_entry(self._api, generation_id)
            except NotFoundError:
                # Ids we enqueued ourselves: the history is not there, or not for them.
                log.info("the history has no row for %s: actual costs not read", generation_id)
                self._history = False
                return None
            except OxeditError as exc:
                log.debug("the cost of %s could not be read: %s", generation_id, exc)
                return None
            if entry.cost is None:
                return None
            total += entry.cost
        return total


def _unknown_pricing(request: EditRequest) -> str:
    return (
        f"model {request.model!r} has no per-image price, so its cost is unknown and the cap "
        "cannot hold it; pass unknown_cost (--unknown-cost USD) to assume a price per "
        "generation (0 counts it as free)"
    )

"""API calls with retries for the requests that are safe to repeat, and the client's counters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ._exceptions import ServerError
from ._models import (
    GenerationRow,
    Model,
    model_decoder,
    model_list_decoder,
    queue_list_decoder,
    raw_rows_decoder,
    row_decoder,
)
from ._retry import Outcome, RetryPolicy, classify, parse_retry_after
from ._transport import ConnectionFailed, Response, Transport, status_error

__all__ = ["Api", "ClientStats"]

log = logging.getLogger("oxedit")


@dataclass
class ClientStats:
    """What a client has done so far; handy in tests and benchmarks.

    Attributes:
        requests: API requests sent, by "METHOD route" (ids replaced by `{id}`).
        enqueue_requests: `POST /api/ai/queue` requests sent, retries included.
        poll_requests: Queue requests made to find out about pending jobs (reconciliation).
        event_connections: `/api/events` connections opened.
        events: `media_generation_completed` events received.
        retries: Requests repeated after 429/5xx or a connection failure.
        lost_responses: Enqueue POSTs whose response was lost (or ambiguous 5xx).
        adopted: Generations found on the server after a lost response, instead of re-sending.
    """

    requests: dict[str, int] = field(default_factory=dict)
    enqueue_requests: int = 0
    poll_requests: int = 0
    event_connections: int = 0
    events: int = 0
    retries: int = 0
    lost_responses: int = 0
    adopted: int = 0

    def count(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1


class Api:
    """Typed calls over the transport. GET and DELETE are retried on 429/5xx/connection loss."""

    def __init__(self, transport: Transport, retry: RetryPolicy, stats: ClientStats) -> None:
        self.transport = transport
        self.retry = retry
        self.stats = stats

    async def call(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: Mapping[str, str] | None = None,
        what: str = "",
    ) -> Response:
        """An idempotent request, retried with backoff; raises `APIStatusError` on errors."""
        attempt = 0
        while True:
            self.stats.count(f"{method} {route}")
            retry_after = None
            try:
                resp = await self.transport.request(method, path, params=params)
            except ConnectionFailed as exc:
                error: Exception = exc
            else:
                if resp.status < 400:
                    return resp
                error = status_error(resp, what=what)
                if classify(method, resp.status) is not Outcome.RETRY:
                    raise error
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            if attempt >= self.retry.max_retries:
                raise error
            self.stats.retries += 1
            log.debug("retrying %s %s after %s", method, route, error)
            await asyncio.sleep(self.retry.delay(attempt, retry_after))
            attempt += 1

    async def get_row(self, generation_id: str) -> GenerationRow:
        resp = await self.call(
            "GET",
            f"/api/ai/queue/{quote(generation_id, safe='')}",
            route="/api/ai/queue/{id}",
            what=f"generation {generation_id!r}",
        )
        return row_decoder.decode(resp.body)

    async def list_rows(self, **filters: str | None) -> list[GenerationRow]:
        params = {k: v for k, v in filters.items() if v is not None}
        resp = await self.call("GET", "/api/ai/queue", route="/api/ai/queue", params=params)
        return queue_list_decoder.decode(resp.body).generations

    async def list_raw(self, **filters: str | None) -> list[dict[str, Any]]:
        """Rows as plain dicts, with the request parameters the API echoes."""
        params = {k: v for k, v in filters.items() if v is not None}
        resp = await self.call("GET", "/api/ai/queue", route="/api/ai/queue", params=params)
        rows = raw_rows_decoder.decode(resp.body).get("generations")
        if not isinstance(rows, list):
            raise ServerError(
                "GET /api/ai/queue answered without a 'generations' list", status_code=resp.status
            )
        return [row for row in rows if isinstance(row, dict)]

    async def delete(self, generation_id: str) -> None:
        await self.call(
            "DELETE",
            f"/api/ai/queue/{quote(generation_id, safe='')}",
            route="/api/ai/queue/{id}",
            what=f"cancel {generation_id!r}",
        )

    async def model(self, model_id: str) -> Model:
        resp = await self.call(
            "GET",
            f"/api/ai/models/{quote(model_id, safe='')}",
            route="/api/ai/models/{id}",
            what=f"model {model_id!r}",
        )
        return model_decoder.decode(resp.body)

    async def models(self) -> list[Model]:
        resp = await self.call("GET", "/api/ai/models", route="/api/ai/models")
        return model_list_decoder.decode(resp.body).data

    async def post(self, path: str, body: bytes, *, route: str) -> Response:
        """One POST, not retried: the caller decides, since a POST may not be repeatable."""
        self.stats.count(f"POST {route}")
        return await self.transport.request("POST", path, body=body)

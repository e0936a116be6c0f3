"""API calls with retries for the requests that are safe to repeat, and the client's counters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import msgspec

from .._config import Timeouts
from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    ClientStateError,
    status_error,
    unexpected_status,
)
from .._models import (
    GenerationRow,
    Model,
    model_decoder,
    model_list_decoder,
    queue_list_decoder,
    raw_list_decoder,
    raw_rows_decoder,
    row_decoder,
)
from .._response import Response, is_success, parse_retry_after
from .retry import RetryPolicy, Verdict, classify, decide
from .transport import Transport

__all__ = ["Api", "ClientStats", "decode"]

_T = TypeVar("_T")

# Answers that list rows (each echoing its request, data-URI inputs included): read up to
# `Limits.max_list_response_bytes` rather than `max_response_bytes`.
_LISTS = frozenset({"/api/ai/queue", "/api/ai/generations", "/api/ai/models"})


def decode(decoder: msgspec.json.Decoder[_T], resp: Response, what: str) -> _T:
    """Decode a success body, or raise `APIResponseValidationError` saying what came instead."""
    try:
        return decoder.decode(resp.body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        kind = resp.headers.get("Content-Type", "no content type")
        start = resp.body[:200].decode("utf-8", "replace")
        raise APIResponseValidationError(
            f"{what}: the API answered HTTP {resp.status} with a body that is not the documented "
            f"JSON ({kind}; {exc}): {start!r}",
            status_code=resp.status,
            body=start,
        ) from None


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
        foreign_events: Those of them about no generation this client follows (the
            account's other processes': every stream carries all of the account's events).
        retries: Requests repeated after 429/5xx or a connection failure.
        lost_responses: Enqueue POSTs whose response was lost (or ambiguous 5xx).
        enqueue_refusals: Enqueue POSTs refused with 429 or 503 (each was retried or raised).
        enqueue_rate: The adaptive pace of enqueues now, per second (None: not paced; it is
            learned from the first refusal, see `Limits.max_rate`).
        adopted: Generations found on the server after a lost response, instead of re-sending.
        late_duplicates_cancelled: Generations a lost POST created after its search window
            closed (the POST had been sent again), cancelled on sight (see
            `ReconcilePolicy.lost_response_window`).
        bytes_sent: Bytes of the API request bodies sent (headers not counted).
        bytes_received: Bytes of the API response bodies received (event stream and result
            downloads not counted).
    """

    requests: dict[str, int] = field(default_factory=dict)
    enqueue_requests: int = 0
    poll_requests: int = 0
    event_connections: int = 0
    events: int = 0
    foreign_events: int = 0
    retries: int = 0
    lost_responses: int = 0
    enqueue_refusals: int = 0
    enqueue_rate: float | None = None
    adopted: int = 0
    late_duplicates_cancelled: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def count(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1


class Api:
    """Typed calls over the transport. GET and DELETE are retried on 429/5xx/connection loss."""

    def __init__(
        self,
        transport: Transport,
        retry: RetryPolicy,
        stats: ClientStats,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.stats = stats
        self.timeouts = timeouts  # None: the transport's (a `with_options` client sets its own)
        # The image field `POST /api/ai/images/edit` takes, learned for this client's life
        # (`_edit`): the docs' `input_image` until the service asks for the spec's `image`.
        self.edit_image_field = "input_image"

    async def call(
        self,
        method: str,
        path: str,
        *,
        route: str,
        params: Mapping[str, str] | None = None,
        what: str = "",
        decoder: msgspec.json.Decoder[_T],
    ) -> _T:
        """An idempotent request, retried with backoff on 429/5xx, a lost connection and a
        malformed success body; returns the decoded body.

        Raises `APIStatusError` on error statuses, `APIResponseValidationError` when the body
        stays malformed, `APIConnectionError` when no response came, `ResponseTooLargeError`
        (at once: the same answer would come again) when the answer is over its cap.
        """
        attempt = 0
        listing = route in _LISTS
        what = what or f"{method} {route}"
        while True:
            self.stats.count(f"{method} {route}")
            retry_after = None
            error: Exception
            try:
                resp = await self.transport.request(
                    method, path, params=params, timeouts=self.timeouts, listing=listing
                )
                self.stats.bytes_received += len(resp.body)
            except ClientStateError:
                raise
            except APIConnectionError as exc:
                error, verdict = exc, classify(method, None, sent=exc.sent)
            else:
                if is_success(resp.status):
                    try:
                        return decode(decoder, resp, what)
                    except APIResponseValidationError as exc:
                        # A proxy's page, say: worth another try of a request safe to repeat.
                        error, verdict = exc, Verdict.RETRY
                elif resp.status < 400:
                    raise unexpected_status(resp, what)
                else:
                    error, verdict = status_error(resp, what=what), classify(method, resp.status)
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
            wait = decide(self.retry, attempt, verdict, retry_after)
            if wait is None:
                raise error
            self.stats.retries += 1
            log.debug("retrying %s %s after %s", method, route, error)
            await asyncio.sleep(wait)
            attempt += 1

    async def get_row(self, generation_id: str) -> GenerationRow:
        return await self.call(
            "GET",
            f"/api/ai/queue/{quote(generation_id, safe='')}",
            route="/api/ai/queue/{id}",
            what=f"generation {generation_id!r}",
            decoder=row_decoder,
        )

    async def list_rows(self, **filters: str | None) -> list[GenerationRow]:
        params = {k: v for k, v in filters.items() if v is not None}
        listed = await self.call(
            "GET", "/api/ai/queue", route="/api/ai/queue", params=params, decoder=queue_list_decoder
        )
        return listed.generations

    async def list_raw(self, **filters: str | None) -> list[dict[str, Any]]:
        """Rows as plain dicts, with the request parameters the API echoes."""
        params = {k: v for k, v in filters.items() if v is not None}
        listed = await self.call(
            "GET", "/api/ai/queue", route="/api/ai/queue", params=params, decoder=raw_list_decoder
        )
        return [row for row in listed.generations if isinstance(row, dict)]

    async def delete(self, generation_id: str) -> None:
        await self.call(
            "DELETE",
            f"/api/ai/queue/{quote(generation_id, safe='')}",
            route="/api/ai/queue/{id}",
            what=f"cancel {generation_id!r}",
            decoder=raw_rows_decoder,
        )

    async def model(self, model_id: str) -> Model:
        return await self.call(
            "GET",
            f"/api/ai/models/{quote(model_id, safe='')}",
            route="/api/ai/models/{id}",
            what=f"model {model_id!r}",
            decoder=model_decoder,
        )

    async def models(self) -> list[Model]:
        listed = await self.call(
            "GET", "/api/ai/models", route="/api/ai/models", decoder=model_list_decoder
        )
        return listed.data

    async def post(self, path: str, body: bytes, *, route: str) -> Response:
        """One POST, not retried: the caller decides, since a POST may not be repeatable."""
        self.stats.count(f"POST {route}")
        self.stats.bytes_sent += len(body)
        resp = await self.transport.request("POST", path, body=body, timeouts=self.timeouts)
        self.stats.bytes_received += len(resp.body)
        return resp

"""API calls with retries for the requests that are safe to repeat, and the client's counters
(`Counters`, owned here; `ClientStats`, the snapshot users read)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Coroutine, Mapping
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
from .retry import Retrying, RetryPolicy, Verdict, classify
from .transport import Transport

__all__ = ["Api", "ClientStats", "Counters", "decode"]

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


@dataclass(frozen=True, slots=True)
class ClientStats:
    """What a client has done so far, as of when it was read (`client.stats`, a snapshot:
    read it again for newer figures); handy in tests and benchmarks.

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


_ENQUEUE = "POST /api/ai/queue"


class Counters:
    """The client's counters, each changed in one place: requests, bytes and retries by `Api`
    alone (a request is counted when it is sent, never before it is admitted), what the engine
    observes through the methods below. Users see `ClientStats` snapshots of them.
    """

    __slots__ = (
        "adopted",
        "bytes_received",
        "bytes_sent",
        "enqueue_rate",
        "enqueue_refusals",
        "event_connections",
        "events",
        "foreign_events",
        "late_duplicates_cancelled",
        "lost_responses",
        "poll_requests",
        "requests",
        "retries",
    )

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.poll_requests = 0
        self.event_connections = 0
        self.events = 0
        self.foreign_events = 0
        self.retries = 0
        self.lost_responses = 0
        self.enqueue_refusals = 0
        self.enqueue_rate: float | None = None
        self.adopted = 0
        self.late_duplicates_cancelled = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    def snapshot(self) -> ClientStats:
        """The figures now, frozen."""
        return ClientStats(
            requests=dict(self.requests),
            # One count of the enqueues, not two kept in step: they are the POSTs to the queue.
            enqueue_requests=self.requests.get(_ENQUEUE, 0),
            poll_requests=self.poll_requests,
            event_connections=self.event_connections,
            events=self.events,
            foreign_events=self.foreign_events,
            retries=self.retries,
            lost_responses=self.lost_responses,
            enqueue_refusals=self.enqueue_refusals,
            enqueue_rate=self.enqueue_rate,
            adopted=self.adopted,
            late_duplicates_cancelled=self.late_duplicates_cancelled,
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
        )

    def count_foreign_events(self, n: int = 1) -> None:
        """`n` events were dropped as another process's (by the registry, once each)."""
        self.foreign_events += n

    def count_request(self, key: str, sent: int = 0) -> None:
        """A request ("METHOD route") with a body of `sent` bytes is being sent (by `Api`)."""
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.bytes_sent += sent

    def count_retry(self, error: BaseException) -> None:
        """A request is about to be repeated after `error` (`Retrying`'s `on_retry`)."""
        self.retries += 1
        log.debug("retrying after %s", error)

    def count_poll(self) -> None:
        """A queue request about pending jobs (reconciliation, a lost response's search)."""
        self.poll_requests += 1

    def count_event_connection(self) -> None:
        self.event_connections += 1

    def count_event(self, n: int = 1) -> None:
        self.events += n

    def count_refusal(self) -> None:
        """An enqueue was refused with 429 or 503."""
        self.enqueue_refusals += 1

    def count_lost_response(self) -> None:
        self.lost_responses += 1

    def count_adopted(self, n: int) -> None:
        """`n` generations found on the server after a lost response."""
        self.adopted += n

    def count_late_duplicate(self) -> None:
        self.late_duplicates_cancelled += 1

    def set_enqueue_rate(self, rate: float | None) -> None:
        self.enqueue_rate = rate


class Api:
    """Typed calls over the transport, and the one place API requests are counted. GET and
    DELETE are retried on 429/5xx/connection loss."""

    def __init__(
        self,
        transport: Transport,
        retry: RetryPolicy,
        stats: Counters,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.transport = transport
        self.retry = retry
        self.stats = stats
        self._count_retry = stats.count_retry  # bound once: each call's loop shares it
        self.timeouts = timeouts  # None: the transport's (a `with_options` client sets its own)
        # The image field `POST /api/ai/images/edit` takes, learned for this client's life
        # (`_edit`): the docs' `input_image` until the service asks for the spec's `image`.
        self.edit_image_field = "input_image"
        # The number of the history's first page: 1 as the spec reads, 0 where `oxedit doctor`
        # found the hub counting from 0 (the CLI sets it from what doctor remembered).
        self.history_first_page = 1

    def derive(self, retry: RetryPolicy, timeouts: Timeouts) -> Api:
        """An `Api` on the same transport and counters with its own retry policy and timeouts
        (`Client.with_options`), knowing what this one learned of the hub."""
        view = copy.copy(self)
        view.retry = retry
        view.timeouts = timeouts
        return view

    def retrying(self, on_retry: Callable[[BaseException], object] | None = None) -> Retrying:
        """The retry loop for one call with this client's policy, each retry counted (and
        `on_retry(error)` called, if given)."""
        count = self._count_retry
        if on_retry is None:
            return Retrying(self.retry, on_retry=count)

        def both(error: BaseException) -> None:
            count(error)
            on_retry(error)

        return Retrying(self.retry, on_retry=both)

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
        listing = route in _LISTS
        what = what or f"{method} {route}"
        key = f"{method} {route}"
        stats = self.stats
        retrying = Retrying(self.retry, on_retry=self._count_retry)
        async for _ in retrying:
            stats.count_request(key)
            try:
                resp = await self.transport.request(
                    method,
                    path,
                    params=params,
                    timeouts=self.timeouts,
                    listing=listing,
                    counts=stats,
                )
            except ClientStateError:
                raise
            except APIConnectionError as exc:
                retrying.failed(exc, classify(method, None, sent=exc.sent))
                continue
            if is_success(resp.status):
                try:
                    return decode(decoder, resp, what)
                except APIResponseValidationError as exc:
                    # A proxy's page, say: worth another try of a request safe to repeat.
                    retrying.failed(exc, Verdict.RETRY)
            elif resp.status < 400:
                raise unexpected_status(resp, what)
            else:
                retrying.failed(
                    status_error(resp, what=what),
                    classify(method, resp.status),
                    parse_retry_after(resp.headers.get("Retry-After")),
                )
        raise AssertionError("unreachable: the loop returns or raises")

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

    def send(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        route: str,
        content_type: str = "application/json",
        slot_held: bool = False,
    ) -> Coroutine[Any, Any, Response]:
        """One request with a body, not retried: the caller decides, since a POST may not be
        repeatable. With `slot_held`, the caller holds a connection slot of the transport
        already (`Transport.slots`: the enqueue takes one before it decides to send).

        Counted now, and not a coroutine itself: it returns the transport's, one coroutine
        fewer alive for each request in flight (each enqueue's start keeps what it makes
        until the answer, and a burst of starts is what runs young collections)."""
        stats = self.stats
        stats.count_request(f"{method} {route}", len(body))
        send = self.transport.send if slot_held else self.transport.request
        return send(
            method, path, body=body, content_type=content_type, timeouts=self.timeouts, counts=stats
        )

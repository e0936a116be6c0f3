"""Counters the local server keeps, so tests can assert on what a client actually did."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ServerStats"]


@dataclass(kw_only=True)
class ServerStats:
    """What the server saw. Read freely; the server only ever increments.

    Example:
        ```python
        assert server.stats.requests_by_route["POST /api/ai/queue"] == 1
        assert server.stats.file_requests_with_auth == 0  # the key never left the API host
        ```

    Attributes:
        requests_by_route: Requests per route, keyed like `"POST /api/ai/queue"` or
            `"GET /api/ai/queue/{generation_id}"` (unmatched paths appear as sent).
        generations_created_per_request: For each enqueue that created generations, how many.
        generations_created: Generations created by `POST /api/ai/queue`, in total.
        events_sent: Events written to streams, over all streams (a duplicate counts twice,
            one event written to three streams counts three times).
        event_connections: Event streams ever opened.
        open_event_streams: Event streams open now.
        file_requests: Requests to the result-file host.
        file_requests_with_auth: Requests to the result-file host that carried an
            `Authorization` header (should stay 0: the API key must never go there).
        streams_refused: `GET /api/events` refused by `Faults.refuse_streams`.
        silent_cancels: Generations cancelled by `Faults.silent_cancel_rate`.
        rate_limited: Enqueues answered 429 by `Faults.enqueue_rate_limit`'s bucket.
        generations_resumed: Generations an earlier run of a server with a state folder left
            queued or processing, queued again by this one.
        response_bytes_by_route: Bytes of `/api` answer bodies per route, keyed like
            `requests_by_route` (streamed answers, the event stream, are not counted).
        repos_created: Repositories created by `POST /api/repos`.
        files_uploaded: Files stored by `PUT /api/repos/.../file/...`.
    """

    requests_by_route: Counter[str] = field(default_factory=Counter)
    generations_created_per_request: list[int] = field(default_factory=list)
    generations_created: int = 0
    events_sent: int = 0
    event_connections: int = 0
    open_event_streams: int = 0
    file_requests: int = 0
    file_requests_with_auth: int = 0
    streams_refused: int = 0
    silent_cancels: int = 0
    generations_resumed: int = 0
    rate_limited: int = 0
    response_bytes_by_route: Counter[str] = field(default_factory=Counter)
    repos_created: int = 0
    files_uploaded: int = 0

"""Fault injection settings for the local server.

Every fault is off by default, so a plain `LocalServer()` behaves like a healthy Oxen API.
Tests switch faults on, at construction or at runtime on a running server (the server reads
the fields each time it decides), and every random decision comes from one
`random.Random(seed)`, so a failing run can be replayed with the same seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

__all__ = ["Duration", "Faults"]

#: A duration in seconds: a fixed value, a `(low, high)` range drawn uniformly, or a function
#: of the fault RNG (for any other distribution).
Duration: TypeAlias = float | tuple[float, float] | Callable[[random.Random], float]

_RATE_FIELDS = frozenset(
    {
        "failure_rate",
        "enqueue_429_rate",
        "enqueue_5xx_rate",
        "drop_event_rate",
        "duplicate_event_rate",
        "event_before_response_rate",
        "lost_response_rate",
        "unrelated_event_rate",
        "get_error_rate",
        "get_html_rate",
        "get_redirect_rate",
        "enqueue_bad_body_rate",
        "silent_cancel_rate",
    }
)
# Non-negative whole numbers (bytes or counts); 0 switches the fault off.
_COUNT_FIELDS = frozenset(
    {
        "refuse_streams",
        "oversized_event_bytes",
        "result_gzip_bomb",
        "fail_uploads",
        "refuse_enqueues",
        "refuse_models",
    }
)

#: What `enqueue_bad_body` may name: the broken bodies a 200 enqueue answer can carry.
BAD_ENQUEUE_BODIES = ("html", "empty_object", "empty_generations", "extra_ids")

#: What `edit_field` may name: the edit endpoint's image field in the docs, and in the spec.
EDIT_FIELDS = ("input_image", "image")

# Realistic texts for injected failures: what a GPU backend says, not "injected fault".
FAILURE_MESSAGES = (
    "Inference backend error: CUDA out of memory",
    "Generation timed out after 300 seconds",
    "Upstream provider returned an error: 502 Bad Gateway",
    "Content moderation: output image flagged as unsafe",
)


@dataclass(kw_only=True)
class Faults:
    """What can go wrong, and how often. All off by default.

    Rates are probabilities in [0, 1], rolled once per decision (per request, job or event).
    Fields may be changed while the server runs; assigning `seed` re-seeds the RNG.

    Example:
        ```python
        faults = Faults(seed=7, failure_rate=0.1, latency=(0.01, 0.05))
        async with LocalServer(faults=faults) as server:
            server.faults.stall_streams = True  # takes effect on open streams
        ```

    Attributes:
        seed: Seed of the RNG behind every random decision.
        latency: Time a job spends `processing` before its edit runs.
        failure_rate: Chance that a job fails with a realistic backend error.
        enqueue_429_rate: Chance that `POST /api/ai/queue` answers 429 (nothing created).
        retry_after: `Retry-After` header (seconds) sent with those 429s; None sends none.
        enqueue_5xx_rate: Chance that `POST /api/ai/queue` answers 503 (nothing created).
        cut_stream_after_events: Close each event stream cleanly after it sent this many
            events (None: never).
        drop_event_rate: Chance that a completion event is never sent.
        duplicate_event_rate: Chance that a completion event is sent twice.
        delay_event: Delay between a job finishing and its event being sent.
        event_before_response_rate: Chance that the enqueue response is held back until the
            created generations finished and their events were written to every stream.
        lost_response_rate: Chance that the generations are created, then the connection is
            cut instead of answering.
        commit_delay: When set, an enqueue picked by `lost_response_rate` is cut first and
            committed later: the connection is closed at once (a load balancer giving up) and
            the generations are created this long after it (the backend going on), so a
            client that searches the queue sooner finds nothing. Drawn per enqueue.
        keepalive_interval: Seconds of silence after which a stream sends `: keep-alive`.
        stall_streams: While true, open streams write nothing at all, keep-alives included
            (a dead but open connection); events meant for them are lost.
        unrelated_event_rate: Chance, per completion event, to also send a `repo_updated`
            event that clients must ignore.
        url_ttl: Lifetime in seconds of presigned result URLs.
        stamp_events: Add a float `completed_at` (Unix time of completion) to each event, for
            benchmarks. Not in the documented event shape, hence off by default.
        get_error_rate: Chance that `GET /api/ai/queue` or `GET /api/ai/queue/{id}` answers 500
            `unknown_error` instead.
        get_html_rate: Chance that such a GET answers 200 with an HTML page (`text/html`), as
            a misconfigured proxy or a login page does.
        get_redirect_rate: Chance that such a GET answers 302 with `Location: /login`.
        enqueue_bad_body_rate: Chance that `POST /api/ai/queue` creates (and runs) the
            generations as usual but answers 200 with the broken body `enqueue_bad_body`.
        enqueue_bad_body: Which broken body: `"html"` (an HTML page), `"empty_object"` (`{}`),
            `"empty_generations"` (`{"generations": []}`) or `"extra_ids"` (the real entries
            plus one with a made-up id that exists nowhere).
        silent_cancel_rate: Chance, per generation, that someone else cancels it halfway
            through its latency: the row becomes `cancelled` and, as the docs say of
            cancellations, no event is sent.
        stream_close_at_once: While true, `GET /api/events` answers 200 with the SSE headers,
            then ends the response cleanly without writing anything.
        refuse_streams: The next this-many `GET /api/events` are refused with
            `refuse_stream_status` and a typed error body; each refusal decrements it.
        refuse_stream_status: Status of those refusals (401 `unauthenticated`, 403 `forbidden`,
            404 `resource_not_found`, 5xx `unknown_error`, other 4xx `invalid_params`).
        drip_interval: When set, the bodies of the queue routes' answers (`POST` and both
            `GET`s) are written a few bytes at a time, one piece every this-many seconds, with
            a correct `Content-Length` (headers go out at once).
        oversized_event_bytes: When > 0, each new event stream first sends one
            `media_generation_completed` event whose `data:` value is this many bytes long.
        result_body: When set, every valid result download answers 200 with these bytes,
            under the result's image `Content-Type` (so only a client that checks the bytes
            notices).
        success_status: The status of every `/api` answer that would be 200 (the spec's
            status; an API may answer 201 or 202 as well, and a client must take any 2xx).
        enqueue_rate_limit: The account's enqueue limit, per second, as a token bucket: an
            enqueue without a token is answered 429 (with `retry_after`), creating nothing.
        enqueue_burst: That bucket's size (default: one second's worth of `enqueue_rate_limit`).
        result_gzip_bomb: When > 0, every valid result download answers 200 with
            `Content-Encoding: gzip` and a body that inflates to this many zero bytes.
        insufficient_credits_after: When set, the credits run out after this many
            generations: an enqueue that would create more is refused with 402
            `insufficient_credits` (nothing created).
        edit_field: The image field `POST /api/ai/images/edit` takes: `"input_image"`, as the
            docs send it, or `"image"`, as the spec's `ImageEditRequest` requires it (then a
            body without it is answered 400 `invalid_params` "image is required").
        fail_uploads: The next this-many file uploads (`PUT /api/repos/.../file/...`) are
            answered 503, storing nothing; each refusal decrements it.
        refuse_enqueues: The next this-many `POST /api/ai/queue` are answered 429 (with
            `retry_after`), creating nothing; each refusal decrements it.
        refuse_models: The next this-many `GET /api/ai/models/{id}` are answered 503 (a
            service briefly unavailable); each refusal decrements it.
        history_first_page: The number of the history's first page (`GET
            /api/ai/generations?page=`): 1, as oxedit reads the spec, or 0.
        send_keepalives: False: event streams never send `: keep-alive` comments, however
            long they are idle (events still go out).
    """

    seed: int = 0
    latency: Duration = 0.0
    failure_rate: float = 0.0
    enqueue_429_rate: float = 0.0
    retry_after: int | None = 1
    enqueue_5xx_rate: float = 0.0
    cut_stream_after_events: int | None = None
    drop_event_rate: float = 0.0
    duplicate_event_rate: float = 0.0
    delay_event: Duration = 0.0
    event_before_response_rate: float = 0.0
    lost_response_rate: float = 0.0
    commit_delay: Duration | None = None
    keepalive_interval: float = 15.0
    stall_streams: bool = False
    unrelated_event_rate: float = 0.0
    url_ttl: float = 3600.0
    stamp_events: bool = False
    get_error_rate: float = 0.0
    get_html_rate: float = 0.0
    get_redirect_rate: float = 0.0
    enqueue_bad_body_rate: float = 0.0
    enqueue_bad_body: str = "html"
    silent_cancel_rate: float = 0.0
    stream_close_at_once: bool = False
    refuse_streams: int = 0
    refuse_stream_status: int = 401
    drip_interval: float | None = None
    oversized_event_bytes: int = 0
    result_body: bytes | None = None
    result_gzip_bomb: int = 0
    success_status: int = 200
    enqueue_rate_limit: float | None = None
    enqueue_burst: int | None = None
    insufficient_credits_after: int | None = None
    edit_field: str = "input_image"
    fail_uploads: int = 0
    refuse_enqueues: int = 0
    refuse_models: int = 0
    history_first_page: int = 1
    send_keepalives: bool = True
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        # Checked on every assignment, not only in __init__, because tests flip faults on a
        # running server and a typo'd rate of 5 should fail there, loudly.
        if name in _RATE_FIELDS and not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
            raise ValueError(f"Faults.{name} must be a probability in [0, 1], got {value!r}")
        if name in ("latency", "delay_event") or (name == "commit_delay" and value is not None):
            _check_duration(name, value)
        if name == "keepalive_interval" and not value > 0:
            raise ValueError(f"Faults.keepalive_interval must be > 0, got {value!r}")
        if (
            name == "retry_after"
            and value is not None
            and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
        ):
            # The header's delta-seconds is a non-negative integer (RFC 9110).
            raise ValueError(f"Faults.retry_after must be whole seconds >= 0, got {value!r}")
        if (
            name in ("enqueue_rate_limit", "enqueue_burst")
            and value is not None
            and (isinstance(value, bool) or not (isinstance(value, int | float) and value > 0))
        ):
            raise ValueError(f"Faults.{name} must be a positive number or None, got {value!r}")
        if name == "success_status" and not (
            isinstance(value, int) and not isinstance(value, bool) and 200 <= value < 300
        ):
            raise ValueError(f"Faults.success_status must be a 2xx status, got {value!r}")
        if name == "cut_stream_after_events" and value is not None and value < 1:
            raise ValueError(f"Faults.cut_stream_after_events must be >= 1, got {value!r}")
        _check_new_field(name, value)
        object.__setattr__(self, name, value)
        if name == "seed":
            object.__setattr__(self, "rng", random.Random(value))

    def roll(self, rate: float) -> bool:
        """True with probability `rate`. Draws nothing when the rate is 0, so switching one
        fault on does not shift the random sequence of a replayed run."""
        return rate > 0.0 and (rate >= 1.0 or self.rng.random() < rate)

    def draw(self, duration: Duration) -> float:
        """A duration in seconds drawn from a `Duration` spec (never negative)."""
        if callable(duration):
            value = float(duration(self.rng))
        elif isinstance(duration, tuple):
            low, high = duration
            value = low if low == high else self.rng.uniform(low, high)
        else:
            value = float(duration)
        return value if value > 0.0 and math.isfinite(value) else 0.0

    def choice(self, options: tuple[str, ...]) -> str:
        """One of `options`, from the fault RNG."""
        return options[self.rng.randrange(len(options))]


def _check_duration(name: str, value: object) -> None:
    if callable(value):
        return
    if isinstance(value, tuple):
        if (
            len(value) == 2
            and all(isinstance(v, int | float) for v in value)
            and 0 <= value[0] <= value[1]
        ):
            return
    elif isinstance(value, int | float) and value >= 0:
        return
    raise ValueError(
        f"Faults.{name} must be seconds >= 0, a (low, high) range or a callable, got {value!r}"
    )


def _check_new_field(name: str, value: object) -> None:
    """Validation of the liveness and download faults (see the `Faults` docstring)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    if name in _COUNT_FIELDS and not (whole and isinstance(value, int) and value >= 0):
        raise ValueError(f"Faults.{name} must be a whole number >= 0, got {value!r}")
    if name == "enqueue_bad_body" and value not in BAD_ENQUEUE_BODIES:
        raise ValueError(
            f"Faults.enqueue_bad_body must be one of {', '.join(BAD_ENQUEUE_BODIES)}, got {value!r}"
        )
    if name == "refuse_stream_status" and not (
        whole and isinstance(value, int) and 400 <= value <= 599
    ):
        raise ValueError(f"Faults.refuse_stream_status must be a status in 400-599, got {value!r}")
    if (
        name == "drip_interval"
        and value is not None
        and not (isinstance(value, int | float) and 0 <= value < math.inf)
    ):
        raise ValueError(f"Faults.drip_interval must be None or seconds >= 0, got {value!r}")
    if name == "edit_field" and value not in EDIT_FIELDS:
        raise ValueError(
            f"Faults.edit_field must be one of {', '.join(EDIT_FIELDS)}, got {value!r}"
        )
    if name == "history_first_page" and value not in (0, 1):
        raise ValueError(f"Faults.history_first_page must be 0 or 1, got {value!r}")
    if name == "result_body" and value is not None and not isinstance(value, bytes):
        raise ValueError(f"Faults.result_body must be None or bytes, got {value!r}")
    if (
        name == "insufficient_credits_after"
        and value is not None
        and not (whole and isinstance(value, int) and value >= 0)
    ):
        raise ValueError(
            f"Faults.insufficient_credits_after must be None or a count >= 0, got {value!r}"
        )

"""The exceptions oxedit raises.

```
OxeditError
├── ConfigurationError            no API key, bad base URL
├── InvalidRequestError           bad input caught before anything was sent (also a ValueError)
├── ClientStateError              the client used outside `async with`, or closed meanwhile
├── TransportError                the connection failed or a read timed out
│   └── AmbiguousRequestError     a POST was sent but its response was lost
├── APIStatusError                the API answered with an error status
│   ├── BadRequestError           400
│   │   └── ModelNotFoundError    400 or 404 "Model not found: X" (also a NotFoundError and
│   │                             an InvalidRequestError, like the check before sending)
│   ├── AuthenticationError       401
│   ├── InsufficientCreditsError  402, or an error body typed `insufficient_credits`
│   ├── PermissionDeniedError     403
│   ├── NotFoundError             404
│   ├── RateLimitError            429
│   └── ServerError               5xx
├── APIResponseValidationError    a 2xx answer whose body is not what the API documents
├── GenerationError               a generation ended without a result
│   ├── GenerationFailed          the generation failed (server's error text)
│   ├── GenerationCancelled       the generation was cancelled
│   └── GenerationExpired         the API no longer knows the generation (404 on its row)
├── JobTimeout                    `job.wait(timeout=...)` expired (also a TimeoutError)
├── JobPendingError               `job.result()` before the job finished
└── DownloadError                 the result file could not be downloaded
```
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = [
    "APIResponseValidationError",
    "APIStatusError",
    "AmbiguousRequestError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStateError",
    "ConfigurationError",
    "DownloadError",
    "GenerationCancelled",
    "GenerationError",
    "GenerationExpired",
    "GenerationFailed",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "JobPendingError",
    "JobTimeout",
    "ModelNotFoundError",
    "NotFoundError",
    "OxeditError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
]


class OxeditError(Exception):
    """Root of every exception oxedit raises."""


class ConfigurationError(OxeditError):
    """The client is not configured well enough to talk to the API."""


class InvalidRequestError(OxeditError, ValueError):
    """A request was rejected before anything was sent (or, as `ModelNotFoundError`, refused
    by the API for its input, creating nothing)."""


class ClientStateError(OxeditError, RuntimeError):
    """The client was used outside its `async with` block, or closed while a call ran.

    Attributes:
        generation_ids: Generations that a call racing `aclose()` created before it could
            follow them (empty when none was created): they may still run, and bill, remotely.
    """

    def __init__(self, message: str, *, generation_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.generation_ids = generation_ids


class TransportError(OxeditError):
    """The request could not be completed at the connection level."""


class AmbiguousRequestError(TransportError):
    """A request was sent, but its response was lost: the server may have acted on it."""


class APIStatusError(OxeditError):
    """The API answered with an error status.

    Attributes:
        status_code: The HTTP status.
        body: The decoded error body (a dict), or the raw text when it was not JSON.
        message: The server's own message, as best it can be extracted.
    """

    def __init__(self, message: str, *, status_code: int, body: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body


class BadRequestError(APIStatusError):
    """400: the API rejected the parameters."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, wrong or revoked."""


class InsufficientCreditsError(APIStatusError):
    """402, or an error body typed `insufficient_credits`: the account cannot pay for more
    generations. `message` is the server's text; add credits, then run again."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: unknown model or generation id."""


class ModelNotFoundError(BadRequestError, NotFoundError, InvalidRequestError):
    """The API refused a request because its model does not exist (`.model`).

    The spec answers 400 for an unknown model on enqueue, earlier services 404; both carry
    `{"error": {"message": "Model not found: X"}}`. It is all three of `BadRequestError`,
    `NotFoundError` and `InvalidRequestError`, so that it is caught like either status and
    like the check oxedit makes before sending when the models endpoint knows the model is
    missing. Nothing was created.
    """

    def __init__(self, message: str, *, status_code: int, body: Any = None, model: str) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.model = model


class RateLimitError(APIStatusError):
    """429: too many requests, even after oxedit's retries."""

    def __init__(
        self, message: str, *, status_code: int, body: Any = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the API failed, even after oxedit's retries."""


class APIResponseValidationError(OxeditError):
    """The API answered with a success status but a body that is not the documented shape
    (an HTML page from a proxy, `{}`, the wrong number of ids).

    Attributes:
        status_code: The HTTP status.
        body: The start of the body, as text.
    """

    def __init__(self, message: str, *, status_code: int, body: str = "") -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class GenerationError(OxeditError):
    """A generation ended without a result."""

    def __init__(self, message: str, *, generation_id: str) -> None:
        super().__init__(message)
        self.generation_id = generation_id


class GenerationFailed(GenerationError):
    """The generation failed; `error` is the server's text."""

    def __init__(self, generation_id: str, error: str | None) -> None:
        self.error = error or "no error message given"
        super().__init__(
            f"generation {generation_id} failed: {self.error}", generation_id=generation_id
        )


class GenerationCancelled(GenerationError):
    """The generation was cancelled (by this client or elsewhere)."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(f"generation {generation_id} was cancelled", generation_id=generation_id)


class GenerationExpired(GenerationError):
    """The API answered 404 for a generation this client enqueued (rows used to expire)."""

    def __init__(self, generation_id: str) -> None:
        super().__init__(
            f"generation {generation_id} is no longer known to the API (404); "
            "its result, if any, cannot be recovered",
            generation_id=generation_id,
        )


class JobTimeout(OxeditError, TimeoutError):
    """A job's deadline expired before the generation finished."""

    def __init__(self, generation_id: str, timeout: float, *, cancelled: bool) -> None:
        what = "and it was cancelled remotely" if cancelled else "it is still running remotely"
        super().__init__(f"generation {generation_id} did not finish within {timeout:g} s; {what}")
        self.generation_id = generation_id
        self.timeout = timeout
        self.cancelled = cancelled


class JobPendingError(OxeditError, asyncio.InvalidStateError):
    """`job.result()` was called before the job finished; await it first."""


class DownloadError(OxeditError):
    """The result file could not be downloaded."""

    def __init__(self, message: str, *, generation_id: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.generation_id = generation_id
        self.status_code = status_code

"""The exceptions oxedit raises, and the one place an HTTP error answer becomes one
(`status_error`, like openai's `_make_status_error`).

```
OxeditError
├── ConfigurationError            no API key, bad base URL
├── InvalidRequestError           bad input caught before anything was sent (also a ValueError)
├── ClientStateError              the client used outside `async with`, or closed meanwhile
├── TransportError                no answer came, or it could not be read
│   ├── APIConnectionError        the connection failed or was lost (refused, reset, DNS)
│   │   └── APITimeoutError       a connect or read timed out, or `Timeouts.total` passed
│   ├── AmbiguousRequestError     a POST was sent but its response was lost
│   └── ResponseTooLargeError     an answer larger than `Limits` allow (a gzip bomb); not read
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
import re
from typing import Any

import msgspec

from ._response import Response, parse_retry_after

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
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
    "ResponseTooLargeError",
    "ServerError",
    "TransportError",
    "status_error",
    "unexpected_status",
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


class APIConnectionError(TransportError):
    """No answer came (raised once the retries of what is safe to repeat ran out).

    Attributes:
        sent: False only when the connection could not even be opened, so the request surely
            never reached the server.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """A connect or read timed out (`Timeouts.connect`, `Timeouts.read`), or an answer took
    longer than `Timeouts.total` to arrive in full."""


class AmbiguousRequestError(TransportError):
    """A request was sent, but its response was lost: the server may have acted on it."""


class ResponseTooLargeError(TransportError):
    """An answer grew past its cap (`Limits.max_response_bytes`, or for lists
    `max_list_response_bytes`) once decompressed: it was not read further, and the request is
    not retried (the same answer would come again). Result downloads raise `DownloadError`.

    Attributes:
        limit: The cap, in bytes, that the answer passed.
    """

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class APIStatusError(OxeditError):
    """The API answered with an error status.

    `str(error)` says what was asked, what the server said and the status; `message` is the
    server's text alone.

    Attributes:
        status_code: The HTTP status.
        body: The decoded error body (a dict), or the raw text when it was not JSON.
        message: The server's own message, as best it can be extracted from the body (the
            whole description when the server sent none).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message if server_message is None else server_message
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

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        server_message: str | None = None,
        model: str,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, server_message=server_message)
        self.model = model


class RateLimitError(APIStatusError):
    """429: too many requests, even after oxedit's retries."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        server_message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, server_message=server_message)
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


# -- HTTP error answers -> exceptions ------------------------------------------------------------

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: InsufficientCreditsError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}

# "Model not found: X", the docs' body for an unknown model [doc]; the name is what follows.
_MODEL_NOT_FOUND = re.compile(r"model not found:\s*['\"`]?([^\s'\"`,;]+)", re.IGNORECASE)

_body_decoder = msgspec.json.Decoder(dict[str, Any])
_MAX_TEXT = 500  # of a body that is not JSON, kept on the exception


def _text(value: Any) -> str:
    """A `detail` value as text: FastAPI-style lists of `{"msg": ...}` joined, else as is."""
    if isinstance(value, list):
        parts = [str(v.get("msg", v)) if isinstance(v, dict) else str(v) for v in value]
        return "; ".join(p for p in parts if p)
    return "" if value is None else str(value)


def _server_message(body: Any) -> str:
    """The server's text, or "": `{"error": {"message"}}` or `{"error": {"type", "title",
    "detail"}}` (the docs), `{"error": "..."}`, `{"detail": ...}`, `{"message": ...}`, text."""
    if isinstance(body, str):
        return body.strip()
    if not isinstance(body, dict):
        return ""
    error = body.get("error")
    if isinstance(error, dict):
        parts = [_text(error.get(k)) for k in ("message", "title", "detail")]
        text = ": ".join(p for p in parts if p)
        if text:
            return text
        if error.get("type"):
            return str(error["type"])
    elif isinstance(error, str) and error:
        return error
    for key in ("detail", "message"):
        text = _text(body.get(key))
        if text:
            return text
    return ""


def status_error(resp: Response, *, what: str = "") -> APIStatusError:
    """The exception for an error answer: its class from the status (and the body's error
    type), `.body` decoded, `.message` the server's text, and `str()` saying `what` was asked.
    """
    body: Any
    try:
        body = _body_decoder.decode(resp.body) if resp.body else None
    except msgspec.DecodeError:  # not a JSON object: a proxy's page, plain text
        body = resp.body.decode("utf-8", "replace")[:_MAX_TEXT]
    said = _server_message(body) or f"HTTP {resp.status}"
    message = f"{what}: {said}" if what else said
    message = f"{message} (HTTP {resp.status})"
    if resp.status == 429:
        return RateLimitError(
            message,
            status_code=429,
            body=body,
            server_message=said,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )
    unknown = _MODEL_NOT_FOUND.search(said) if resp.status in (400, 404) else None
    if unknown is not None:
        # The spec answers an unknown model with 400, older services with 404: the same error
        # either way, worded like the check made before sending.
        model = unknown.group(1).rstrip(".")  # a sentence's full stop is not part of the id
        return ModelNotFoundError(
            f"{message}; model {model!r} does not exist: see client.models() "
            "(or `oxedit models`) for the model ids",
            status_code=resp.status,
            body=body,
            server_message=said,
            model=model,
        )
    cls = _STATUS_ERRORS.get(resp.status) or (ServerError if resp.status >= 500 else APIStatusError)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("type") == "insufficient_credits":  # any status
        cls = InsufficientCreditsError
    return cls(message, status_code=resp.status, body=body, server_message=said)


def unexpected_status(resp: Response, what: str) -> APIStatusError:
    """A status that is neither success nor an error (a redirect to a login page, say)."""
    where = resp.headers.get("Location")
    return APIStatusError(
        f"{what}: unexpected HTTP {resp.status}"
        + (f" (redirect to {where!r})" if where else "")
        + "; is the base URL the API's?",
        status_code=resp.status,
        body=resp.body[:200].decode("utf-8", "replace"),
    )

"""The one module that imports the HTTP library (aiohttp) and translates its exceptions.

Three sessions, each with one job:
- the API session: short JSON requests to the configured host, at most `max_connections` in
  flight (the rest wait in FIFO order on a semaphore, holding no socket; aiohttp stays flat
  with 10,000 waiting, where httpx's pool collapses);
- the stream session: the one long-lived `GET /api/events`, so it never waits behind requests;
- the download session: result files, which may live on another host, so it carries no
  credentials; the key is added per hop only when a hop goes to the API host itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, NamedTuple, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp

from ._config import Limits, Timeouts
from ._exceptions import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ClientStateError,
    InsufficientCreditsError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from ._models import raw_rows_decoder
from ._retry import parse_retry_after

__all__ = [
    "ConnectionFailed",
    "Gate",
    "NotAdmitted",
    "Response",
    "ResponseTooLarge",
    "Transport",
    "is_success",
    "status_error",
]

_MAX_REDIRECTS = 5


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


class ConnectionFailed(TransportError):
    """No response. `sent` is False only when the connection could not even be opened."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class NotAdmitted(Exception):
    """A paced request found the pace changed while it waited for a connection: it was not
    sent and must queue again (never reaches a caller)."""


class Gate(Protocol):
    ticket: int


class ResponseTooLarge(TransportError):
    """A download went past `Limits.max_download_bytes`; retrying cannot help."""


def is_success(status: int) -> bool:
    """The docs' examples answer 200; the spec allows any 2xx."""
    return 200 <= status < 300


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.scheme, parts.hostname, port)


def _translate(exc: BaseException, what: str) -> ConnectionFailed:
    # Connect failures (refused, DNS, connect timeout) mean nothing reached the server; any
    # other failure may come after the request was written.
    not_sent = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    reason = str(exc) or type(exc).__name__
    return ConnectionFailed(f"{what} failed: {reason}", sent=not not_sent)


class Transport:
    def __init__(self, *, base_url: str, api_key: str, timeouts: Timeouts, limits: Limits) -> None:
        self.base_url = base_url
        self._origin = _origin(base_url)
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._timeouts = timeouts
        self._limits = limits
        # Requests beyond the bound wait here, before any request object exists: measured
        # cheaper in CPU and memory than queueing in aiohttp's connector with 10,000 waiting
        # (`python -m benchmarks.end_to_end`, strategies raw vs raw-connector).
        self._slots = asyncio.Semaphore(limits.max_connections)
        self._closing = False
        # Answers being read, by key: (loop time of their deadline, the response). One
        # watchdog enforces `Timeouts.total` for all of them: a timer per request (aiohttp's
        # `total`) measured 7% of the client's CPU at 10,000 jobs.
        self._reading: dict[int, tuple[float, aiohttp.ClientResponse]] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._api: aiohttp.ClientSession | None = None
        self._stream: aiohttp.ClientSession | None = None
        self._files: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        from ._version import __version__

        headers = {"User-Agent": f"oxedit/{__version__}"}
        # `connect=None`: waiting for a free connection is not a timeout, only the socket
        # connect is (else 10,000 queued submits would time out in the pool).
        self._api = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limits.max_connections, limit_per_host=0),
            timeout=aiohttp.ClientTimeout(
                total=None,  # `Timeouts.total` is enforced by `_enforce_deadlines`
                connect=None,
                sock_connect=self._timeouts.connect,
                sock_read=self._timeouts.read,
            ),
            headers={**headers, **self._auth},
            auto_decompress=True,
        )
        self._stream = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2),
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self._timeouts.connect,
                sock_read=self._timeouts.stream_idle,
            ),
            headers={**headers, **self._auth, "Accept": "text/event-stream"},
        )
        self._files = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limits.max_downloads),
            timeout=aiohttp.ClientTimeout(
                total=self._timeouts.download,
                connect=None,
                sock_connect=self._timeouts.connect,
                sock_read=self._timeouts.read,
            ),
            headers=headers,
        )
        self._watchdog = asyncio.create_task(self._enforce_deadlines(), name="oxedit-deadlines")

    async def _enforce_deadlines(self) -> None:
        """Abort answers still being read after `Timeouts.total` (a server dribbling a byte
        now and then never trips the read timeout)."""
        loop = asyncio.get_running_loop()
        tick = min(1.0, self._timeouts.total / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for key, (deadline, resp) in list(self._reading.items()):
                if deadline <= now:
                    del self._reading[key]
                    resp.close()  # the read in progress fails at once

    def begin_close(self) -> None:
        """From now on, requests not yet sent fail with `ClientStateError`; those on the wire
        finish (each within `Timeouts.total`)."""
        self._closing = True

    def _closed_error(self, what: str) -> ClientStateError:
        return ClientStateError(f"{what}: the client was closed; nothing was sent")

    async def close(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        sessions = [s for s in (self._api, self._stream, self._files) if s is not None]
        self._api = self._stream = self._files = None
        for session in sessions:
            await session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        gate: Gate | None = None,
        ticket: int = 0,
    ) -> Response:
        """One API request. Raises `ConnectionFailed` when no response came, and
        `ClientStateError` when the client closed before it was sent. With a `gate`, raises
        `NotAdmitted` (nothing sent) when its ticket changed from `ticket` meanwhile."""
        headers = {"Content-Type": "application/json"} if body is not None else None
        # acquire/release rather than `async with`: a parked request then holds no
        # `__aenter__` coroutine and bound `__aexit__`, two objects fewer per waiting request
        # for the garbage collector to walk (10,000s of submits wait here).
        await self._slots.acquire()
        try:
            if self._closing or self._api is None:
                raise self._closed_error(f"{method} {path}")
            if gate is not None and gate.ticket != ticket:
                raise NotAdmitted
            started = asyncio.get_running_loop().time()
            expired = False
            try:
                async with self._api.request(
                    method,
                    self.base_url + path,
                    data=body,
                    params=params,
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    key = id(resp)
                    self._reading[key] = (started + self._timeouts.total, resp)
                    try:
                        data = await resp.read()
                    finally:
                        expired = self._reading.pop(key, None) is None
                    return Response(resp.status, resp.headers, data)
            except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
                if isinstance(exc, RuntimeError) and not self._closing:
                    raise
                if expired:
                    raise ConnectionFailed(
                        f"{method} {path}: no complete answer within {self._timeouts.total:g} s "
                        "(Timeouts.total)",
                        sent=True,
                    ) from exc
                raise _translate(exc, f"{method} {path}") from exc
        finally:
            self._slots.release()

    @asynccontextmanager
    async def stream(self, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open an event stream; yields its raw byte chunks once the 200 headers arrived.

        Raises `APIStatusError` on an error status, `ConnectionFailed` when the connection
        fails or stays silent longer than `Timeouts.stream_idle`.
        """
        if self._closing or self._stream is None:
            raise self._closed_error(f"stream {path}")
        try:
            async with self._stream.get(self.base_url + path, allow_redirects=False) as resp:
                if not is_success(resp.status):
                    raise status_error(Response(resp.status, resp.headers, await resp.read()))
                yield self._chunks(resp, path)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, f"stream {path}") from exc

    @staticmethod
    async def _chunks(resp: aiohttp.ClientResponse, path: str) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, f"stream {path}") from exc

    async def download(self, url: str) -> Response:
        """GET a result file, following redirects by hand, reading at most
        `Limits.max_download_bytes` (after decompression).

        The API key is sent only on hops whose origin is the API's own; a presigned URL on a
        file host never sees it.
        """
        limit = self._limits.max_download_bytes
        for _ in range(_MAX_REDIRECTS + 1):
            if self._closing or self._files is None:
                raise self._closed_error("download")
            headers = self._auth if _origin(url) == self._origin else None
            try:
                async with self._files.get(url, headers=headers, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    body = bytearray()
                    async for piece in resp.content.iter_chunked(64 * 1024):
                        body += piece
                        if len(body) > limit:
                            raise ResponseTooLarge(
                                f"download: the result is larger than {limit} bytes "
                                "(Limits.max_download_bytes); it was not read further"
                            )
                    return Response(resp.status, resp.headers, bytes(body))
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _translate(exc, "download") from exc
        raise TransportError(f"download: more than {_MAX_REDIRECTS} redirects")


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


def _message(body: Any, fallback: str) -> str:
    """The server's message from either documented error body shape."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            parts = [error.get(k) for k in ("message", "title", "detail")]
            text = ": ".join(str(p) for p in parts if p)
            if text:
                return text
            if error.get("type"):
                return str(error["type"])
        elif isinstance(error, str) and error:
            return error
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return fallback


def status_error(resp: Response, *, what: str = "") -> APIStatusError:
    """The exception for an error response, carrying the decoded body and server's message."""
    body: Any
    try:
        body = raw_rows_decoder.decode(resp.body) if resp.body else None
    except Exception:
        body = resp.body.decode("utf-8", "replace")[:500]
    fallback = body if isinstance(body, str) and body else f"HTTP {resp.status}"
    message = _message(body, fallback)
    if what:
        message = f"{what}: {message}"
    message = f"{message} (HTTP {resp.status})"
    if resp.status == 429:
        return RateLimitError(
            message,
            status_code=429,
            body=body,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )
    unknown = _MODEL_NOT_FOUND.search(message) if resp.status in (400, 404) else None
    if unknown is not None:
        # The spec answers an unknown model with 400, older services with 404: the same error
        # either way, worded like the check made before sending.
        model = unknown.group(1).rstrip(".")  # a sentence's full stop is not part of the id
        return ModelNotFoundError(
            f"{message}; model {model!r} does not exist: see client.models() "
            "(or `oxedit models`) for the model ids",
            status_code=resp.status,
            body=body,
            model=model,
        )
    cls = _STATUS_ERRORS.get(resp.status) or (ServerError if resp.status >= 500 else APIStatusError)
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("type") == "insufficient_credits":  # any status
        cls = InsufficientCreditsError
    return cls(message, status_code=resp.status, body=body)

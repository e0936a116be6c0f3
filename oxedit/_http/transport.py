"""Requests over the HTTP library (aiohttp), whose exceptions are translated here.

With `_sessions` (which opens them), the only module that imports aiohttp. Three sessions,
each with one job (or the user's one session for all three, see `_sessions`):
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
import io
import logging
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol, Unpack
from urllib.parse import urljoin, urlsplit

import aiohttp

from .. import _constants as C
from .._clock import loop_clock
from .._config import Limits, Timeouts
from .._exceptions import (
    APIConnectionError,
    APITimeoutError,
    ClientStateError,
    ResponseTooLargeError,
    TransportError,
    status_error,
)
from .._logging import setup_logging
from .._response import Response, is_success
from .hooks import EventHooks
from .sessions import Channel, HttpSettings, Sessions, client_timeout
from .slots import Slots

__all__ = [
    "HttpSettings",
    "Received",
    "Response",
    "Transport",
    "is_success",
    "url_problem",
]

_MAX_REDIRECTS = 5
_new_tuple = tuple.__new__
_BYTES_BODY = 1 << 20  # larger request bodies go to aiohttp as a file-like object

log = logging.getLogger("oxedit")


class Received(Protocol):
    """Where the transport counts the bytes of the API answers it read (`Counters`)."""

    bytes_received: int


def url_problem(url: str) -> str | None:
    """What makes `url` unusable for a GET (None: nothing): a scheme other than http(s), no
    host, or a port that is not a number from 0 to 65535 (`:99999`, `:+80`, `:1:2`)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return str(exc)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http(s) URL with a host"
    return None


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.scheme, parts.hostname, port)


class _Watch:
    """An API request in flight, or the event stream, as the transport's watchdog sees it.
    An API request's is used again by later requests once it is over (`Transport.send`)."""

    __slots__ = ("content", "expired", "read", "read_by", "resp", "seen", "task", "total_by")

    def __init__(self) -> None:
        # cancelled when silent before the answer's head (then `send` says)
        self.task: asyncio.Task[Any] | None = None
        self.resp: aiohttp.ClientResponse | None = None  # closed when past a deadline
        self.expired: str | None = None  # "read" or "total", once the watchdog ended it
        self.read = self.read_by = self.total_by = 0.0  # read_by, total_by: loop time
        # The event stream's body, once its head came: the watchdog counts the bytes read
        # into it since it last looked (`seen`) as signs of life.
        self.content: aiohttp.StreamReader | None = None
        self.seen = 0

    def begin(
        self, task: asyncio.Task[Any] | None, read: float, now: float, total_by: float
    ) -> None:
        """A request starts (`end()` left `resp` and `expired` unset)."""
        self.task = task
        self.read = read
        self.read_by = now + read
        self.total_by = total_by

    def end(self) -> None:
        """The request is over: let go of its task and response, for the next to begin."""
        self.task = None
        self.resp = None
        self.expired = None

    def heard(self, now: float) -> None:
        """Bytes came: the next silence counts from `now`."""
        self.read_by = now + self.read

    def ended_it(self) -> bool:
        """Whether the task's cancellation is the watchdog's alone (it ended the request, and
        nobody else cancelled the task too): then it is taken back."""
        return self.expired is not None and self.task is not None and self.task.uncancel() == 0


def _expired(watch: _Watch, method: str, path: str, limits: Timeouts) -> APITimeoutError:
    if watch.expired == "total":
        return APITimeoutError(
            f"{method} {path}: no complete answer within {limits.total:g} s (Timeouts.total)",
            sent=True,
        )
    return APITimeoutError(
        f"{method} {path} failed: nothing came for {limits.read:g} s (Timeouts.read)", sent=True
    )


def _silent_stream(path: str, idle: float) -> APITimeoutError:
    return APITimeoutError(
        f"stream {path}: nothing came for {idle:g} s (Timeouts.stream_idle)", sent=True
    )


def _read_already(resp: aiohttp.ClientResponse, cap: int) -> bool:
    """An answer aiohttp has read to its end already, of at most `cap` bytes (as they are
    read: decompressed): taken at once. One still coming is read piece by piece, each piece a
    sign of life for `Timeouts.read` (read at once, a small answer dribbling in was ended as
    silent once it took longer than the read timeout in all)."""
    content = resp.content
    return content.is_eof() and content.total_bytes <= cap


async def _read_capped(
    resp: aiohttp.ClientResponse,
    limits: Limits,
    what: str,
    *,
    listing: bool = False,
    watch: _Watch | None = None,
) -> bytes:
    """The whole (decompressed) body, read piece by piece so that no more than the cap is ever
    held: past it, the connection is closed and `ResponseTooLargeError` raised.

    The cap is `Limits.max_response_bytes`; a list (`listing`) may reach
    `max_list_response_bytes`, but past `max_response_bytes` only while it is at most
    `RESPONSE_MAX_INFLATION` x the bytes that came on the wire: honest rows of base64 images
    are megabytes each and hardly compress, a gzip bomb inflates 1000:1.
    """
    floor = limits.max_response_bytes
    cap = limits.max_list_response_bytes if listing else floor
    content = resp.content
    pieces: list[bytes] = []
    size = 0
    loop = asyncio.get_running_loop()
    while piece := await content.readany():
        if watch is not None:
            watch.heard(loop.time())
        size += len(piece)
        if size > floor:
            setting, limit = "max_response_bytes", floor
            if listing:
                # aiohttp >= 3.12 counts the bytes before decompression; with older ones only
                # the list's own cap applies.
                wire = getattr(content, "total_raw_bytes", None)
                inflated = isinstance(wire, int) and size > C.RESPONSE_MAX_INFLATION * max(wire, 1)
                if not inflated:
                    setting, limit = "max_list_response_bytes", cap
            if size > limit:
                resp.close()  # drop the connection: the rest of the answer is never read
                raise ResponseTooLargeError(
                    f"{what}: the answer is larger than {limit} bytes once decompressed "
                    f"(Limits.{setting}); it was not read further and is not retried. If the "
                    "API's answers are really this big, raise the limit: "
                    f"Client(limits=oxedit.Limits({setting}=...))",
                    limit=limit,
                )
        pieces.append(piece)
    return b"".join(pieces)


def _translate(exc: BaseException, what: str) -> APIConnectionError:
    """The public exception for aiohttp's (or asyncio's) when no answer came."""
    # Connect failures (refused, DNS, connect timeout) mean nothing reached the server; any
    # other failure may come after the request was written.
    not_sent = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    reason = str(exc) or type(exc).__name__
    # aiohttp's timeouts (connect, sock_read) are all TimeoutErrors.
    cls = APITimeoutError if isinstance(exc, TimeoutError) else APIConnectionError
    return cls(f"{what} failed: {reason}", sent=not not_sent)


class Transport:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeouts: Timeouts,
        limits: Limits,
        **http: Unpack[HttpSettings],
    ) -> None:
        setup_logging()  # OXEDIT_LOG, applied as each client is created
        self.base_url = base_url
        self._origin = _origin(base_url)
        self._timeouts = timeouts
        self._limits = limits
        self.hooks = EventHooks(http.get("event_hooks"))
        self._sessions = Sessions(
            base_url=base_url, api_key=api_key, timeouts=timeouts, limits=limits, **http
        )
        self._auth = self._sessions.auth
        self._download_slots = asyncio.Semaphore(limits.max_downloads)
        # Requests beyond the bound wait here, before any request object exists: measured
        # cheaper in CPU and memory than queueing in aiohttp's connector with 10,000 waiting
        # (`python -m benchmarks.end_to_end`, strategies raw vs raw-connector).
        # Public: a caller may take a slot itself and then `send` (the enqueue decides whether
        # to send after its wait, since its pace may have changed meanwhile).
        self.slots = Slots(limits.max_connections)
        self._closing = False
        # API requests in flight, by key. One watchdog enforces `Timeouts.read` and `total`
        # for all of them: timers per request measured 7% of the client's CPU at 10,000 jobs
        # for aiohttp's `total`, and 6% for its `sock_read`, which takes a timer when the
        # request is sent and another at every piece of the answer.
        self._watched: dict[int, _Watch] = {}
        # Watches of requests that are over, for the next ones: a request allocates none, one
        # object fewer alive from each request's start (what starts a young collection, with
        # some 40 of aiohttp's own). At most as many as requests were ever in flight at once.
        self._spare_watches: list[_Watch] = []
        # How often it looks: within a quarter of the shortest timeout, at most a second late.
        self._tick = min(1.0, timeouts.read / 4, timeouts.total / 4, timeouts.stream_idle / 4)
        self._watchdog: asyncio.Task[None] | None = None
        self._api: Channel | None = None
        self._stream: Channel | None = None
        self._files: Channel | None = None
        self._now = time.monotonic  # the loop's clock (`loop_clock`), set on `open`

    async def open(self) -> None:
        self._now = loop_clock(asyncio.get_running_loop())
        self._api, self._stream, self._files = self._sessions.open()
        self._watchdog = asyncio.create_task(self._enforce_deadlines(), name="oxedit-deadlines")

    async def _enforce_deadlines(self) -> None:
        """End the API requests past `Timeouts.total` (a server dribbling a byte now and then
        never trips the read timeout) or silent for `Timeouts.read`, and the event stream
        silent for `Timeouts.stream_idle`: an answer being read is closed (its read fails at
        once), a request still waiting for the answer's head is cancelled, which `send` (or
        `stream`) turns into `APITimeoutError` (as `asyncio.timeout` does).

        The stream's reads are not timed one by one (aiohttp's read timeout re-arms a timer
        for every chunk, a third of what reading a chunk costs): each look counts the bytes
        read since the one before, so silence is found within two ticks of
        `Timeouts.stream_idle`."""
        clock = self._now
        while True:
            await asyncio.sleep(self._tick)
            now = clock()
            for key, watch in list(self._watched.items()):
                content = watch.content
                if content is not None and content.total_bytes != watch.seen:
                    watch.seen = content.total_bytes  # the stream spoke since the last look
                    watch.heard(now)
                if watch.total_by <= now:
                    watch.expired = "total"
                elif watch.read_by <= now:
                    watch.expired = "read"
                else:
                    continue
                del self._watched[key]
                if watch.resp is not None:
                    watch.resp.close()
                elif watch.task is not None:
                    watch.task.cancel()

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
        self._api = self._stream = self._files = None
        await self._sessions.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeouts: Timeouts | None = None,
        listing: bool = False,
        counts: Received | None = None,
    ) -> Response:
        """One API request, once a connection slot is free (see `send`)."""
        # acquire/release rather than `async with`: a parked request then holds no
        # `__aenter__` coroutine and bound `__aexit__`, two objects fewer per waiting request
        # for the garbage collector to walk (10,000s of submits wait here).
        if not self.slots.take():
            await self.slots.acquire()
        try:
            return await self.send(
                method,
                path,
                body=body,
                params=params,
                content_type=content_type,
                timeouts=timeouts,
                listing=listing,
                counts=counts,
            )
        finally:
            self.slots.release()

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        timeouts: Timeouts | None = None,
        listing: bool = False,
        counts: Received | None = None,
    ) -> Response:
        """One API request, sent now: the caller holds one of the `slots` (`request` takes
        one; a caller that must decide whether to send after its wait takes one itself).
        The answer's bytes are added to `counts.bytes_received`.

        Raises `APIConnectionError` when no response came, `ResponseTooLargeError` when the
        answer passed `Limits.max_response_bytes` (with `listing`, a list's
        `max_list_response_bytes`), and `ClientStateError` when the client closed before it
        was sent. `timeouts` replaces the client's for this request (`Client.with_options`).
        """
        limits = timeouts or self._timeouts
        api = self._api
        if self._closing or api is None:
            raise self._closed_error(f"{method} {path}")
        extra = api.extra
        if timeouts is not None:  # this request's own (`timeout=None` would disable all)
            extra = {**extra, "timeout": client_timeout(timeouts)}
            self._tick = min(self._tick, timeouts.read / 4, timeouts.total / 4)
        headers = api.headers if body is None else api.json_headers
        if body is not None and content_type != "application/json":
            headers = {**api.json_headers, "Content-Type": content_type}
        clock = self._now
        started = clock()
        spare = self._spare_watches
        watch = spare.pop() if spare else _Watch()
        watch.begin(asyncio.current_task(), limits.read, started, started + limits.total)
        key = id(watch)
        url = self.base_url + path
        if self.hooks.request:
            self.hooks.on_request(method, url)
        self._watched[key] = watch
        try:
            # Awaited, not `async with`: that would keep an `__aenter__` coroutine and a bound
            # `__aexit__` alive for the whole request, two more objects each time a request
            # starts (a burst of starts is what runs young collections: some 40 objects of
            # aiohttp's each). `release()` is what `__aexit__` does, but for waiting on the
            # body writer, which is done once the answer was read and cancelled otherwise.
            resp = await api.session.request(
                method,
                url,
                # aiohttp warns (ResourceWarning) of bodies over 1 MiB given as bytes
                data=body if body is None or len(body) <= _BYTES_BODY else io.BytesIO(body),
                params=params,
                headers=headers,
                allow_redirects=False,
                **extra,
            )
            try:
                watch.resp = resp
                watch.heard(clock())  # the head came: silence counts from now
                if _read_already(resp, self._limits.max_response_bytes):
                    data = await resp.read()  # nearly every answer: no coroutine to read it
                else:
                    data = await _read_capped(
                        resp, self._limits, f"{method} {path}", listing=listing, watch=watch
                    )
                if counts is not None:
                    counts.bytes_received += len(data)
                if self.hooks.response or log.isEnabledFor(logging.DEBUG):
                    self._observed(method, url, resp.status, started)
                # `Response(...)` without its Python `__new__` (a named tuple's): every answer.
                return _new_tuple(Response, (resp.status, resp.headers, data))
            finally:
                resp.release()
        except asyncio.CancelledError:
            if not watch.ended_it():
                raise
            raise _expired(watch, method, path, limits) from None
        except (TimeoutError, aiohttp.ClientError, RuntimeError) as exc:
            if isinstance(exc, RuntimeError) and not self._closing:
                api.check_open(f"{method} {path}")  # your http_session, closed under us
                raise
            if watch.expired is not None:
                raise _expired(watch, method, path, limits) from exc
            raise _translate(exc, f"{method} {path}") from exc
        finally:
            # After the handlers above, which read it (nothing else runs meanwhile).
            self._watched.pop(key, None)
            watch.end()
            spare.append(watch)

    def _observed(self, method: str, url: str, status: int, started: float) -> None:
        """A response came: tell the hooks and the debug log (method, URL, status; never the
        headers, one of which holds the key)."""
        elapsed = self._now() - started
        log.debug("HTTP %s %s: %d in %.3f s", method, url, status, elapsed)
        if self.hooks.response:
            self.hooks.on_response(method, url, status, elapsed)

    @asynccontextmanager
    async def stream(self, path: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Open an event stream; yields its raw byte chunks once the 200 headers arrived.

        Raises `APIStatusError` on an error status, `APIConnectionError` when the connection
        fails, `APITimeoutError` when it stays silent longer than `Timeouts.stream_idle`
        (found by the watchdog, see `_enforce_deadlines`).
        """
        channel = self._stream
        if self._closing or channel is None:
            raise self._closed_error(f"stream {path}")
        channel.check_open(f"stream {path}")
        url = self.base_url + path
        clock = self._now
        started = clock()
        idle = self._timeouts.stream_idle
        watch = _Watch()
        watch.begin(asyncio.current_task(), idle, started, math.inf)
        key = id(watch)
        if self.hooks.request:
            self.hooks.on_request("GET", url)
        self._watched[key] = watch
        try:
            async with channel.session.get(
                url, headers=channel.headers, allow_redirects=False, **channel.extra
            ) as resp:
                watch.resp = resp
                watch.content = resp.content  # from now on, its bytes are its signs of life
                watch.heard(clock())
                self._observed("GET", url, resp.status, started)
                if not is_success(resp.status):
                    body = await _read_capped(resp, self._limits, f"stream {path}", watch=watch)
                    raise status_error(Response(resp.status, resp.headers, body))
                # aiohttp's own iterator, not one of ours around it (an async generator's step
                # per chunk): what it raises while the caller reads reaches the `except`
                # below through this `yield`, and is translated there.
                yield resp.content.iter_any()
            if watch.expired is not None:  # closed by the watchdog: the read ended early
                raise _silent_stream(path, idle)
        except asyncio.CancelledError:
            if not watch.ended_it():
                raise
            raise _silent_stream(path, idle) from None
        except (TimeoutError, aiohttp.ClientError) as exc:
            if watch.expired is not None:
                raise _silent_stream(path, idle) from exc
            raise _translate(exc, f"stream {path}") from exc
        finally:
            self._watched.pop(key, None)

    async def download(self, url: str) -> Response:
        """GET a result file, following redirects by hand, reading at most
        `Limits.max_download_bytes` (after decompression).

        The API key is sent only on hops whose origin is the API's own; a presigned URL on a
        file host never sees it.
        """
        async with self._download_slots:
            return await self._download(url)

    async def _download(self, url: str) -> Response:
        limit = self._limits.max_download_bytes
        for _ in range(_MAX_REDIRECTS + 1):
            channel = self._files
            if self._closing or channel is None:
                raise self._closed_error("download")
            channel.check_open("download")
            problem = url_problem(url)
            if problem is not None:  # a redirect's Location, say (`Downloader` checks the first)
                raise TransportError(f"download: bad URL {url.partition('?')[0]!r}: {problem}")
            route = self._sessions.route_for(url)
            headers = channel.headers
            if route.headers or _origin(url) == self._origin:
                headers = {**(headers or {}), **route.headers}
                if _origin(url) == self._origin:
                    headers.update(self._auth)
            started = asyncio.get_running_loop().time()
            shown = url.partition("?")[0]  # a presigned URL's query is a credential
            if self.hooks.request:
                self.hooks.on_request("GET", shown)
            try:
                async with channel.session.get(
                    url,
                    headers=headers,
                    allow_redirects=False,
                    **channel.extra,
                    **route.kwargs,
                ) as resp:
                    self._observed("GET", shown, resp.status, started)
                    if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    body = bytearray()
                    async for piece in resp.content.iter_chunked(64 * 1024):
                        body += piece
                        if len(body) > limit:
                            raise ResponseTooLargeError(
                                f"download: the result is larger than {limit} bytes "
                                "(Limits.max_download_bytes); it was not read further",
                                limit=limit,
                            )
                    return Response(resp.status, resp.headers, bytes(body))
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise _translate(exc, "download") from exc
        raise TransportError(f"download: more than {_MAX_REDIRECTS} redirects")

"""The HTTP sessions a `Transport` sends through: the three oxedit opens, or the user's one.

Each role (API requests, the event stream, result downloads) is a `Channel`: a session plus
the arguments each of its requests needs. With oxedit's own sessions the settings live on the
session and the arguments are empty, so the hot path pays nothing for the options. With the
user's session (`Client(http_session=...)`) oxedit changes nothing on it: headers, timeouts
and `raise_for_status=False` go with each request, and it is never closed here.

Proxies: `proxy=` wins; else, with `trust_env`, the environment's proxy for the URL's host is
looked up once per host (aiohttp's own `trust_env` looks it up in a thread on every request, and
makes every request fail with ValueError when `~/.netrc` lists the API host).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypedDict, Unpack
from urllib.parse import unquote, urlsplit

import aiohttp

from .._config import HttpOptions, Limits, Timeouts, env_proxy
from .._exceptions import ClientStateError, InvalidRequestError

__all__ = [
    "Channel",
    "HttpSettings",
    "Route",
    "Sessions",
    "check_session",
    "client_timeout",
    "proxy_route",
]


class HttpSettings(TypedDict, total=False):
    """The `Client`'s HTTP and hook keyword arguments (see the README's "Extension points").

    Attributes:
        proxy: An http:// proxy for every request (`HttpOptions.proxy`).
        trust_env: Honour `HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY` (default True).
        http_session: Your own `aiohttp.ClientSession`, used for every request and never closed
            by oxedit (custom TLS, tracing, other connectors).
        default_headers: Headers sent with every API request; `Authorization` is refused.
        event_hooks: `{"request": [fn], "response": [fn], "settled": [fn]}`: plain callables
            given a `RequestInfo`, `ResponseInfo` or `JobSettled`.
    """

    proxy: str | None
    trust_env: bool
    http_session: aiohttp.ClientSession | None
    default_headers: Mapping[str, str] | None
    event_hooks: Mapping[str, Sequence[Callable[..., object]]] | None


def check_session(session: object) -> None:
    """A user's session must be an open aiohttp session that decompresses bodies."""
    if not isinstance(session, aiohttp.ClientSession):
        raise InvalidRequestError(
            f"http_session={session!r} must be an aiohttp.ClientSession "
            f"(got {type(session).__name__})"
        )
    if session.closed:
        raise InvalidRequestError("http_session is closed; pass an open aiohttp.ClientSession")
    if not session.auto_decompress:
        raise InvalidRequestError(
            "http_session has auto_decompress=False; oxedit reads the API's JSON and images "
            "decompressed: pass a session with auto_decompress=True (aiohttp's default)"
        )


class Route(NamedTuple):
    """How requests to one origin get there.

    Attributes:
        kwargs: aiohttp's per-request proxy arguments (empty: go direct).
        headers: Headers the proxy needs on the request itself.
    """

    kwargs: dict[str, Any]
    headers: dict[str, str]


_DIRECT = Route({}, {})


def proxy_route(proxy: str | None, target_scheme: str) -> Route:
    """The route through `proxy` (None: direct) to a URL of `target_scheme`, credentials
    moved out of the proxy URL (aiohttp does not read them there) into `Proxy-Authorization`.

    An https target is tunnelled, so the credential goes on the CONNECT (`proxy_headers`); an
    http target's request itself goes to the proxy, which reads it there (aiohttp does not copy
    `proxy_headers` onto it).
    """
    if proxy is None:
        return _DIRECT
    parts = urlsplit(proxy)
    if parts.username is None:
        return Route({"proxy": proxy}, {})
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    bare = parts._replace(netloc=netloc).geturl()
    pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
    credential = {"Proxy-Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    if target_scheme == "https":
        return Route({"proxy": bare, "proxy_headers": credential}, {})
    return Route({"proxy": bare}, credential)


@dataclass(slots=True)
class Channel:
    """One role's session, and what each of its requests adds.

    Attributes:
        session: The aiohttp session.
        headers: Headers for a request without a body (None: the session carries them).
        json_headers: Headers for a request with a JSON body.
        extra: Further keyword arguments for every request (proxy, timeout, ...).
    """

    session: aiohttp.ClientSession
    headers: dict[str, str] | None
    json_headers: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    def check_open(self, what: str) -> None:
        """Only the user's session can be closed under the client: say so, typed."""
        if self.session.closed:
            raise ClientStateError(
                f"{what}: the http_session was closed while the client used it; nothing was "
                "sent (close your session after leaving `async with Client()`)"
            )


def client_timeout(
    timeouts: Timeouts, *, read: float | None = None, total: float | None = None
) -> aiohttp.ClientTimeout:
    """aiohttp's timeouts for a session or one request (`Timeouts.read` and `total` of API
    requests, and `stream_idle`, are the transport's watchdog's, not aiohttp's `sock_read`
    and `total`)."""
    # `connect=None`: waiting for a free connection is not a timeout, only the socket
    # connect is (else 10,000 queued submits would time out in the pool).
    return aiohttp.ClientTimeout(
        total=total, connect=None, sock_connect=timeouts.connect, sock_read=read
    )


class Sessions:
    """Opens and closes the channels; closes only the sessions it opened."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeouts: Timeouts,
        limits: Limits,
        **settings: Unpack[HttpSettings],
    ) -> None:
        from .._version import __version__

        http = HttpOptions(
            proxy=settings.get("proxy"),
            trust_env=settings.get("trust_env", True),
            default_headers=settings.get("default_headers") or {},
            session=settings.get("http_session"),
        )
        if http.session is not None:
            check_session(http.session)
        self._http = http
        self._timeouts = timeouts
        self._limits = limits
        self._base = {"User-Agent": f"oxedit/{__version__}"}
        # Built here only: the API channels carry it, and `Transport.download` adds it to a
        # hop that goes to the API host itself.
        self.auth = {"Authorization": f"Bearer {api_key}"}
        self._api_headers = {**self._base, **http.default_headers, **self.auth}
        self._routes: dict[tuple[str, str | None, int | None], Route] = {}
        # The API host's route, resolved now so that a bad environment fails `Client()`.
        self._api_route = self.route_for(base_url)
        self._owned: list[aiohttp.ClientSession] = []

    def route_for(self, url: str) -> Route:
        """How a request to `url` goes: through which proxy, if any."""
        if self._http.session is not None:
            return _DIRECT  # the user's session decides
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname, parts.port)
        route = self._routes.get(key)
        if route is None:
            proxy = self._http.proxy or (env_proxy(url) if self._http.trust_env else None)
            route = self._routes[key] = proxy_route(proxy, parts.scheme)
        return route

    def _timeout(
        self, *, read: float | None = None, total: float | None = None
    ) -> aiohttp.ClientTimeout:
        return client_timeout(self._timeouts, read=read, total=total)

    def open(self) -> tuple[Channel, Channel, Channel]:
        """The API, stream and download channels."""
        json = {"Content-Type": "application/json"}
        stream_headers = {**self._api_headers, "Accept": "text/event-stream"}
        # API requests' `Timeouts.read` and `total`, and the stream's `stream_idle`, are
        # enforced by the transport's watchdog.
        api_timeout = self._timeout()
        stream_timeout = self._timeout()
        files_timeout = self._timeout(read=self._timeouts.read, total=self._timeouts.download)
        user = self._http.session
        if user is not None:
            assert isinstance(user, aiohttp.ClientSession)
            per_request = {"raise_for_status": False}
            return (
                Channel(
                    user,
                    self._api_headers,
                    {**self._api_headers, **json},
                    {"timeout": api_timeout, **per_request},
                ),
                Channel(
                    user, stream_headers, stream_headers, {"timeout": stream_timeout, **per_request}
                ),
                Channel(user, self._base, self._base, {"timeout": files_timeout, **per_request}),
            )
        files = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limits.max_downloads),
            timeout=files_timeout,
            headers=self._base,  # no credentials: see `Transport.download`
        )
        route = self._api_route
        if route is not _DIRECT:
            # aiohttp sends a session's default headers to the proxy too, and turns an
            # `Authorization` among them into `Proxy-Authorization`: the key would reach the
            # proxy (in the CONNECT, even for https). So, proxied, every header goes per request.
            api_headers = {**self._api_headers, **route.headers}
            api = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._limits.max_connections, limit_per_host=0
                ),
                timeout=api_timeout,
            )
            stream = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=2), timeout=stream_timeout
            )
            self._owned = [api, stream, files]
            proxied_stream = {**stream_headers, **route.headers}
            return (
                Channel(api, api_headers, {**api_headers, **json}, dict(route.kwargs)),
                Channel(stream, proxied_stream, proxied_stream, dict(route.kwargs)),
                Channel(files, None, {}),
            )
        api = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._limits.max_connections, limit_per_host=0),
            timeout=api_timeout,
            headers=self._api_headers,
            auto_decompress=True,
        )
        stream = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=2), timeout=stream_timeout, headers=stream_headers
        )
        self._owned = [api, stream, files]
        return (Channel(api, None, json), Channel(stream, None, {}), Channel(files, None, {}))

    async def close(self) -> None:
        """Close the sessions oxedit opened (never the user's)."""
        owned, self._owned = self._owned, []
        for session in owned:
            await session.close()

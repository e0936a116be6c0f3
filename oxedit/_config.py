"""Configuration: where the API key and base URL come from, and the small settings objects."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from . import _constants as C
from ._exceptions import ConfigurationError, InvalidRequestError

__all__ = [
    "HttpOptions",
    "HubProfile",
    "Limits",
    "ReconcilePolicy",
    "Timeouts",
    "at_least",
    "env_proxy",
    "positive",
    "resolve_api_key",
    "resolve_base_url",
]


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else `OXEN_BASE_URL`, else https://hub.oxen.ai; validated, no trailing /."""
    url = base_url or os.environ.get("OXEN_BASE_URL") or C.DEFAULT_BASE_URL
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(
            f"base_url={url!r} is not an http(s) URL; pass e.g. base_url='https://hub.oxen.ai' "
            "or set OXEN_BASE_URL"
        )
    return url.rstrip("/")


def _oxen_config_file() -> Path:
    root = os.environ.get("OXEN_CONFIG_DIR")
    return (Path(root) if root else Path.home() / ".config" / "oxen") / "auth_config.toml"


def key_from_oxen_cli(base_url: str) -> str | None:
    """The `auth_token` the `oxen` CLI stored for this base URL's host, if any."""
    path = _oxen_config_file()
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the oxen CLI's auth config {path}: {exc}") from exc
    netloc = urlsplit(base_url).netloc
    hostname = urlsplit(base_url).hostname
    for entry in config.get("host_configs", []):
        if isinstance(entry, dict) and entry.get("host") in (netloc, hostname):
            token = entry.get("auth_token")
            if isinstance(token, str) and token:
                return token
    return None


def resolve_api_key(api_key: str | None, base_url: str) -> str:
    """The argument, else `OXEN_API_KEY`, else the `oxen` CLI's key for the base URL's host.

    Raises:
        ConfigurationError: no key, or one holding whitespace or control characters (a stray
            newline from `export OXEN_API_KEY=$(cat key.txt)` would otherwise fail every
            request, after retries, instead of at once).
    """
    if api_key is not None and not isinstance(api_key, str):
        raise ConfigurationError(
            f"api_key must be a string (the key itself), not {type(api_key).__name__}"
        )
    if api_key:
        key, source = api_key, "the api_key argument"
    elif os.environ.get("OXEN_API_KEY"):
        key, source = os.environ["OXEN_API_KEY"], "OXEN_API_KEY"
    else:
        key, source = key_from_oxen_cli(base_url) or "", f"the oxen CLI's {_oxen_config_file()}"
    if not key:
        raise ConfigurationError(
            f"no API key for {base_url}: pass Client(api_key=...), set OXEN_API_KEY, or run "
            f"`oxen config --auth {urlsplit(base_url).netloc} YOUR_KEY`"
        )
    bad = sorted({repr(c) for c in key if c.isspace() or not c.isprintable()})
    if bad:
        # Never echo the key itself: only what is wrong with it and where it came from.
        raise ConfigurationError(
            f"the API key from {source} contains {', '.join(bad)} (e.g. a stray newline); "
            "remove it: a key is one line of printable characters without spaces"
        )
    return key


def _number(value: object) -> float | None:
    """`value` if it is a number; None for anything else, bool included (`read=True` is a
    mistake, not one second)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return None


def positive(name: str, value: object, *, allow_none: bool = False) -> None:
    """Raise `InvalidRequestError` unless `value` is a number > 0 (or None when allowed)."""
    if value is None and allow_none:
        return
    number = _number(value)
    if number is None or not number > 0:  # NaN too
        raise InvalidRequestError(f"{name}={value!r} must be a positive number")


def at_least(name: str, value: object, minimum: float, *, whole: bool = False) -> None:
    """Raise `InvalidRequestError` unless `value` is a number (an int when `whole`) >= minimum."""
    number = _number(value)
    if number is None or not number >= minimum or (whole and not isinstance(number, int)):
        kind = "a whole number" if whole else "a number"
        raise InvalidRequestError(f"{name}={value!r} must be {kind} >= {minimum:g}")


@dataclass(frozen=True, slots=True, kw_only=True)
class HubProfile:
    """Where a hub differs from what oxedit assumes by default, as `oxedit doctor` finds it
    (the CLI applies what doctor remembered for its base URL; a program passes it itself).

    Attributes:
        edit_field: The image field of `POST /api/ai/images/edit` to send first: the docs'
            `"input_image"`, or the spec's `"image"` (None: the docs', and learn on a 400).
        history_first_page: The number of the billing history's first page (1 as the spec
            reads it, or 0).
        metadata_route: The repository metadata route that answers: `"meta"` (oxen-server,
            the official client) or `"metadata"` (the docs); None: try both, `/meta/` first.

    Example:
        ```python
        Client(hub=HubProfile(history_first_page=0))
        ```
    """

    edit_field: Literal["input_image", "image"] | None = None
    history_first_page: Literal[0, 1] = 1
    metadata_route: Literal["meta", "metadata"] | None = None

    def __post_init__(self) -> None:
        for name, allowed in (
            ("edit_field", (None, "input_image", "image")),
            ("history_first_page", (0, 1)),
            ("metadata_route", (None, "meta", "metadata")),
        ):
            value = getattr(self, name)
            if value not in allowed or isinstance(value, bool):
                raise InvalidRequestError(
                    f"HubProfile({name}={value!r}): must be one of "
                    + ", ".join(repr(a) for a in allowed)
                )


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Timeouts in seconds.

    Attributes:
        connect: Opening a connection.
        read: Silence while waiting for one API response.
        stream_idle: Silence on the event stream after which it is considered dead (keep-alives
            come every 15 s).
        total: One API request from start to end, however slowly its bytes arrive.
        download: One result download from start to end.

    An API request's `read` and `total`, and `stream_idle`, are enforced by one watchdog per
    client, not by a timer per request (or per chunk of the stream). It looks every quarter
    of the shortest of the three (at least once a second): a request ends at most one look
    late, a silent stream at most two.

    Example:
        ```python
        Client(timeouts=Timeouts(read=30.0))
        ```
    """

    connect: float = C.DEFAULT_CONNECT_TIMEOUT
    read: float = C.DEFAULT_READ_TIMEOUT
    stream_idle: float = C.STREAM_IDLE_TIMEOUT
    total: float = C.DEFAULT_TOTAL_TIMEOUT
    download: float = C.DEFAULT_DOWNLOAD_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect", "read", "stream_idle", "total", "download"):
            positive(name, getattr(self, name))


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency and size bounds.

    Attributes:
        max_connections: API requests in flight at once; more wait their turn in order,
            holding no socket.
        max_downloads: Result downloads in flight at once.
        max_event_bytes: Largest server-sent event accepted; a longer one is dropped with a
            warning (the completion events are a few hundred bytes).
        max_download_bytes: Largest result file accepted (after decompression); a larger one
            fails with `DownloadError`.
        max_response_bytes: Largest API answer accepted (after decompression; a list, see
            below, may be larger); a larger one fails with `ResponseTooLargeError`, not retried.
        max_list_response_bytes: Largest list answer accepted (`GET /api/ai/queue`, a history
            page, the models), whose rows echo their inputs, data URIs included. Past
            `max_response_bytes` a list may also inflate no more than 100x the bytes that
            came on the wire, so a gzip bomb stops at `max_response_bytes` there too.
        max_rate: Enqueues per second at most (None: no cap). The rate adapts below it: on a
            429/503 it halves, and it grows back with each success.
        initial_rate: Enqueues per second to start from; None starts unpaced and learns the
            account's limit from its first 429 (a healthy run is never slowed).
        max_early_event_bytes: Completion events for ids not known (yet) are kept while an
            enqueue is unanswered (an event can overtake the response announcing its id);
            on an account shared with other processes most are theirs. This bounds them
            (~500 bytes each); the oldest go first, and a job whose event went is settled by
            its check through the queue endpoints.
    """

    max_connections: int = C.DEFAULT_MAX_CONNECTIONS
    max_downloads: int = C.DEFAULT_MAX_DOWNLOADS
    max_event_bytes: int = C.DEFAULT_MAX_EVENT_BYTES
    max_download_bytes: int = C.DEFAULT_MAX_DOWNLOAD_BYTES
    max_response_bytes: int = C.DEFAULT_MAX_RESPONSE_BYTES
    max_list_response_bytes: int = C.DEFAULT_MAX_LIST_RESPONSE_BYTES
    max_rate: float | None = None
    initial_rate: float | None = None
    max_early_event_bytes: int = C.DEFAULT_MAX_EARLY_EVENT_BYTES

    def __post_init__(self) -> None:
        for name in (
            "max_connections",
            "max_downloads",
            "max_event_bytes",
            "max_download_bytes",
            "max_response_bytes",
            "max_list_response_bytes",
        ):
            at_least(name, getattr(self, name), 1, whole=True)
        at_least("max_early_event_bytes", self.max_early_event_bytes, 0, whole=True)
        positive("max_rate", self.max_rate, allow_none=True)
        positive("initial_rate", self.initial_rate, allow_none=True)


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    """When pending jobs are checked through the queue endpoints, since no event came.

    Cancellations send no event and events can be lost. A job is first checked once it is
    older than `latency_multiple` x the p99 completion latency this client observed for its
    model (from enqueue to event), but never younger than `stale_floor` nor older than
    `stale_after`; a client with no history yet uses `stale_floor`. A job found still active is
    checked again after half its age, at least `stale_floor / 2` and at most `interval` later.
    Checks are scheduled by age only: reconnects of the event stream (which check every
    pending job at once) never postpone them.

    So a job whose event is lost, or that was cancelled elsewhere, settles at most
    `max(first check, its completion age + interval)` after its enqueue, plus one reconcile
    tick (at most 1 s) and the time of the check's request (see the README's liveness
    budget). A check costs one `GET /api/ai/queue/{id}`, or, when more than 16 jobs are due
    at once, one `GET /api/ai/queue` for all of them plus a GET for each one it shows finished.

    Attributes:
        stale_floor: The earliest age at which a job is checked.
        stale_after: The latest age at which a job is first checked.
        latency_multiple: The first check comes at this multiple of the observed p99 latency.
        interval: The longest gap between two checks of a job that stays active.
        lost_response_grace: How long to let the server settle before asking it whether a POST
            whose response was lost created a generation.
        lost_response_window: How long after a POST's response was lost a row it created is
            still looked for (and adopted), with checks further and further apart: a load
            balancer gives up on a request while the backend goes on with it, for tens of
            seconds. The POST is sent again only once this has passed with no row; a row it
            commits later still is cancelled (`DELETE`) when seen, and counted in
            `ClientStats.late_duplicates_cancelled`.
        refused_stream_grace: How long a reconnect of an accepted event stream that is refused
            (401/403/404) is retried before the refusal fails every pending job.
    """

    stale_floor: float = C.STALE_FLOOR
    stale_after: float = C.STALE_AFTER
    latency_multiple: float = C.LATENCY_MULTIPLE
    interval: float = C.RECONCILE_INTERVAL
    lost_response_grace: float = C.LOST_RESPONSE_GRACE
    refused_stream_grace: float = C.REFUSED_STREAM_GRACE
    lost_response_window: float = C.LOST_RESPONSE_WINDOW

    def __post_init__(self) -> None:
        for name in ("stale_floor", "stale_after", "latency_multiple", "interval"):
            positive(name, getattr(self, name))
        for name in ("lost_response_grace", "refused_stream_grace", "lost_response_window"):
            at_least(name, getattr(self, name), 0)


def _check_proxy_url(url: str, source: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigurationError(
            f"{source}={url!r} is not an http:// proxy URL: oxedit talks plain HTTP to the proxy "
            "(https targets are tunnelled with CONNECT); for SOCKS or a TLS proxy, pass your own "
            "http_session with a suitable connector"
        )
    return url


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (`HTTP_PROXY` / `HTTPS_PROXY` by its scheme,
    either case), or None when there is none or `NO_PROXY` exempts the URL's host.

    Raises:
        ConfigurationError: the variable holds something that is not an http:// URL.
    """
    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parts.scheme)
    if not proxy or (parts.hostname and urllib.request.proxy_bypass(parts.hostname)):
        return None
    return _check_proxy_url(proxy, f"{parts.scheme.upper()}_PROXY")


# Headers oxedit owns: the key goes in Authorization, and only to the API's host.
_RESERVED_HEADERS = frozenset({"authorization"})


def _check_headers(headers: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidRequestError(
                f"default_headers[{name!r}]={value!r}: header names and values must be str"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise InvalidRequestError(
                f"default_headers may not set {name!r}: oxedit sends the API key itself "
                "(pass api_key= or set OXEN_API_KEY)"
            )
        if not name or any(c in name for c in " :\r\n\t") or any(c in value for c in "\r\n"):
            raise InvalidRequestError(
                f"default_headers[{name!r}]: a header name is one word without ':' or spaces, "
                "and neither name nor value may hold a line break"
            )
        checked[name] = value
    return checked


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """How oxedit reaches the API over HTTP (the `Client`'s `proxy`, `trust_env`,
    `default_headers` and `http_session` arguments, checked).

    Attributes:
        proxy: An http:// proxy URL (credentials as `http://user:password@host:port`) for every
            request oxedit sends: API calls, the event stream and result downloads. It wins
            over the environment.
        trust_env: Use the proxy `HTTP_PROXY` / `HTTPS_PROXY` name, except for hosts in
            `NO_PROXY`; read when the `Client` is created.
        default_headers: Sent with every API request and event stream (not to the file host
            of result downloads). `Authorization` is refused: it carries the key.
        session: The user's `aiohttp.ClientSession`, used for every request instead of the
            sessions oxedit would open; oxedit never closes it.
    """

    proxy: str | None = None
    trust_env: bool = True
    default_headers: Mapping[str, str] = field(default_factory=dict)
    session: Any = None  # aiohttp.ClientSession; checked by `_sessions`, which imports aiohttp

    def __post_init__(self) -> None:
        if self.proxy is not None:
            if not isinstance(self.proxy, str):
                raise InvalidRequestError(f"proxy={self.proxy!r} must be an http:// URL (str)")
            try:
                _check_proxy_url(self.proxy, "proxy")
            except ConfigurationError as exc:
                raise InvalidRequestError(str(exc)) from None
            if self.session is not None:
                raise InvalidRequestError(
                    "proxy= cannot be combined with http_session=: oxedit does not change a "
                    "session it did not open; give your session its proxy "
                    "(aiohttp.ClientSession(proxy=...) or trust_env=True)"
                )
        if not isinstance(self.default_headers, Mapping):
            raise InvalidRequestError(
                f"default_headers={self.default_headers!r} must be a mapping of str to str"
            )
        object.__setattr__(self, "default_headers", _check_headers(self.default_headers))


def timeouts_for(timeout: float | Timeouts | None, base: Timeouts) -> Timeouts:
    """`Timeouts` from a `timeout=` option: as given, or `base` with that many seconds as the
    request's `total` (and at most that as its `read`)."""
    if timeout is None or isinstance(timeout, Timeouts):
        return timeout or base
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise InvalidRequestError(f"timeout={timeout!r} must be a positive number of seconds")
    return dataclasses.replace(base, total=timeout, read=min(base.read, timeout))

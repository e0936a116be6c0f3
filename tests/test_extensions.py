"""Extension points: your own aiohttp session, default headers, the OXEDIT_LOG switch and
event hooks, over real sockets against the local server."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

import oxedit
from oxedit.testing import Faults, LocalServer

from .forward_proxy import ForwardProxy
from .helpers import client_for, png

pytestmark = pytest.mark.anyio


def _offline(**settings: Any) -> oxedit.Client:
    """A client that is never opened: for checks made when it is created."""
    return oxedit.Client(api_key="k", base_url="http://127.0.0.1:9", **settings)


def _sent(server: LocalServer) -> int:
    """Every request the server saw, API and file host."""
    return sum(server.stats.requests_by_route.values())


async def _submit_await_read(client: oxedit.Client, n: int = 3) -> list[oxedit.Job]:
    jobs = await asyncio.gather(*(client.submit(prompt=f"blur {i}", image=png()) for i in range(n)))
    gens = await asyncio.gather(*jobs)
    assert {g.status for g in gens} == {"succeeded"}
    assert await gens[0].read()
    return jobs


# -- your own session -----------------------------------------------------------------------


async def test_your_session_carries_every_request_and_stays_open(oxen_server: LocalServer) -> None:
    traced: Counter[str] = Counter()

    async def on_request_start(
        session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestStartParams
    ) -> None:
        traced[params.url.path] += 1

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(on_request_start)
    # raise_for_status=True and an Authorization of its own: oxedit's requests must not be bent
    # by them (its key goes with each API request).
    async with aiohttp.ClientSession(
        trace_configs=[tracing], raise_for_status=True, headers={"Authorization": "Bearer wrong"}
    ) as session:
        async with client_for(oxen_server, http_session=session) as client:
            await _submit_await_read(client)
            with pytest.raises(oxedit.NotFoundError):  # an error status, not a TransportError
                await client.get("no-such-generation")
            assert client.stats.poll_requests == 0  # the event stream ran on it too
        assert not session.closed
        assert traced["/api/events"] == 1
        assert sum(traced.values()) == _sent(oxen_server)  # every request went through it
        async with session.get(
            f"{oxen_server.url}/api/ai/models",
            headers={"Authorization": f"Bearer {oxen_server.api_key}"},
        ) as resp:
            assert resp.status == 200  # still usable after the client closed


async def test_a_session_oxedit_cannot_use_is_refused(oxen_server: LocalServer) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match="must be an aiohttp.ClientSession"):
        client_for(oxen_server, http_session=object())
    async with aiohttp.ClientSession(auto_decompress=False) as raw:
        with pytest.raises(oxedit.InvalidRequestError, match="auto_decompress=False"):
            client_for(oxen_server, http_session=raw)
    closed = aiohttp.ClientSession()
    await closed.close()
    with pytest.raises(oxedit.InvalidRequestError, match="http_session is closed"):
        client_for(oxen_server, http_session=closed)


async def test_closing_your_session_under_the_client_is_a_client_state_error(
    oxen_server: LocalServer,
) -> None:
    session = aiohttp.ClientSession()
    async with client_for(oxen_server, http_session=session) as client:
        await client.models()
        await session.close()
        with pytest.raises(oxedit.ClientStateError, match="http_session was closed"):
            await client.models()
        with pytest.raises(oxedit.ClientStateError, match="http_session was closed"):
            await client.submit(prompt="p", image=png())


# -- default headers ------------------------------------------------------------------------


@pytest.mark.parametrize("own_session", [False, True])
async def test_default_headers_go_with_every_api_request(
    oxen_server: LocalServer, own_session: bool
) -> None:
    # The proxy sees the headers as sent on the wire.
    headers = {"X-Team": "vision", "User-Agent": "my-app/2"}
    async with ForwardProxy() as proxy:
        if own_session:
            async with (
                aiohttp.ClientSession(proxy=proxy.url) as session,
                client_for(oxen_server, http_session=session, default_headers=headers) as client,
            ):
                await _submit_await_read(client, n=2)
        else:
            async with client_for(oxen_server, proxy=proxy.url, default_headers=headers) as client:
                await _submit_await_read(client, n=2)
    api = urlsplit(oxen_server.url).netloc
    to_api = [r for r in proxy.relayed if r.host == api]
    assert len(to_api) == sum(
        n for route, n in oxen_server.stats.requests_by_route.items() if "/files/" not in route
    )
    for relayed in to_api:
        assert relayed.headers["X-Team"] == "vision"
        assert relayed.headers["User-Agent"] == "my-app/2"
        assert relayed.headers["Authorization"] == f"Bearer {oxen_server.api_key}"
    # The file host is another party: it gets none of them.
    to_files = [r for r in proxy.relayed if r.host != api]
    assert to_files
    assert not any("X-Team" in r.headers or "Authorization" in r.headers for r in to_files)


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({"authorization": "Bearer other"}, "may not set 'authorization'"),
        ({"X-Bad": "one\r\nInjected: yes"}, "line break"),
        ({"X Bad": "1"}, "one word"),
        ({"X-Num": 3}, "must be str"),
    ],
)
def test_bad_default_headers_are_named(headers: dict[str, Any], match: str) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match=match):
        _offline(default_headers=headers)


# -- OXEDIT_LOG ------------------------------------------------------------------------------


@pytest.fixture
def oxedit_logger() -> Iterator[logging.Logger]:
    """The `oxedit` logger, restored afterwards (OXEDIT_LOG adds a handler to it)."""
    logger = logging.getLogger("oxedit")
    handlers, level = list(logger.handlers), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


async def test_oxedit_log_debug_logs_requests_never_the_key(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    oxedit_logger: logging.Logger,
) -> None:
    key = "sk-oxedit-distinctive-9d41c7"
    monkeypatch.setenv("OXEDIT_LOG", "debug")
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp's too
    async with (
        LocalServer(api_key=key, faults=Faults(get_error_rate=0.5, seed=3)) as server,
        client_for(server, retry=oxedit.RetryPolicy(initial=0.01, maximum=0.02)) as client,
    ):
        jobs = await _submit_await_read(client)
        await client.get(jobs[0].id)  # some GETs answer 500 and are retried: more log lines
        with pytest.raises(oxedit.NotFoundError):
            await client.get("no-such-generation")
    assert oxedit_logger.level == logging.DEBUG
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("HTTP POST ") and m.endswith(" s") for m in messages)
    assert not any(key in m for m in messages)
    err = capsys.readouterr().err  # the handler OXEDIT_LOG adds writes to stderr
    assert "HTTP POST" in err
    assert key not in err


def test_oxedit_log_info_sets_the_level_and_one_handler(
    monkeypatch: pytest.MonkeyPatch, oxedit_logger: logging.Logger
) -> None:
    before = len(oxedit_logger.handlers)
    monkeypatch.setenv("OXEDIT_LOG", "INFO")
    _offline()
    _offline()
    assert oxedit_logger.level == logging.INFO
    assert len(oxedit_logger.handlers) == before + 1


def test_a_bad_oxedit_log_is_named(
    monkeypatch: pytest.MonkeyPatch, oxedit_logger: logging.Logger
) -> None:
    monkeypatch.setenv("OXEDIT_LOG", "verbose")
    with pytest.raises(oxedit.ConfigurationError, match="OXEDIT_LOG='verbose'"):
        _offline()


# -- event hooks -----------------------------------------------------------------------------


@pytest.mark.oxen_faults(duplicate_event_rate=1.0, event_before_response_rate=0.3, seed=5)
async def test_hooks_see_every_request_and_each_job_settles_once(
    oxen_server: LocalServer,
) -> None:
    requests: list[oxedit.RequestInfo] = []
    responses: list[oxedit.ResponseInfo] = []
    settled: list[oxedit.JobSettled] = []
    hooks = {
        "request": [requests.append],
        "response": [responses.append],
        "settled": [settled.append],
    }
    async with client_for(oxen_server, event_hooks=hooks) as client:
        jobs = await _submit_await_read(client, n=20)
        assert sorted(s.generation_id for s in settled) == sorted(j.id for j in jobs)
        assert {s.status for s in settled} == {"succeeded"}
        assert all(isinstance(s.outcome, oxedit.Generation) and s.elapsed >= 0 for s in settled)
        oxen_server.faults.latency = 60.0  # still running when the client closes
        late = await client.submit(prompt="slow", image=png())
    assert oxen_server.stats.events_sent >= 40  # every event came twice
    assert len(settled) == 21  # once each: the duplicates settled nothing
    assert (settled[-1].generation_id, settled[-1].status) == (late.id, "error")
    assert isinstance(settled[-1].outcome, oxedit.ClientStateError)
    assert len(requests) == len(responses) == _sent(oxen_server)
    assert Counter((r.method, r.url) for r in requests) == Counter(
        (r.method, r.url) for r in responses
    )
    assert all(r.status_code == 200 and r.elapsed >= 0 for r in responses)
    assert not any("?" in r.url for r in requests)  # a presigned URL's query is a credential


async def test_a_failing_hook_is_logged_and_breaks_nothing(
    oxen_server: LocalServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(info: object) -> None:
        raise RuntimeError("exporter down")

    hooks = {"request": [broken], "response": [broken], "settled": [broken]}
    async with client_for(oxen_server, event_hooks=hooks) as client:
        await _submit_await_read(client, n=2)
    failures = [r for r in caplog.records if r.getMessage().startswith("event hook")]
    assert len(failures) == 2 * _sent(oxen_server) + 2
    assert all(r.exc_info and "exporter down" in str(r.exc_info[1]) for r in failures)


async def _async_hook(info: object) -> None:
    pass


@pytest.mark.parametrize(
    ("hooks", "match"),
    [
        ({"on_request": [print]}, "unknown hook 'on_request'"),
        ({"request": print}, "must be a list of callables"),
        ({"settled": ["print"]}, "is not callable"),
        ({"response": [_async_hook]}, "coroutine function"),
    ],
)
def test_bad_hooks_are_named(hooks: Any, match: str) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match=match):
        _offline(event_hooks=hooks)

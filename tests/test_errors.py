"""Errors as callers see them, over real sockets: connection failures and timeouts as public
exceptions, `.message` as the server's text, and downloads that honour `Retry-After`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

import oxedit
from oxedit.testing import LocalServer

from .helpers import Handler, client_for, png, serve

pytestmark = pytest.mark.anyio

NO_RETRY = oxedit.RetryPolicy(max_retries=0)

# -- downloads honour Retry-After ----------------------------------------------------------------


async def test_a_download_answered_503_waits_the_servers_retry_after() -> None:
    hits: list[str] = []

    async def busy_once(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        if len(hits) == 1:
            return web.Response(status=503, headers={"Retry-After": "0"}, text="busy")
        return web.Response(body=png(), content_type="image/png")

    # The policy's own backoff before a first retry is 30-60 s; the server asks for none.
    patient = oxedit.RetryPolicy(max_retries=1, initial=60.0, maximum=60.0)
    async with (
        LocalServer() as server,
        serve(busy_once) as files,
        client_for(server, retry=patient) as client,
    ):
        gen = oxedit.Generation(id="g1", status="succeeded", url=files + "/g1.png")
        async with asyncio.timeout(10):
            assert await client.read(gen) == png()
        assert client.stats.retries == 1
    assert hits == ["/g1.png", "/g1.png"]


# -- no answer: public exceptions, never a private one -------------------------------------------


def _is_public(exc: BaseException) -> bool:
    return getattr(oxedit, type(exc).__name__, None) is type(exc)


async def test_a_refused_connection_is_an_api_connection_error() -> None:
    async with LocalServer() as server:
        url, key = server.url, server.api_key  # nothing listens there any more
    async with oxedit.Client(api_key=key, base_url=url, retry=NO_RETRY) as client:
        with pytest.raises(oxedit.APIConnectionError) as caught:
            await client.models()
        assert type(caught.value) is oxedit.APIConnectionError
        assert caught.value.sent is False  # refused: the request never left
        with pytest.raises(oxedit.TransportError) as submitted:
            await client.submit(prompt="p", image=png())  # waits for the event stream
        assert isinstance(submitted.value, oxedit.APIConnectionError)
        assert _is_public(submitted.value), type(submitted.value)


async def _silent(request: web.Request) -> web.StreamResponse:
    await asyncio.Event().wait()  # never answers; cancelled when the stub closes
    raise AssertionError("unreachable")


async def _dribble(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 1_000_000
    await resp.prepare(request)
    while True:  # a byte now and then: never silent long enough for the read timeout
        await resp.write(b" ")
        await asyncio.sleep(0.02)


async def _stall(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.content_length = 1_000
    await resp.prepare(request)
    await resp.write(b"{")  # the head and a byte, then silence
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("handler", "timeouts", "says"),
    [
        (_silent, oxedit.Timeouts(read=0.2), "GET /api/ai/models failed.*Timeouts.read"),
        (_stall, oxedit.Timeouts(read=0.2), "GET /api/ai/models failed.*Timeouts.read"),
        (_dribble, oxedit.Timeouts(read=5.0, total=0.3), "Timeouts.total"),
    ],
    ids=["read", "read-after-head", "total"],
)
async def test_a_server_that_does_not_answer_in_time_is_an_api_timeout_error(
    handler: Handler, timeouts: oxedit.Timeouts, says: str
) -> None:
    async with serve(handler) as url:
        client = oxedit.Client(api_key="k", base_url=url, retry=NO_RETRY, timeouts=timeouts)
        async with client, asyncio.timeout(10):
            with pytest.raises(oxedit.APITimeoutError, match=says) as caught:
                await client.models()
    assert isinstance(caught.value, oxedit.APIConnectionError)
    assert isinstance(caught.value, oxedit.TransportError) and caught.value.sent


async def test_a_callers_own_timeout_is_its_own_and_the_client_goes_on() -> None:
    """The read timeout ends a silent request by cancelling it and saying `APITimeoutError`;
    a caller's own `asyncio.timeout` firing first stays the caller's `TimeoutError`, and the
    client serves the next request."""
    calls = 0

    async def silent_once(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        return web.json_response({"data": []})

    async with serve(silent_once) as url:
        timeouts = oxedit.Timeouts(read=30.0)
        client = oxedit.Client(api_key="k", base_url=url, retry=NO_RETRY, timeouts=timeouts)
        async with client:
            with pytest.raises(TimeoutError) as caught:
                async with asyncio.timeout(0.2):
                    await client.models()
            assert not isinstance(caught.value, oxedit.OxeditError)
            assert await client.models() == []


async def test_a_small_answer_still_coming_is_not_silence_and_each_request_is_timed_afresh() -> (
    None
):
    """`Timeouts.read` is silence: a small answer whose bytes keep coming, each within the
    read timeout, all of them past it, is read to its end (it was read at once, and ended as
    "nothing came" once it took longer than the read timeout in all). And the transport
    reuses the watch of a request that is over: one the read timeout ended leaves nothing of
    its deadline or its ending to the next."""
    calls = 0

    async def silent_then_slow(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # ended by Timeouts.read
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        body = b'{"data": []}'
        resp.content_length = len(body)
        await resp.prepare(request)
        for byte in body:  # each piece within the read timeout, all of them past it
            await asyncio.sleep(0.05)
            await resp.write(bytes([byte]))
        return resp

    async with serve(silent_then_slow) as url:
        timeouts = oxedit.Timeouts(read=0.3)
        client = oxedit.Client(api_key="k", base_url=url, retry=NO_RETRY, timeouts=timeouts)
        async with client, asyncio.timeout(10):
            with pytest.raises(oxedit.APITimeoutError, match="Timeouts.read"):
                await client.models()
            assert await client.models() == []
            assert await client.models() == []
    assert calls == 3


# -- `.message` is the server's text -------------------------------------------------------------


async def test_message_is_the_servers_text_and_str_says_the_rest() -> None:
    async with LocalServer() as server, client_for(server, retry=NO_RETRY) as client:
        with pytest.raises(oxedit.NotFoundError) as caught:
            await client.get("no-such-id")
    error = caught.value
    assert error.message == error.body["error"]["title"]  # the typed body's own words
    assert error.status_code == 404 and "HTTP" not in error.message
    assert str(error) == f"generation 'no-such-id': {error.message} (HTTP 404)"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "Model not found: m-1"}}', "Model not found: m-1"),
        (
            b'{"error": {"type": "invalid_params", "title": "Invalid parameters",'
            b' "detail": "prompt is required"}, "status": "error",'
            b' "status_message": "invalid_params"}',
            "Invalid parameters: prompt is required",
        ),
        (b'{"error": {"type": "unauthenticated"}}', "unauthenticated"),
        (b'{"error": "Rate limit exceeded"}', "Rate limit exceeded"),
        (b'{"detail": "Not authenticated"}', "Not authenticated"),
        (b'{"detail": [{"loc": ["body"], "msg": "field required"}]}', "field required"),
        (b'{"message": "Forbidden"}', "Forbidden"),
        (b"Bad Gateway\n", "Bad Gateway"),
        (b"[1, 2]", "[1, 2]"),  # JSON, but no object: kept as text
        (b"", "HTTP 418"),  # the server said nothing
        (b"{}", "HTTP 418"),
    ],
)
def test_message_from_every_error_body_shape(body: bytes, message: str) -> None:
    from oxedit._exceptions import status_error
    from oxedit._response import Response

    error = status_error(Response(418, {}, body), what="enqueue")
    assert error.message == message
    assert str(error) == f"enqueue: {message} (HTTP 418)"


def test_message_of_the_special_cases_is_the_servers_text_too() -> None:
    from oxedit._exceptions import status_error
    from oxedit._response import Response

    limited = status_error(Response(429, {"Retry-After": "7"}, b'{"error": "Slow down"}'))
    assert isinstance(limited, oxedit.RateLimitError)
    assert (limited.message, limited.retry_after) == ("Slow down", 7.0)
    unknown = status_error(Response(400, {}, b'{"error": {"message": "Model not found: m"}}'))
    assert isinstance(unknown, oxedit.ModelNotFoundError)
    assert unknown.message == "Model not found: m" and "client.models()" in str(unknown)


# -- settings refuse bad values with oxedit's errors, never a bare TypeError ----------------------


T, L, R, C = oxedit.Timeouts, oxedit.Limits, oxedit.RetryPolicy, oxedit.ReconcilePolicy


@pytest.mark.parametrize(
    ("settings", "kwargs", "says"),
    [
        (T, {"read": "5"}, "read='5' must be a positive number"),
        (T, {"total": True}, "total=True must be a positive number"),
        (T, {"connect": float("nan")}, "connect=nan must be a positive number"),
        (L, {"max_connections": 2.5}, "max_connections=2.5 must be a whole number >= 1"),
        (L, {"max_downloads": "8"}, "max_downloads='8' must be a whole number >= 1"),
        (L, {"max_rate": "8"}, "max_rate='8' must be a positive number"),
        (R, {"max_retries": "3"}, "max_retries='3' must be a whole number >= 0"),
        (R, {"max_retries": 1.5}, "max_retries=1.5 must be a whole number >= 0"),
        (R, {"initial": None}, "initial=None must be a positive number"),
        (R, {"maximum": "x"}, "maximum='x' must be a positive number"),
        (R, {"retry_after_max": -1}, "retry_after_max=-1 must be a number >= 0"),
        (C, {"interval": None}, "interval=None must be a positive number"),
        (C, {"lost_response_grace": "x"}, "lost_response_grace='x' must be a number >= 0"),
    ],
)
def test_settings_refuse_bad_values_naming_them(
    settings: Callable[..., object], kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match="^" + re.escape(says) + "$"):
        settings(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"api_key": 123, "base_url": "http://127.0.0.1:1"}, "api_key must be a string"),
        ({"api_key": "k", "base_url": 123}, "base_url=123 is not an http(s) URL"),
    ],
)
def test_a_client_with_a_key_or_url_of_the_wrong_type_is_a_configuration_error(
    kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(oxedit.ConfigurationError, match=re.escape(says)):
        oxedit.Client(**kwargs)

"""Proxies: `proxy=` and the environment (`HTTP_PROXY` / `HTTPS_PROXY` / `NO_PROXY`), over
real sockets through a local forward proxy. The local server's API listens on 127.0.0.1 and
its file host on localhost, so `NO_PROXY=localhost` splits the two. (conftest clears the
machine's own proxy variables for every test.)"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from urllib.parse import urlsplit

import aiohttp
import pytest

import oxedit
from oxedit._config import env_proxy
from oxedit._http.sessions import proxy_route
from oxedit.testing import LocalServer

from .forward_proxy import ForwardProxy
from .helpers import client_for, png

pytestmark = pytest.mark.anyio


def _basic(pair: str) -> str:
    return "Basic " + base64.b64encode(pair.encode()).decode()


def _host(url: str) -> str:
    return urlsplit(url).netloc


async def _submit_await_read(client: oxedit.Client, n: int = 3) -> None:
    jobs = await asyncio.gather(
        *(client.submit(prompt=f"mirror {i}", image=png()) for i in range(n))
    )
    gens = await asyncio.gather(*jobs)
    assert {g.status for g in gens} == {"succeeded"}
    assert await gens[0].read()


async def test_proxy_setting_carries_every_request_and_the_key_only_to_the_api_host(
    oxen_server: LocalServer,
) -> None:
    async with ForwardProxy() as proxy:
        with_credentials = proxy.url.replace("http://", "http://me:pa%3Ass@")
        async with client_for(oxen_server, proxy=with_credentials) as client:
            await _submit_await_read(client)
            assert client.stats.poll_requests == 0  # the jobs settled from the proxied stream
    api, files = _host(oxen_server.url), _host(oxen_server.files_url)
    routes = Counter((r.method, r.host, urlsplit(r.url).path) for r in proxy.relayed)
    assert routes[("POST", api, "/api/ai/queue")] == 3
    assert routes[("GET", api, "/api/events")] == 1
    assert sum(n for (_, host, _), n in routes.items() if host == files) >= 1
    # Everything the server saw came through the proxy.
    assert len(proxy.relayed) == sum(oxen_server.stats.requests_by_route.values())
    expected_auth = _basic("me:pa:ss")
    for relayed in proxy.relayed:
        assert relayed.headers["Proxy-Authorization"] == expected_auth
        if relayed.host == api:
            assert relayed.headers["Authorization"] == f"Bearer {oxen_server.api_key}"
        else:
            assert "Authorization" not in relayed.headers
        others = [v for k, v in relayed.headers.items() if k.lower() != "authorization"]
        assert not any(oxen_server.api_key in v for v in others)
    assert oxen_server.stats.file_requests_with_auth == 0


@pytest.mark.parametrize("credentials", ["", "me:secret@"])
async def test_the_key_never_goes_on_a_connect_to_the_proxy(credentials: str) -> None:
    # aiohttp sends a session's default headers to the proxy as well, and an Authorization
    # among them as Proxy-Authorization: an https API's key would reach the proxy.
    key = "sk-distinctive-key-0451"
    async with ForwardProxy() as proxy:
        proxy_url = proxy.url.replace("http://", f"http://{credentials}")
        no_retry = oxedit.RetryPolicy(max_retries=0)
        base_url = "https://api.example.invalid"
        async with oxedit.Client(
            api_key=key, base_url=base_url, proxy=proxy_url, retry=no_retry
        ) as client:
            with pytest.raises(oxedit.TransportError):
                await client.models()
    (connect,) = proxy.relayed
    assert (connect.method, connect.url) == ("CONNECT", "api.example.invalid:443")
    assert not any(key in value for value in connect.headers.values())
    if credentials:
        assert connect.headers["Proxy-Authorization"] == _basic("me:secret")
    else:
        assert "Proxy-Authorization" not in connect.headers


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
async def test_the_environment_proxy_is_used_except_for_no_proxy_hosts(
    oxen_server: LocalServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    async with ForwardProxy() as proxy:
        monkeypatch.setenv(variable, proxy.url)
        monkeypatch.setenv("NO_PROXY", urlsplit(oxen_server.files_url).hostname or "")
        async with client_for(oxen_server) as client:
            await _submit_await_read(client)
    assert proxy.hosts() == {_host(oxen_server.url)}  # the API and its stream, proxied
    assert ("GET", "/api/events") in {(r.method, urlsplit(r.url).path) for r in proxy.relayed}
    assert oxen_server.stats.file_requests >= 1  # the downloads went direct


async def test_trust_env_false_ignores_the_environment(
    oxen_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with client_for(oxen_server, trust_env=False) as client:
            await _submit_await_read(client, n=1)
    assert proxy.relayed == []


async def test_bad_proxy_settings_are_named(
    oxen_server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(oxedit.InvalidRequestError, match="socks5://h:1080"):
        client_for(oxen_server, proxy="socks5://h:1080")
    monkeypatch.setenv("HTTP_PROXY", "socks5://h:1080")
    with pytest.raises(oxedit.ConfigurationError, match="HTTP_PROXY='socks5://h:1080'"):
        client_for(oxen_server)
    client_for(oxen_server, trust_env=False)  # the environment is not read at all
    async with aiohttp.ClientSession() as session:
        with pytest.raises(oxedit.InvalidRequestError, match="proxy= cannot be combined"):
            client_for(oxen_server, proxy="http://127.0.0.1:1", http_session=session)


# -- the pure parts --------------------------------------------------------------------------


def test_env_proxy_follows_the_scheme_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # (conftest cleared the machine's proxy variables)
    assert env_proxy("https://hub.oxen.ai") is None
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert env_proxy("https://hub.oxen.ai") is None  # HTTP_PROXY is for http:// URLs only
    assert env_proxy("http://hub.oxen.ai") == "http://proxy:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://secure-proxy:3128")
    assert env_proxy("https://hub.oxen.ai") == "http://secure-proxy:3128"
    monkeypatch.setenv("NO_PROXY", ".oxen.ai")
    assert env_proxy("https://hub.oxen.ai") is None
    assert env_proxy("https://files.example.com") == "http://secure-proxy:3128"
    monkeypatch.setenv("NO_PROXY", "*")
    assert env_proxy("https://files.example.com") is None


def test_proxy_credentials_go_where_the_proxy_reads_them() -> None:
    assert proxy_route(None, "https") == ({}, {})
    assert proxy_route("http://proxy:3128", "https") == ({"proxy": "http://proxy:3128"}, {})
    credential = {"Proxy-Authorization": _basic("user:p@ss")}
    # https: tunnelled, the credential goes on the CONNECT; http: on the request itself.
    assert proxy_route("http://user:p%40ss@proxy:3128", "https") == (
        {"proxy": "http://proxy:3128", "proxy_headers": credential},
        {},
    )
    assert proxy_route("http://user:p%40ss@proxy:3128", "http") == (
        {"proxy": "http://proxy:3128"},
        credential,
    )

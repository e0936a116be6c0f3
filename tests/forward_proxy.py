"""A small plain-HTTP forward proxy for tests: it relays absolute-form requests
(`GET http://host:port/path HTTP/1.1`), streaming the answers (so an event stream flows
through it), and records every request it relayed. A `CONNECT` (an https tunnel) is recorded
and refused."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

# Per-hop headers: a proxy consumes them, it never forwards them.
_HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Host",
        "Content-Length",
    )
)


@dataclass(frozen=True)
class Relayed:
    """One request the proxy relayed: its method, absolute URL and headers as received."""

    method: str
    url: str
    headers: CIMultiDictProxy[str]

    @property
    def host(self) -> str:
        return self.url.split("/")[2] if "//" in self.url else self.url


class ForwardProxy:
    """`async with ForwardProxy() as proxy:` listens on `proxy.url`; `proxy.relayed` lists
    what went through it."""

    def __init__(self) -> None:
        self.relayed: list[Relayed] = []
        self.url = ""
        self._runner: web.ServerRunner | None = None
        self._upstream: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        # No decompression: bytes go through as the origin sent them.
        self._upstream = aiohttp.ClientSession(auto_decompress=False)
        self._runner = web.ServerRunner(
            web.Server(self._relay), handler_cancellation=True, shutdown_timeout=1.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert self._runner.addresses
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._upstream is not None:
            await self._upstream.close()

    def hosts(self) -> set[str]:
        return {r.host for r in self.relayed}

    async def _relay(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "CONNECT":  # a tunnel for https: recorded, then refused
            self.relayed.append(Relayed("CONNECT", request.raw_path, request.headers))
            return web.Response(status=403, text="no tunnels here")
        target = str(request.url)
        if not request.raw_path.startswith("http://"):
            return web.Response(status=400, text="a forward proxy wants absolute-form requests")
        self.relayed.append(Relayed(request.method, target, request.headers))
        assert self._upstream is not None
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP
        )
        body = await request.read()
        async with self._upstream.request(
            request.method,
            target,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            answer = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    answer.headers.add(name, value)
            if upstream.content_length is not None:
                answer.content_length = upstream.content_length
            await answer.prepare(request)
            async for chunk in upstream.content.iter_any():
                await answer.write(chunk)
            await answer.write_eof()
            return answer

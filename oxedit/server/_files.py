"""The result-file host: presigned, expiring URLs on a separate origin.

Result URLs point at a second listening socket, under a different host name (`localhost` when
the API is `127.0.0.1` and vice versa), like S3 presigned links on the real service. So a
client that sends its API key to every URL it fetches is caught: the host needs no auth, and
counts the requests that carried an `Authorization` header anyway.

Or, as a setting, on the API's own host (the docs' result URLs are on hub.oxen.ai [doc]): under
`API_RESULTS_PATH`, behind the API's Bearer auth [guess: `oxedit doctor --spend` checks],
answering with the file itself or with a redirect to the file host's URL for it (object storage
behind a hub [guess]; doctor too).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import zlib
from collections.abc import Callable
from typing import Literal, TypeAlias

from aiohttp import web

from ._constants import GZIP_BOMB_CHUNK
from ._edits import CONTENT_TYPES
from ._faults import Faults
from ._jobs import Generation
from ._responses import message_error
from ._stats import ServerStats

__all__ = ["API_RESULTS_PATH", "FileHost", "ResultsHost"]

#: Where results are served on the API host: a hub repository file route, as the docs' result
#: URLs are (`https://hub.oxen.ai/api/repos/...`) [doc]; the rest of the path is a [guess]
#: (no doctor check: clients only follow the URLs they are given).
API_RESULTS_PATH = "/api/repos/oxedit/results/file/main"

#: Where result URLs point: the file host (False), the API host serving the file (True), or the
#: API host answering with a redirect to the file host ("redirect").
ResultsHost: TypeAlias = bool | Literal["redirect"]


class FileHost:
    """Signs result URLs and serves `GET /files/{name}?expires=&sig=`."""

    def __init__(
        self,
        faults: Faults,
        stats: ServerStats,
        lookup: Callable[[str], Generation | None],
        *,
        secret: bytes | None = None,
    ) -> None:
        self._faults = faults
        self._stats = stats
        self._lookup = lookup
        self._secret = secret or secrets.token_bytes(32)
        self.base_url = ""  # "http://localhost:PORT", set once the socket is bound
        self.api_url = ""  # "http://127.0.0.1:PORT", the API's origin, likewise
        self.on_api_host: ResultsHost = False  # set before the server starts
        self._bomb: tuple[int, bytes] = (0, b"")  # the last gzip bomb built: (size, body)

    def presign(self, gen: Generation) -> str:
        """A fresh URL for `gen`'s result, valid for `faults.url_ttl` seconds from now."""
        name = gen.file_name
        expires = int(time.time() + self._faults.url_ttl)
        where = f"{self.api_url}{API_RESULTS_PATH}" if self.on_api_host else self._files
        return f"{where}/{name}?expires={expires}&sig={self._sign(name, expires)}"

    @property
    def _files(self) -> str:
        return f"{self.base_url}/files"

    def _sign(self, name: str, expires: int) -> str:
        msg = f"{name}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{name}", self._serve)
        return app

    def add_api_routes(self, app: web.Application) -> None:
        """Serve results on the API's app too, when they are on its host (its middleware
        counts the requests and asks for the key)."""
        if self.on_api_host:
            app.router.add_get(f"{API_RESULTS_PATH}/{{name}}", self._serve_on_api_host)

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.file_requests += 1
        stats.requests_by_route["GET /files/{name}"] += 1
        if "Authorization" in request.headers:
            stats.file_requests_with_auth += 1
        return await self._answer(request)

    async def _serve_on_api_host(self, request: web.Request) -> web.StreamResponse:
        if self.on_api_host == "redirect":
            refused = self._check(request)
            if isinstance(refused, web.Response):
                return refused
            name = request.match_info["name"]
            location = f"{self._files}/{name}?{request.query_string}"
            return web.Response(status=302, headers={"Location": location})
        return await self._answer(request)

    def _check(self, request: web.Request) -> Generation | web.Response:
        """The generation a presigned request names, or the refusal to answer instead."""
        name = request.match_info["name"]
        gen = self._lookup(name.partition(".")[0])
        if gen is None or gen.result is None or gen.file_name != name:
            return message_error(404, f"File not found: {name}")
        try:
            expires = int(request.query.get("expires", ""))
        except ValueError:
            return message_error(403, "Missing or malformed 'expires' in presigned URL")
        sig = request.query.get("sig", "")
        if not hmac.compare_digest(sig.encode(), self._sign(name, expires).encode()):
            return message_error(403, "Signature does not match")
        if time.time() >= expires:
            return message_error(403, "Request has expired")
        return gen

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        gen = self._check(request)
        if isinstance(gen, web.Response):
            return gen
        content_type = CONTENT_TYPES[gen.output_format]
        if self._faults.result_gzip_bomb:
            return web.Response(
                body=await self._gzip_bomb(self._faults.result_gzip_bomb),
                content_type=content_type,
                headers={"Content-Encoding": "gzip"},
            )
        if self._faults.result_body is not None:
            return web.Response(body=self._faults.result_body, content_type=content_type)
        return web.Response(
            body=gen.result,
            content_type=content_type,
            headers={"Cache-Control": "private, max-age=60"},
        )

    async def _gzip_bomb(self, size: int) -> bytes:
        """A gzip body inflating to `size` zeros, kept for the next download."""
        if self._bomb[0] != size:
            # In a thread: a 1 GiB bomb takes seconds to compress, the event loop must not wait.
            self._bomb = (size, await asyncio.to_thread(_build_gzip_bomb, size))
        return self._bomb[1]


def _build_gzip_bomb(size: int) -> bytes:
    gzip = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip framing
    zeros = memoryview(bytes(GZIP_BOMB_CHUNK))
    parts = [
        gzip.compress(zeros[: min(GZIP_BOMB_CHUNK, size - start)])
        for start in range(0, size, GZIP_BOMB_CHUNK)
    ]
    parts.append(gzip.flush())
    return b"".join(parts)

"""The result-file host: presigned, expiring URLs on a separate origin.

Result URLs point at a second listening socket, under a different host name (`localhost` when
the API is `127.0.0.1` and vice versa), like S3 presigned links on the real service. So a
client that sends its API key to every URL it fetches is caught: the host needs no auth, and
counts the requests that carried an `Authorization` header anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from aiohttp import web

from ._edits import CONTENT_TYPES
from ._faults import Faults
from ._jobs import Generation
from ._responses import message_error
from ._stats import ServerStats

__all__ = ["FileHost"]


class FileHost:
    """Signs result URLs and serves `GET /files/{name}?expires=&sig=`."""

    def __init__(
        self,
        faults: Faults,
        stats: ServerStats,
        lookup: Callable[[str], Generation | None],
    ) -> None:
        self._faults = faults
        self._stats = stats
        self._lookup = lookup
        self._secret = secrets.token_bytes(32)
        self.base_url = ""  # "http://localhost:PORT", set once the socket is bound

    def presign(self, gen: Generation) -> str:
        """A fresh URL for `gen`'s result, valid for `faults.url_ttl` seconds from now."""
        name = gen.file_name
        expires = int(time.time() + self._faults.url_ttl)
        return f"{self.base_url}/files/{name}?expires={expires}&sig={self._sign(name, expires)}"

    def _sign(self, name: str, expires: int) -> str:
        msg = f"{name}\n{expires}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()[:32]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/files/{name}", self._serve)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.file_requests += 1
        stats.requests_by_route["GET /files/{name}"] += 1
        if "Authorization" in request.headers:
            stats.file_requests_with_auth += 1
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
        return web.Response(
            body=gen.result,
            content_type=CONTENT_TYPES[gen.output_format],
            headers={"Cache-Control": "private, max-age=60"},
        )

"""A stopgap: one API request whose body is not JSON (the multipart upload of `_upload`).

`Transport.request` sends every body as `application/json`. Until it takes the body's type
(`content_type=`, see the report of issue 16), this sends the request through the
transport's own API session: the same connections, the same bound on requests in flight, the
same key (the API host only), the same translation of failures. Delete this module then, and
call `transport.request(method, path, body=body, content_type=content_type)` instead.
"""

from __future__ import annotations

import io

import aiohttp

from ._exceptions import ClientStateError
from ._transport import Response, Transport, _translate

__all__ = ["send"]


async def send(
    transport: Transport, method: str, path: str, *, body: bytes, content_type: str
) -> Response:
    """One request to the API host; `ConnectionFailed` when no response came."""
    async with transport._slots:
        session = transport._api
        if transport._closing or session is None:
            raise ClientStateError(f"{method} {path}: the client was closed; nothing was sent")
        try:
            async with session.request(
                method,
                transport.base_url + path,
                # A file object, not raw bytes: aiohttp writes it in chunks (and warns, a
                # ResourceWarning, of raw bodies over 1 MiB, which photos are).
                data=io.BytesIO(body),
                headers={"Content-Type": content_type},
                allow_redirects=False,
            ) as resp:
                return Response(resp.status, resp.headers, await resp.read())
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, f"{method} {path}") from exc

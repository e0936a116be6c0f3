"""Answers of a server that is up but misbehaving: the liveness faults of the queue routes.

Kept apart from the handlers in `_api`, which stay the documented behaviour: each function here
takes a correct answer (or the decision to give one) and breaks it the way `Faults` asks.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from aiohttp import web

from ._constants import DRIP_PIECE_BYTES, LOGIN_PATH
from ._faults import Faults
from ._responses import html_response, json_response, typed_error

__all__ = ["bad_enqueue_answer", "drip", "get_fault"]


def get_fault(faults: Faults) -> web.Response | None:
    """The broken answer a queue GET gives instead of its own, or None (rolled in turn)."""
    if faults.roll(faults.get_error_rate):
        return typed_error(500, "unknown_error", title="Internal server error")
    if faults.roll(faults.get_html_rate):
        return html_response(200)
    if faults.roll(faults.get_redirect_rate):
        return web.Response(status=302, headers={"Location": LOGIN_PATH})
    return None


def bad_enqueue_answer(faults: Faults, ids: Sequence[str]) -> web.Response | None:
    """The broken 200 of an enqueue that did create `ids`, or None."""
    if not faults.roll(faults.enqueue_bad_body_rate):
        return None
    kind = faults.enqueue_bad_body
    if kind == "html":
        return html_response(200)
    if kind == "empty_object":
        return json_response({})
    if kind == "empty_generations":
        return json_response({"generations": []})
    # "extra_ids": a made-up id that no queue route will ever know.
    entries = [{"generation_id": i, "status": "queued"} for i in [*ids, str(uuid.uuid4())]]
    return json_response({"generations": entries})


async def drip(request: web.Request, resp: web.Response, interval: float) -> web.StreamResponse:
    """Send `resp` with its headers at once and its body a few bytes every `interval` s."""
    body = resp.body
    if not isinstance(body, bytes) or request.transport is None or request.transport.is_closing():
        return resp  # nothing to dribble, or the connection is already gone (lost response)
    out = web.StreamResponse(status=resp.status, reason=resp.reason)
    for name, value in resp.headers.items():
        if name.lower() != "content-length":
            out.headers.add(name, value)
    out.content_length = len(body)
    try:
        await out.prepare(request)
        for start in range(0, len(body), DRIP_PIECE_BYTES):
            if start:
                await asyncio.sleep(interval)
            await out.write(body[start : start + DRIP_PIECE_BYTES])
        await out.write_eof()
    except ConnectionError:  # the client gave up on the slow answer: nothing to report
        pass
    return out

"""Raw-HTTP helpers for the local server's tests: images, an SSE reader, error-body checks.

The server is tested with plain aiohttp on purpose, never through oxedit's client: these tests
pin the wire format the client is tested against.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import aiohttp
import msgspec
from PIL import Image

from oxedit.testing import LocalServer

TYPED_ERROR_KEYS = {"error", "status", "status_message"}


def image_bytes(
    size: tuple[int, int] = (8, 8), color: tuple[int, int, int] = (10, 120, 230), fmt: str = "PNG"
) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


def data_uri(data: bytes | None = None, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data or image_bytes()).decode()


def edit_body(prompt: str = "invert the colours", **extra: Any) -> dict[str, Any]:
    return {"model": "qwen-image-edit", "prompt": prompt, "input_image": data_uri(), **extra}


async def assert_typed_error(
    resp: aiohttp.ClientResponse, status: int, type_: str, detail_contains: str | None = None
) -> dict[str, Any]:
    """The first documented error shape, with its status code."""
    body = await resp.json()
    assert resp.status == status, body
    assert set(body) == TYPED_ERROR_KEYS, body
    assert body["status"] == "error"
    assert body["status_message"] == type_
    assert body["error"]["type"] == type_
    assert isinstance(body["error"]["title"], str) and body["error"]["title"]
    if detail_contains is not None:
        assert detail_contains in body["error"]["detail"], body
    return body  # type: ignore[no-any-return]


class EventReader:
    """Reads an open `GET /api/events` response frame by frame (frames end with a blank line)."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self.resp = resp

    async def frame(self) -> bytes:
        """The next raw frame, blank line included; b"" at the end of the stream."""
        frame = await self.resp.content.readuntil(b"\n\n")
        assert not frame or frame.endswith(b"\n\n"), f"stream ended mid-frame: {frame!r}"
        return frame

    async def event(self, *, skip_keepalives: bool = True) -> tuple[str, dict[str, Any]]:
        """The next `(event type, data)`; comments (keep-alives) are skipped."""
        while True:
            frame = await self.frame()
            if not frame:
                raise EOFError("event stream ended")
            if frame.startswith(b":") and skip_keepalives:
                continue
            fields = dict(line.split(": ", 1) for line in frame.decode().splitlines() if line)
            assert set(fields) == {"event", "data"}, frame  # no id:, no retry:
            return fields["event"], msgspec.json.decode(fields["data"])

    async def completion(self) -> dict[str, Any]:
        """The data of the next `media_generation_completed` event, ignoring other types."""
        while True:
            kind, data = await self.event()
            if kind == "media_generation_completed":
                return data


def session_for(server: LocalServer) -> aiohttp.ClientSession:
    """A session for `server` like the `http` fixture, for tests that start their own server."""
    return aiohttp.ClientSession(
        base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}
    )


async def enqueue(http: aiohttp.ClientSession, body: dict[str, Any]) -> list[str]:
    """POST /api/ai/queue, checking the documented response; the generation ids."""
    async with http.post("/api/ai/queue", json=body) as resp:
        assert resp.status == 200, await resp.text()
        payload = await resp.json()
    assert set(payload) == {"generations"}
    for gen in payload["generations"]:
        assert set(gen) == {"generation_id", "status"} and gen["status"] == "queued"
    return [gen["generation_id"] for gen in payload["generations"]]


async def get_row(http: aiohttp.ClientSession, gen_id: str) -> dict[str, Any]:
    async with http.get(f"/api/ai/queue/{gen_id}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()  # type: ignore[no-any-return]


async def download(url: str) -> bytes:
    """GET a result URL the way a careful client does: a fresh session, no API key."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()

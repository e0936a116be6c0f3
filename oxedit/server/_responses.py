"""JSON responses and the two documented error body shapes.

Typed shape (most errors):
    {"error": {"type": "invalid_params", "title": "...", "detail": "..."},
     "status": "error", "status_message": "invalid_params"}
Message shape (unknown model, rate limit):
    {"error": {"message": "Model not found: bad-model-name"}}
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

__all__ = [
    "ApiError",
    "decode_json",
    "encoder",
    "html_response",
    "invalid_params",
    "json_response",
    "message_error",
    "not_found",
    "status_error",
    "typed_error",
    "unauthenticated",
]

# Built once: per-call encoders/decoders are the main avoidable cost at 10k requests.
encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder()


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=encoder.encode(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def decode_json(data: bytes) -> Any:
    """Decode a request body; raises `ApiError` (400 invalid_params) on malformed JSON."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise invalid_params(f"Request body is not valid JSON: {exc}") from None


_TITLES = {
    "invalid_params": "Invalid parameters",
    "forbidden": "Forbidden",
    "resource_not_found": "Resource not found",
    "unauthenticated": "Unauthenticated",
    "unknown_error": "Unknown error",
}


def typed_error(
    status: int, type_: str, title: str | None = None, detail: str | None = None
) -> web.Response:
    error: dict[str, str] = {"type": type_, "title": title or _TITLES.get(type_, type_)}
    if detail is not None:
        error["detail"] = detail
    return json_response(
        {"error": error, "status": "error", "status_message": type_}, status=status
    )


def message_error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response({"error": {"message": message}}, status=status, headers=headers)


class ApiError(Exception):
    """Raised by handlers, answered by the middleware with `response`."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def invalid_params(detail: str) -> ApiError:
    return ApiError(typed_error(400, "invalid_params", detail=detail))


def not_found(title: str) -> ApiError:
    return ApiError(typed_error(404, "resource_not_found", title=title))


def unauthenticated() -> web.Response:
    return typed_error(
        401,
        "unauthenticated",
        title="Missing or invalid API key: send 'Authorization: Bearer <api key>'",
    )


# What a misconfigured proxy or a single-sign-on gateway answers in place of the API.
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n"
    b'<body><h1>Sign in to continue</h1><form action="/login" method="post">'
    b'<input name="user"><input name="password" type="password"></form></body></html>\n'
)


def html_response(status: int = 200) -> web.Response:
    return web.Response(body=HTML_PAGE, status=status, content_type="text/html", charset="utf-8")


def status_error(status: int) -> web.Response:
    """A typed error body fitting `status`, for refusals of any status the faults choose."""
    if status == 401:
        return unauthenticated()
    type_ = {403: "forbidden", 404: "resource_not_found"}.get(
        status, "unknown_error" if status >= 500 else "invalid_params"
    )
    return typed_error(status, type_)

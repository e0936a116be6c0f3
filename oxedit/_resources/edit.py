"""The blocking edit endpoint, `POST /api/ai/images/edit`: no queue row, no event.

It has no row to look for afterwards, so a lost answer cannot be checked: refusals (429/503)
are retried, anything that may have been carried out is not.

The docs send the image as `input_image`, the spec's `ImageEditRequest` as `image` [doc vs
spec]. The documented form goes first; a 400 that names `image` is answered by one more try
in that form (a 400 created nothing, so sending again cannot bill twice), and the form that
worked is kept on the `Api` for the client's life. From the spec's form, any 400 naming either
field leads back to the documented one the same way.
"""

from __future__ import annotations

import re
from typing import Any

from .._exceptions import (
    AmbiguousRequestError,
    APIConnectionError,
    APIStatusError,
    status_error,
    unexpected_status,
)
from .._http.api import Api, decode
from .._http.retry import Verdict, classify
from .._models import EditResult, edit_decoder, json_encoder
from .._response import is_success, parse_retry_after

__all__ = ["blocking_edit", "names_field"]

_PATH = "/api/ai/images/edit"
_DOCUMENTED = "input_image"
_OTHER = {"input_image": "image", "image": "input_image"}


def names_field(error: APIStatusError, field: str) -> bool:
    """True when `error` is a 400 whose message names `field` as a word of its own
    (`image` is not named by "input_image" nor by "/api/ai/images/edit")."""
    if error.status_code != 400:
        return False
    return re.search(rf"(?<![\w-]){re.escape(field)}(?![\w-])", error.message) is not None


def _in_form(payload: dict[str, Any], field: str) -> bytes:
    """The body with its image under `field` (the payload is built with `input_image`)."""
    if field != _DOCUMENTED and _DOCUMENTED in payload:
        payload = {(field if k == _DOCUMENTED else k): v for k, v in payload.items()}
    return json_encoder.encode(payload)


async def blocking_edit(api: Api, payload: dict[str, Any]) -> EditResult:
    """Send one edit and return its decoded answer."""
    field = api.edit_image_field
    body = _in_form(payload, field)
    refused: APIStatusError | None = None  # the first form's 400, while the other is tried
    retrying = api.retrying()
    async for _ in retrying:
        try:
            resp = await api.send("POST", _PATH, body, route=_PATH)
        except APIConnectionError as exc:
            verdict = classify("POST", None, sent=exc.sent)
            if verdict is Verdict.AMBIGUOUS:
                raise AmbiguousRequestError(
                    f"POST {_PATH}: the response was lost ({exc}); it may have been carried "
                    "out and billed, so it was not sent again"
                ) from exc
            retrying.failed(exc, verdict)
            continue
        if is_success(resp.status):
            api.edit_image_field = field
            return decode(edit_decoder, resp, f"POST {_PATH}")
        if resp.status < 400:
            raise unexpected_status(resp, f"POST {_PATH}")
        error = status_error(resp, what=f"POST {_PATH}")
        if resp.status == 400 and _DOCUMENTED in payload:
            other = _OTHER[field]
            # "image is required": the service wants the other form. Away from the
            # documented form only on that sign; back to it on any word about the field
            # ("unknown field image"). Once per call.
            asked = names_field(error, other) or (
                field != _DOCUMENTED and names_field(error, field)
            )
            if refused is None and asked:
                refused, field = error, other
                body = _in_form(payload, field)
                retrying.again()  # a 400 created nothing: the other form, at once
                continue
            if refused is not None:
                if names_field(error, field) or names_field(error, other):
                    # Refused in both forms: the field was not the question; the first
                    # answer is the one that says what is wrong.
                    raise refused
                api.edit_image_field = field  # accepted; something else is wrong
        # An ambiguous 5xx is given up on too: with no row to look for, re-sending could
        # bill twice.
        retrying.failed(
            error,
            classify("POST", resp.status),
            parse_retry_after(resp.headers.get("Retry-After")),
        )
    raise AssertionError("unreachable: the loop returns or raises")

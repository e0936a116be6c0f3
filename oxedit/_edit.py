"""The blocking edit endpoint, `POST /api/ai/images/edit`: no queue row, no event.

It has no row to look for afterwards, so a lost answer cannot be checked: refusals (429/503)
are retried, anything that may have been carried out is not.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._api import Api, decode, unexpected_status
from ._exceptions import AmbiguousRequestError, OxeditError
from ._models import EditResult, edit_decoder, json_encoder
from ._retry import Outcome, classify, parse_retry_after
from ._transport import ConnectionFailed, is_success, status_error

__all__ = ["blocking_edit"]

_PATH = "/api/ai/images/edit"


async def blocking_edit(api: Api, payload: dict[str, Any]) -> EditResult:
    """Send one edit and return its decoded answer."""
    body = json_encoder.encode(payload)
    retry = api.retry
    attempt = 0
    while True:
        try:
            resp = await api.post(_PATH, body, route=_PATH)
        except ConnectionFailed as exc:
            if exc.sent:
                raise AmbiguousRequestError(
                    f"POST {_PATH}: the response was lost ({exc}); it may have been carried "
                    "out and billed, so it was not sent again"
                ) from exc
            error: OxeditError = exc
            retry_after = None
        else:
            if is_success(resp.status):
                return decode(edit_decoder, resp, f"POST {_PATH}")
            if resp.status < 400:
                raise unexpected_status(resp, f"POST {_PATH}")
            error = status_error(resp, what=f"POST {_PATH}")
            if classify("POST", resp.status) is not Outcome.RETRY:
                raise error
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if attempt >= retry.max_retries:
            raise error
        api.stats.retries += 1
        await asyncio.sleep(retry.delay(attempt, retry_after))
        attempt += 1

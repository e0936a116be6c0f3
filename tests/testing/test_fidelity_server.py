"""The local server where the published docs and spec disagree (issue 14 items 7-9).

Raw aiohttp on purpose, never oxedit's client: these tests pin the wire format.
"""

from __future__ import annotations

import aiohttp
import pytest

from ._helpers import edit_body

pytestmark = pytest.mark.anyio

MODEL_NOT_FOUND = {"error": {"message": "Model not found: bad-model-name"}}


# -- item 7: unknown model -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/ai/queue", "/api/ai/images/edit"])
async def test_unknown_model_is_400_with_the_docs_message_body(
    http: aiohttp.ClientSession, path: str
) -> None:
    # [spec] POST /api/ai/queue lists only 400; [doc] the message-shaped body.
    async with http.post(path, json=edit_body(model="bad-model-name")) as resp:
        assert resp.status == 400
        assert await resp.json() == MODEL_NOT_FOUND

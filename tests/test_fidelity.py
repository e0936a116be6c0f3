"""The client where the published docs and spec disagree (issue 14 items 7-9), over real sockets.

Item 7: an unknown model refused by the enqueue itself (400 in the spec, 404 before).
Item 8: the edit endpoint's image field (`input_image` in the docs, `image` in the spec).
Item 9: result URLs on the API's own host (as the docs' hub.oxen.ai examples are).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

import oxedit
from oxedit._exceptions import status_error
from oxedit._response import Response
from oxedit.testing import Faults, LocalServer

from .helpers import png, serve

pytestmark = pytest.mark.anyio

NO_RETRY = oxedit.RetryPolicy(max_retries=0)

Override = Callable[[web.Request], web.StreamResponse | None]


@asynccontextmanager
async def front(server: LocalServer, override: Override) -> AsyncIterator[str]:
    """A reverse proxy on its own socket in front of `server`, yielding its URL: `override`
    answers some requests itself (returning None forwards them), so a test can take one
    endpoint down while the rest stays the real local server."""
    async with aiohttp.ClientSession(auto_decompress=False) as upstream:

        async def forward(request: web.Request) -> web.StreamResponse:
            own = override(request)
            if own is not None:
                return own
            headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
            async with upstream.request(
                request.method,
                server.url + request.path_qs,
                headers=headers,
                data=await request.read(),
                allow_redirects=False,
            ) as answer:
                resp = web.StreamResponse(status=answer.status)
                for key in ("Content-Type", "Content-Encoding", "Location", "Retry-After"):
                    if key in answer.headers:
                        resp.headers[key] = answer.headers[key]
                await resp.prepare(request)
                async for chunk in answer.content.iter_any():  # event streams too
                    await resp.write(chunk)
                await resp.write_eof()
                return resp

        async with serve(forward) as url:
            yield url


def models_down(request: web.Request) -> web.StreamResponse | None:
    """The models endpoint answers 503, so the client cannot check the model before sending."""
    if request.path.startswith("/api/ai/models"):
        return web.json_response(
            {"error": {"type": "unknown_error", "title": "Service unavailable"}}, status=503
        )
    return None


# -- item 7: an unknown model, refused by the enqueue itself -----------------------------------


def _refused(status: int, body: bytes) -> oxedit.APIStatusError:
    return status_error(Response(status, {}, body), what="enqueue")


@pytest.mark.parametrize("status", [400, 404])
def test_status_error_names_the_unknown_model_in_either_status(status: int) -> None:
    error = _refused(status, b'{"error": {"message": "Model not found: bad-model-name"}}')
    assert isinstance(error, oxedit.ModelNotFoundError)
    # Caught the same way as the check before sending, as the spec's 400 and as the old 404.
    assert isinstance(error, oxedit.InvalidRequestError)
    assert isinstance(error, oxedit.BadRequestError) and isinstance(error, oxedit.NotFoundError)
    assert (error.model, error.status_code) == ("bad-model-name", status)
    assert error.body == {"error": {"message": "Model not found: bad-model-name"}}
    assert "model 'bad-model-name' does not exist" in str(error)
    assert "client.models()" in str(error) and f"HTTP {status}" in str(error)


def test_status_error_reads_the_model_from_the_typed_body_shape_too() -> None:
    body = (
        b'{"error": {"type": "resource_not_found", "title": "Model not found: flux-2"},'
        b' "status": "error", "status_message": "resource_not_found"}'
    )
    error = _refused(404, body)
    assert isinstance(error, oxedit.ModelNotFoundError) and error.model == "flux-2"


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        # A 400 about something else stays a plain BadRequestError.
        (400, b'{"error": {"message": "num_generations must be 1-4"}}', "BadRequestError"),
        (404, b'{"error": {"message": "Generation not found: abc"}}', "NotFoundError"),
        # Only a refusal (400/404) says the model does not exist; a 5xx is the server's fault.
        (500, b'{"error": {"message": "Model not found: x"}}', "ServerError"),
        # "Model not found" with no name after it names nothing.
        (400, b'{"error": {"message": "Model not found"}}', "BadRequestError"),
        (400, b"Model not found: x", "ModelNotFoundError"),  # a plain-text body
    ],
)
def test_status_error_model_not_found_edges(status: int, body: bytes, kind: str) -> None:
    assert type(_refused(status, body)).__name__ == kind


async def test_unknown_model_refused_by_the_enqueue_is_a_model_not_found_error() -> None:
    # The models endpoint is down, so the model cannot be checked first: the enqueue's own
    # answer (400, the docs' message body) must still say which model is unknown.
    async with LocalServer() as server, front(server, models_down) as url:
        async with oxedit.Client(api_key=server.api_key, base_url=url, retry=NO_RETRY) as client:
            with pytest.raises(oxedit.ModelNotFoundError) as info:
                await client.submit(prompt="invert", image=png(), model="no-such-model")
            with pytest.raises(oxedit.ModelNotFoundError) as edit:
                await client.edit(prompt="invert", image=png(), model="no-such-model")
        assert server.stats.requests_by_route["POST /api/ai/queue"] == 1
        assert server.stats.generations_created == 0
        # Not about the image field: the edit is not sent again in the other form.
        assert server.stats.requests_by_route["POST /api/ai/images/edit"] == 1
    for error in (info.value, edit.value):
        assert error.status_code == 400 and error.model == "no-such-model"
        assert isinstance(error, oxedit.InvalidRequestError)
        assert "model 'no-such-model' does not exist" in str(error)


async def test_unknown_model_answered_404_is_a_model_not_found_error_too() -> None:
    # A service that answers the docs' body with 404 (as this local server used to).
    def not_found(request: web.Request) -> web.StreamResponse | None:
        if request.method == "POST" and request.path == "/api/ai/queue":
            return web.json_response({"error": {"message": "Model not found: gone"}}, status=404)
        return models_down(request)

    async with (
        LocalServer() as server,
        front(server, not_found) as url,
        oxedit.Client(api_key=server.api_key, base_url=url, retry=NO_RETRY) as client,
    ):
        with pytest.raises(oxedit.ModelNotFoundError) as info:
            await client.submit(prompt="invert", image=png(), model="gone")
    assert (info.value.status_code, info.value.model) == (404, "gone")
    assert isinstance(info.value, oxedit.NotFoundError)


# -- item 8: the edit endpoint's image field -----------------------------------------------------

EDITS = "POST /api/ai/images/edit"


async def test_edit_sends_the_documented_field_first() -> None:
    async with LocalServer() as server, server.client(retry=NO_RETRY) as client:
        result = await client.edit(prompt="invert", image=png())
        assert await result.read()
    assert server.stats.requests_by_route[EDITS] == 1


async def test_edit_falls_back_to_the_spec_field_once_and_remembers_it() -> None:
    # A service that follows the spec (`image`) answers 400 naming `image`: one retry in that
    # form, and the client's later edits use it from the start.
    async with LocalServer(faults=Faults(edit_field="image")) as server:
        async with server.client(retry=NO_RETRY) as client:
            first = await client.edit(prompt="invert", image=png())
            assert server.stats.requests_by_route[EDITS] == 2
            second = await client.edit(prompt="mirror", image=png(), response_format="b64_json")
            assert server.stats.requests_by_route[EDITS] == 3
            assert await first.read() != await second.read()
            # The service goes back to the documented form: one more switch, back again.
            server.faults.edit_field = "input_image"
            await client.edit(prompt="blur", image=png())
            assert server.stats.requests_by_route[EDITS] == 5
            await client.edit(prompt="blur", image=png())
            assert server.stats.requests_by_route[EDITS] == 6
        server.faults.edit_field = "image"
        async with server.client(retry=NO_RETRY) as fresh:  # remembered per client, not globally
            await fresh.edit(prompt="invert", image=png())
        assert server.stats.requests_by_route[EDITS] == 8


async def test_edit_400_that_is_not_about_the_field_is_not_sent_again() -> None:
    # The first answer names `image` in passing; the other form is refused too (the server
    # wants `input_image`): the first error is raised, and the documented form kept.
    sent: list[str] = []

    def bad_image(request: web.Request) -> web.StreamResponse | None:
        if request.path == "/api/ai/images/edit":
            sent.append("edit")
            if len(sent) == 1:
                return web.json_response(
                    {"error": {"type": "invalid_params", "title": "Invalid image data"}},
                    status=400,
                )
        return None

    async with (
        LocalServer() as server,
        front(server, bad_image) as url,
        oxedit.Client(api_key=server.api_key, base_url=url, retry=NO_RETRY) as client,
    ):
        with pytest.raises(oxedit.BadRequestError, match="Invalid image data"):
            await client.edit(prompt="invert", image=png())
        assert len(sent) == 2  # one retry in the other form, refused as an unknown field
        await client.edit(prompt="invert", image=png())  # the documented form, at once
        assert len(sent) == 3
        assert server.stats.requests_by_route[EDITS] == 2


@pytest.mark.parametrize(
    ("status", "text", "named"),
    [
        (400, "image is required", True),
        (400, "Json deserialize error: missing field `image` at line 1 column 80", True),
        (400, "'image' is a required property", True),
        (400, "input_image is required", False),  # names the other field, not `image`
        (400, "input_image must be jpeg, png, gif, or webp", False),
        (400, "mask image-url is invalid", False),
        (400, "Invalid parameters", False),  # the path in the prefix is no word of its own
        (422, "image is required", False),  # only a 400 says what the request lacks
    ],
)
def test_names_field_edges(status: int, text: str, named: bool) -> None:
    from oxedit._resources.edit import names_field

    body = f'{{"error": {{"message": "{text}"}}}}'.encode()
    error = status_error(Response(status, {}, body), what="POST /api/ai/images/edit")
    assert names_field(error, "image") is named


# -- item 9: result URLs on the API's own host ---------------------------------------------------

# Where the local server serves results on its API host (a hub repo file route, as the docs'
# result URLs are); it answers 401 without the Bearer key, like every `/api` route.
API_RESULTS = "GET /api/repos/oxedit/results/file/main/{name}"


def _is_png(data: bytes) -> bool:
    return data.startswith(b"\x89PNG\r\n\x1a\n")


async def test_results_on_the_api_host_are_downloaded_with_the_key() -> None:
    async with LocalServer(results_on_api_host=True) as server:
        async with server.client(retry=NO_RETRY) as client:
            gen = await (await client.submit(prompt="invert", image=png()))
            assert gen.url is not None and gen.url.startswith(server.url + "/api/")
            assert _is_png(await gen.read())
            edit = await client.edit(prompt="mirror", image=png())
            assert (edit.images[0].url or "").startswith(server.url + "/api/")
            assert _is_png(await edit.read())
        # Both answered 200 by a route that refuses requests without the key.
        assert server.stats.requests_by_route[API_RESULTS] == 2
        assert server.stats.file_requests == 0


async def test_results_on_the_file_host_never_see_the_key() -> None:
    async with LocalServer() as server:
        async with server.client(retry=NO_RETRY) as client:
            gen = await (await client.submit(prompt="invert", image=png()))
            assert gen.url is not None and gen.url.startswith(server.files_url + "/")
            assert _is_png(await gen.read())
        assert server.stats.file_requests == 1
        assert server.stats.file_requests_with_auth == 0
        assert server.stats.requests_by_route[API_RESULTS] == 0


async def test_a_redirect_from_the_api_host_to_another_host_drops_the_key() -> None:
    async with LocalServer(results_on_api_host="redirect") as server:
        async with server.client(retry=NO_RETRY) as client:
            gen = await (await client.submit(prompt="invert", image=png()))
            assert gen.url is not None and gen.url.startswith(server.url + "/api/")
            assert _is_png(await gen.read())
        assert server.stats.requests_by_route[API_RESULTS] == 1  # with the key: else 401
        assert server.stats.file_requests == 1  # the hop the redirect pointed at
        assert server.stats.file_requests_with_auth == 0


async def test_an_expired_result_url_on_the_api_host_is_refreshed_once() -> None:
    async with LocalServer(results_on_api_host=True) as server:
        server.faults.url_ttl = -10  # every URL handed out is already expired
        async with server.client(retry=NO_RETRY) as client:
            gen = await (await client.submit(prompt="invert", image=png()))
            server.faults.url_ttl = 3600  # the row's fresh URL will be valid
            assert _is_png(await gen.read())
        assert server.stats.requests_by_route[API_RESULTS] == 2  # 403 expired, then 200
        assert server.stats.requests_by_route["GET /api/ai/queue/{generation_id}"] == 1

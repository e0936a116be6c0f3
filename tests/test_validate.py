"""Schema-driven validation before sending (issue 13 "every model's schema", issue 14 items
4-5): against the local server over real sockets, and the pure parts at their edges."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from PIL import Image

import oxedit
from oxedit._catalogue import CatalogueModel
from oxedit._models import Model
from oxedit._resources.validate import FALLBACK, DiskCache, Schema, Schemas, _shape
from oxedit.server import _schemas as server_schemas
from oxedit.server._api import Api as ServerApi
from oxedit.server._responses import typed_error
from oxedit.testing import Faults, LocalServer

from .helpers import FAST_RETRY, client_for, png

pytestmark = pytest.mark.anyio

QUEUE = "POST /api/ai/queue"
MODEL_GET = "GET /api/ai/models/{model_id}"
NEWCOMER = "acme-image-edit-2"  # served by the local server, unknown to the client's table


@pytest.fixture
def newcomer() -> Iterator[str]:
    """A model the local server serves that oxedit's offline table has never heard of, as if
    the API had added it today."""
    entry = CatalogueModel(
        id=NEWCOMER,
        display_name="Acme Image Edit 2",
        inputs=("text", "image"),
        outputs=("image",),
        pricing={"method": "per_image", "cost_per_image": 0.01},
        created=1790000000,
        request_schema={
            "type": "object",
            "required": ["prompt", "input_image"],
            "properties": {
                "prompt": {"type": "string"},
                "input_image": {"type": "string", "format": "uri"},
                "style": {"type": "string", "enum": ["flat", "glossy"], "default": "flat"},
                "strength": {"type": "number", "minimum": 0, "maximum": 1},
            },
        },
    )
    assert NEWCOMER not in FALLBACK
    server_schemas.MODELS[NEWCOMER] = server_schemas._model(entry)
    yield NEWCOMER
    del server_schemas.MODELS[NEWCOMER]


# -- over real sockets -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"style": "matte"},
            "style='matte' is not one of flat, glossy (model 'acme-image-edit-2')",
        ),
        ({"strength": 1.5}, "strength=1.5 must be from 0 to 1 (model 'acme-image-edit-2')"),
        ({"strength": "x"}, "strength='x' must be a number (model 'acme-image-edit-2')"),
        (
            {"strenght": 0.3},
            "strenght=0.3 is not a parameter of model 'acme-image-edit-2'; its parameters are "
            "input_image, prompt, strength, style",
        ),
    ],
)
async def test_a_new_models_schema_refuses_bad_values_before_any_post(
    oxen_server: LocalServer, newcomer: str, params: dict[str, Any], message: str
) -> None:
    async with client_for(oxen_server) as client:
        with pytest.raises(oxedit.InvalidRequestError) as info:
            await client.submit(prompt="invert", image=png(), model=newcomer, **params)
        assert str(info.value) == message
        job = await client.submit(prompt="invert", image=png(), model=newcomer, style="glossy")
        assert (await job).status == "succeeded"
    stats = oxen_server.stats
    assert stats.requests_by_route[QUEUE] == 1 and stats.generations_created == 1
    assert stats.requests_by_route[MODEL_GET] == 1


async def test_concurrent_first_submits_share_one_schema_fetch(oxen_server: LocalServer) -> None:
    image = png()
    async with client_for(oxen_server) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt="invert", image=image, aspect_ratio="1:1") for _ in range(20))
        )
        jobs.append(await client.submit(prompt="invert", image=image))
        assert [(await job).status for job in jobs] == ["succeeded"] * 21
    assert oxen_server.stats.requests_by_route[MODEL_GET] == 1  # then no I/O per request
    assert oxen_server.stats.requests_by_route[QUEUE] == 21


async def test_a_bad_request_behind_a_line_of_submits_is_refused_at_once() -> None:
    # A submit waits for its turn behind those already in line (the start window, then one
    # connection): a bad request is refused from the cached schema before it waits.
    async with (
        LocalServer(faults=Faults(latency=0.2)) as server,
        client_for(server, limits=oxedit.Limits(max_connections=1)) as client,
    ):
        await client.submit(prompt="p", image=png())  # the schema is cached
        line = [asyncio.create_task(client.submit(prompt="p", image=png())) for _ in range(40)]
        await asyncio.sleep(0)  # each runs up to where it waits
        with pytest.raises(oxedit.InvalidRequestError, match="aspect_ratio"):
            await client.submit(prompt="p", image=png(), aspect_ratio="7:5")
        assert sum(task.done() for task in line) < 40  # it did not wait for the line
        jobs = await asyncio.gather(*line)
        assert [(await job).status for job in jobs] == ["succeeded"] * 40


async def test_bad_requests_in_a_first_burst_each_fail_and_the_good_ones_go() -> None:
    # The first submits of a model are checked once their turn came (the schema is being
    # fetched): each bad one hands its turn on, so none of those behind it waits for ever.
    async with (
        LocalServer() as server,
        client_for(server, limits=oxedit.Limits(max_connections=2)) as client,
    ):
        async with asyncio.timeout(20):
            results = await asyncio.gather(
                *(
                    client.submit(prompt="p", image=png(), aspect_ratio="7:5" if i % 2 else "1:1")
                    for i in range(60)
                ),
                return_exceptions=True,
            )
            bad = results[1::2]
            assert all(isinstance(r, oxedit.InvalidRequestError) for r in bad), bad[:3]
            good = [r for r in results[::2] if isinstance(r, oxedit.Job)]
            assert [(await job).status for job in good] == ["succeeded"] * 30
    assert server.stats.requests_by_route[QUEUE] == 30


async def test_an_unknown_model_is_refused_before_sending(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        for _ in range(2):
            with pytest.raises(oxedit.InvalidRequestError) as info:
                await client.submit(prompt="p", image=png(), model="flux-2")
            assert str(info.value).startswith("model 'flux-2' does not exist; see client.models()")
        with pytest.raises(oxedit.InvalidRequestError, match="does not exist"):
            await client.edit(prompt="p", image=png(), model="seedream")
    assert QUEUE not in oxen_server.stats.requests_by_route
    assert oxen_server.stats.requests_by_route[MODEL_GET] == 2  # one per model


async def test_jpg_is_accepted_and_jpeg_refused(oxen_server: LocalServer) -> None:
    # Issue 14 item 4: output_format is webp, jpg or png [doc].
    async with client_for(oxen_server) as client:
        with pytest.raises(oxedit.InvalidRequestError) as info:
            await client.submit(
                prompt="invert", image=png(), model="qwen-image-edit-plus", output_format="jpeg"
            )
        assert str(info.value) == (
            "output_format='jpeg' is not one of webp, jpg, png (model 'qwen-image-edit-plus')"
        )
        job = await client.submit(
            prompt="invert", image=png(), model="qwen-image-edit-plus", output_format="jpg"
        )
        data = await client.read(await job)
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    assert oxen_server.stats.generations_created == 1


@pytest.mark.parametrize(
    "model", ["qwen-image-edit-plus", "flux-2-dev", "flux-2-pro", "flux-2-flex",
              "bytedance-seedream-4"],
)  # fmt: skip
async def test_multi_image_models_get_an_array_even_for_one_image(
    oxen_server: LocalServer, model: str
) -> None:
    # Issue 14 item 5: their input_image is array<string> [doc]. The second request has the
    # shape of the first: checked from the cache, and reshaped as the first was.
    async with client_for(oxen_server) as client:
        for _ in range(2):
            generation = await (await client.submit(prompt="invert", image=png(), model=model))
            assert generation.status == "succeeded"
    images = [row["input_image"] for row in oxen_server.generations()]
    assert [len(i) for i in images if isinstance(i, list)] == [1, 1], images


async def test_one_image_model_refuses_several(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        with pytest.raises(oxedit.InvalidRequestError, match="takes one image, got 2"):
            await client.submit(prompt="p", image=[png(), png()], model="flux-kontext-dev")
        with pytest.raises(oxedit.InvalidRequestError, match=r"must be from 4 to 50"):
            await client.submit(prompt="p", image=png(), model="flux-kontext-dev",
                                num_inference_steps=3)  # fmt: skip
    assert QUEUE not in oxen_server.stats.requests_by_route


async def test_an_unavailable_schema_falls_back_and_never_fails_a_submit(
    monkeypatch: pytest.MonkeyPatch, newcomer: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def outage(self: ServerApi, request: web.Request) -> web.StreamResponse:
        return typed_error(503, "unknown_error", title="Service unavailable")

    monkeypatch.setattr(ServerApi, "get_model", outage)
    async with LocalServer() as server, client_for(server, retry=FAST_RETRY) as client:
        # A model in the offline table is still checked with it...
        with pytest.raises(oxedit.InvalidRequestError, match="aspect_ratio='5:1' is not one"):
            await client.submit(prompt="p", image=png(), aspect_ratio="5:1")
        job = await client.submit(prompt="invert", image=png(), aspect_ratio="1:1")
        # ...and one it does not know is sent unchecked: the API decides.
        with pytest.raises(oxedit.BadRequestError):
            await client.submit(prompt="p", image=png(), model=newcomer, nonsense=1)
        assert (await job).status == "succeeded"
        assert server.stats.requests_by_route[QUEUE] == 2
    outages = [r for r in caplog.records if "could not be fetched" in r.getMessage()]
    assert [r.levelno for r in outages] == [logging.WARNING] * 2  # one line per model


async def test_the_cli_keeps_schemas_on_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oxen_server: LocalServer
) -> None:
    from .helpers import cli

    monkeypatch.setenv("OXEN_BASE_URL", oxen_server.url)
    monkeypatch.setenv("OXEN_API_KEY", oxen_server.api_key)
    monkeypatch.setenv("OXEDIT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "a.png").write_bytes(png())
    for name in ("one", "two"):
        out = tmp_path / f"{name}.png"
        assert await cli("edit", str(tmp_path / "a.png"), "invert", "-o", str(out)) == 0
    assert oxen_server.stats.requests_by_route[MODEL_GET] == 1  # the second run read the file
    assert len(list((tmp_path / "cache").glob("schemas-*.json"))) == 1


async def test_the_cli_takes_each_models_own_aspect_ratios(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oxen_server: LocalServer
) -> None:
    from .helpers import cli

    monkeypatch.setenv("OXEN_BASE_URL", oxen_server.url)
    monkeypatch.setenv("OXEN_API_KEY", oxen_server.api_key)
    (tmp_path / "a.png").write_bytes(png())
    edit = ("edit", str(tmp_path / "a.png"), "invert", "-o", str(tmp_path / "b.png"))
    assert await cli(*edit, "--model", "flux-kontext-dev", "--aspect-ratio", "21:9") == 0
    # ...and the schema refuses what the model does not take, naming it, before sending.
    assert await cli(*edit, "--aspect-ratio", "21:9") == 2
    assert oxen_server.stats.requests_by_route[QUEUE] == 1


# -- the pure parts --------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "required": ["prompt", "input_image", "mode"],
    "properties": {
        "prompt": {"type": "string"},
        "input_image": {"type": "array", "items": {"type": "string"}},
        "mode": {"type": "string", "enum": ["a", "b"]},
        "steps": {"type": "integer", "minimum": 4, "maximum": 50},
        "scale": {"type": "number", "minimum": 0},
        "flag": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "integer"}},
        "maybe": {"type": ["string", "null"], "maximum": 3},
        "odd": {"type": "mystery"},
    },
}


def _body(**params: Any) -> dict[str, Any]:
    return {"model": "m", "prompt": "p", "input_image": "u", "mode": "a", **params}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"steps": 3}, "steps=3 must be from 4 to 50 (model 'm')"),
        ({"steps": 51}, "steps=51 must be from 4 to 50 (model 'm')"),
        ({"steps": 4.5}, "steps=4.5 must be an integer (model 'm')"),
        ({"steps": True}, "steps=True must be an integer (model 'm')"),
        ({"scale": -0.1}, "scale=-0.1 must be at least 0 (model 'm')"),
        ({"flag": 1}, "flag=1 must be a boolean (model 'm')"),
        ({"mode": "c"}, "mode='c' is not one of a, b (model 'm')"),
        ({"tags": [1, "2"]}, "tags[1]='2' must be an integer (model 'm')"),
        ({"maybe": 7}, "maybe=7 must be a string (model 'm')"),
        ({"mode": None}, "model 'm' requires mode=...; pass it"),
    ],
)
def test_schema_edges(params: dict[str, Any], message: str) -> None:
    with pytest.raises(oxedit.InvalidRequestError) as info:
        Schema("m", SCHEMA).check(_body(**params))
    assert str(info.value) == message


def test_long_values_are_cut_short_in_errors() -> None:
    with pytest.raises(oxedit.InvalidRequestError) as info:
        Schema("m", SCHEMA).check(_body(mode="x" * 10_000))
    assert str(info.value) == f"mode='{'x' * 76}... is not one of a, b (model 'm')"


def test_schema_accepts_the_bounds_and_shapes_images() -> None:
    body = _body(steps=4, scale=0, flag=False, tags=[], maybe="x", odd={"any": 1})
    Schema("m", SCHEMA).check(body)
    assert body["input_image"] == ["u"]  # array models get an array even for one image
    body = _body(steps=50, num_generations=2, target_namespace="org")
    Schema("m", SCHEMA).check(body)  # queue parameters are not the model's


def test_fallback_table_comes_from_the_catalogue() -> None:
    from oxedit._catalogue import MODELS

    assert set(FALLBACK) == {m.id for m in MODELS if m.request_schema is not None}
    assert "qwen3-32b" not in FALLBACK and "flux-2" not in FALLBACK
    assert FALLBACK["flux-kontext-dev"]["properties"]["output_format"]["default"] == "webp"


async def test_schemas_cache_refetches_only_after_a_failure() -> None:
    calls: list[str] = []
    failing = True

    async def fetch(model: str) -> Model:
        calls.append(model)
        if failing:
            raise oxedit.ServerError("down", status_code=503, body=None)
        return Model(id=model, request_schema={"properties": {"prompt": {"type": "string"}}})

    schemas = Schemas(fetch)
    await schemas.check({"model": "x", "prompt": "p", "anything": 1})  # unchecked: unknown
    await schemas.check({"model": "x", "prompt": "p", "anything": 1})
    assert calls == ["x"]  # the failure is remembered for a while, not retried per request
    failing = False
    schemas._entries["x"].expires = 0  # the retry delay has passed
    with pytest.raises(oxedit.InvalidRequestError, match="anything=1 is not a parameter"):
        await schemas.check({"model": "x", "prompt": "p", "anything": 1})
    assert calls == ["x", "x"]


async def test_authentication_errors_are_not_swallowed() -> None:
    async def fetch(model: str) -> Model:
        raise oxedit.AuthenticationError("bad key", status_code=401, body=None)

    with pytest.raises(oxedit.AuthenticationError):
        await Schemas(fetch).check({"model": "qwen-image-edit", "prompt": "p"})


async def test_disk_cache_expires_and_survives_garbage(tmp_path: Path) -> None:
    disk = DiskCache(tmp_path / "c.json", ttl=600)
    assert await disk.get("m") == (False, None)
    await disk.put("m", {"properties": {}})
    await disk.put("schemaless", None)
    assert await disk.get("m") == (True, {"properties": {}})
    assert await disk.get("schemaless") == (True, None)
    assert await DiskCache(tmp_path / "c.json", ttl=0).get("m") == (False, None)
    (tmp_path / "c.json").write_text("{not json")
    assert await disk.get("m") == (False, None)
    blocked = DiskCache(tmp_path / "c.json" / "sub" / "d.json")
    await blocked.put("m", None)  # cannot be written: skipped, no error
    assert await blocked.get("m") == (False, None)


def test_disk_cache_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OXEDIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    a = DiskCache.for_base_url("https://hub.oxen.ai")
    b = DiskCache.for_base_url("http://127.0.0.1:8080")
    assert a.path.parent == Path("/xdg/oxedit") and a.path != b.path
    monkeypatch.setenv("OXEDIT_CACHE_DIR", "/elsewhere")
    assert DiskCache.for_base_url("https://hub.oxen.ai").path.parent == Path("/elsewhere")


def test_a_shape_key_tells_apart_every_request_a_check_could_tell_apart() -> None:
    # One flat tuple per request: each name is followed by what its kind takes, so no two
    # shapes may give the same key.
    requests: list[dict[str, Any]] = [
        {"input_image": "data:,1"},
        {"input_image": ["data:,1"]},
        {"input_image": ["data:,1", "data:,2"]},
        {"prompt": "p"},
        {"prompt": "p", "a": "prompt"},
        {"a": "prompt", "prompt": "p"},
        {"a": 1},
        {"a": 1.0},
        {"a": True},
        {"a": "1"},
        {"a": "b", "b": "a"},
        {"a": "a", "b": "b"},
        {"a": "b"},
        {"b": "a"},
    ]
    keys = [_shape(request) for request in requests]
    assert len(set(keys)) == len(keys)
    # What differs in every request (the prompt's and the images' values) is not in it.
    assert _shape({"prompt": "x", "input_image": "data:,1"}) == _shape(
        {"prompt": "y", "input_image": "data:,2"}
    )
    assert _shape({"a": [1]}) is None  # not a key: checked each time


async def test_a_request_of_the_last_ones_objects_is_checked_and_shaped_as_its_own() -> None:
    # A request holding the very objects of the last one checked is of its shape without
    # making its key: never one whose value merely equals (True == 1), nor one whose image
    # the last one did not have (a string where it had a list).
    raw = {
        "properties": {
            "prompt": {"type": "string"},
            "input_image": {"type": "array", "items": {"type": "string"}},
            "steps": {"type": "integer"},
        }
    }

    async def fetch(model: str) -> Model:
        return Model(id=model, request_schema=raw)

    schemas = Schemas(fetch)
    steps = 10**6  # one object, as a loop of submits passes it
    listed: dict[str, Any] = {"model": "m", "steps": steps, "prompt": "a", "input_image": ["x"]}
    await schemas.check(listed)
    one: dict[str, Any] = {"model": "m", "steps": steps, "prompt": "b", "input_image": "y"}
    assert schemas.cached(one)
    assert one["input_image"] == ["y"]  # shaped as the model takes it
    again: dict[str, Any] = {"model": "m", "steps": steps, "prompt": "c", "input_image": "z"}
    assert schemas.cached(again)
    assert again["input_image"] == ["z"]
    small: dict[str, Any] = {"model": "m", "steps": 1, "prompt": "d", "input_image": "z"}
    assert schemas.cached(small)
    flag: dict[str, Any] = {"model": "m", "steps": True, "prompt": "e", "input_image": "z"}
    with pytest.raises(oxedit.InvalidRequestError, match="steps=True"):
        schemas.cached(flag)


async def test_a_checked_request_shape_is_not_checked_again_but_others_are() -> None:
    fetched = []

    async def fetch(model: str) -> Model:
        fetched.append(model)
        return Model(id=model, request_schema=FALLBACK["qwen-image-edit-plus"])

    schemas = Schemas(fetch)
    first: dict[str, Any] = {
        "model": "m",
        "prompt": "a",
        "input_image": "data:,1",
        "aspect_ratio": "1:1",
    }
    await schemas.check(first)
    assert first["input_image"] == ["data:,1"]  # shaped as the model takes it
    again: dict[str, Any] = {
        "model": "m",
        "prompt": "b",
        "input_image": "data:,2",
        "aspect_ratio": "1:1",
    }
    assert schemas.cached(again)  # same shape: no check, but shaped all the same
    assert again["input_image"] == ["data:,2"]
    for bad in (
        {"aspect_ratio": "1:7"},  # another value
        {"aspect_ratio": 1},  # another type
        {"aspect_ratio": "1:1", "seed": "x"},  # another parameter
        {"prompt": 7},  # a prompt of another type
    ):
        request = {"model": "m", "prompt": "c", "input_image": "data:,3", **bad}
        with pytest.raises(oxedit.InvalidRequestError):
            schemas.cached(request)
    assert fetched == ["m"]

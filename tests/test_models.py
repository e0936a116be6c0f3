"""Wire shapes: both documented spellings, unknown fields ignored, timestamps optional."""

from __future__ import annotations

import msgspec
import pytest

from oxedit import Generation
from oxedit._models import (
    enqueue_decoder,
    event_decoder,
    generation_of_event,
    generation_of_row,
    model_decoder,
    queue_list_decoder,
    row_decoder,
)

ROW = (
    b'{"generation_id": "7cf9", "model_name": "qwen-image-edit", "prompt": "Add a funny hat",'
    b' "media_type": "image", "status": "succeeded", "result_url": "https://hub/x.png",'
    b' "error_message": null, "enqueued_at": 1775091431, "started_at": 1775091432,'
    b' "completed_at": 1775091450, "aspect_ratio": "16:9", "input_image": "https://in"}'
)


def test_row_to_generation() -> None:
    gen = generation_of_row(row_decoder.decode(ROW))
    assert gen == Generation(
        id="7cf9",
        status="succeeded",
        url="https://hub/x.png",
        error=None,
        model="qwen-image-edit",
        prompt="Add a funny hat",
        enqueued_at=1775091431.0,
        started_at=1775091432.0,
        completed_at=1775091450.0,
    )


def test_event_to_generation_has_no_timestamps() -> None:
    event = event_decoder.decode(
        b'{"generation_id":"bb8f","status":"failed","media_type":"image",'
        b'"error":"Insufficient credits","brand_new_field":[1,2]}'
    )
    gen = generation_of_event(event)
    assert (gen.id, gen.status, gen.error, gen.url, gen.completed_at) == (
        "bb8f",
        "failed",
        "Insufficient credits",
        None,
        None,
    )


def test_alternate_spellings_are_read() -> None:
    row = row_decoder.decode(
        b'{"generation_id":"a","status":"failed","model":"m","url":"u","error":"boom"}'
    )
    gen = generation_of_row(row)
    assert (gen.model, gen.url, gen.error) == ("m", "u", "boom")
    schema = model_decoder.decode(b'{"id":"m","json_request_schema":{"properties":{}}}').schema
    assert schema == {"properties": {}}


def test_enqueue_response_and_list() -> None:
    resp = enqueue_decoder.decode(
        b'{"generations":[{"generation_id":"a","status":"queued"},{"generation_id":"b"}]}'
    )
    assert [g.generation_id for g in resp.generations] == ["a", "b"]
    listed = queue_list_decoder.decode(b'{"count":1,"generations":[' + ROW + b"]}")
    assert listed.generations[0].generation_id == "7cf9"


@pytest.mark.parametrize(
    "payload", [b'{"status":"succeeded"}', b'{"generation_id":1,"status":"x"}', b"not json"]
)
def test_malformed_event_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        event_decoder.decode(payload)


def test_generation_is_frozen_and_serialisable() -> None:
    gen = Generation(id="a", status="succeeded", url="u")
    with pytest.raises(AttributeError):
        gen.status = "failed"  # type: ignore[misc]
    assert msgspec.json.decode(msgspec.json.encode(gen), type=Generation) == gen


def test_spec_model_object_with_null_schema_decodes() -> None:
    # [spec] id, object, created, owned_by are required; request_schema may be null; pricing
    # carries every cost field, null where it does not apply [doc models/overview].
    model = model_decoder.decode(
        b'{"id":"qwen3-32b","object":"model","created":1745971200,"owned_by":"oxen",'
        b'"display_name":"Qwen3 32B","capabilities":{"input":["text"],"output":["text"]},'
        b'"pricing":{"method":"token","input_cost_per_token":1e-7,"cost_per_image":null},'
        b'"request_schema":null,"deployments":[]}'
    )
    assert (model.id, model.schema, model.pricing["method"]) == ("qwen3-32b", {}, "token")

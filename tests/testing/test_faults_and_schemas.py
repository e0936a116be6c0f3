"""Pure parts: fault settings (validation, replayable RNG) and model-parameter validation."""

from __future__ import annotations

import random
from typing import Any

import pytest

from oxedit.testing import Faults
from oxedit.testing._schemas import MODELS, ParamError, check_params


def test_all_faults_are_off_by_default() -> None:
    f = Faults()
    assert not any(f.roll(rate) for rate in (f.failure_rate, f.drop_event_rate) for _ in range(100))
    assert f.draw(f.latency) == 0.0 and f.draw(f.delay_event) == 0.0
    assert f.keepalive_interval == 15.0 and f.url_ttl == 3600.0
    assert f.cut_stream_after_events is None and not f.stall_streams and not f.stamp_events
    rates = (f.get_error_rate, f.get_html_rate, f.get_redirect_rate, f.enqueue_bad_body_rate)
    assert rates == (0.0, 0.0, 0.0, 0.0) and f.silent_cancel_rate == 0.0
    assert not f.stream_close_at_once and f.refuse_streams == 0 and f.drip_interval is None
    assert f.oversized_event_bytes == 0 and f.result_body is None and f.result_gzip_bomb == 0
    assert (f.enqueue_bad_body, f.refuse_stream_status) == ("html", 401)


def test_new_fault_fields_accept_their_documented_values() -> None:
    f = Faults(drip_interval=0.0, refuse_stream_status=503, result_body=b"")
    for kind in ("html", "empty_object", "empty_generations", "extra_ids"):
        f.enqueue_bad_body = kind
    f.refuse_streams, f.drip_interval, f.result_gzip_bomb = 3, None, 1 << 30


def test_same_seed_replays_the_same_decisions() -> None:
    def decisions(seed: int) -> list[Any]:
        f = Faults(seed=seed)
        return [(f.roll(0.5), f.draw((0.0, 1.0)), f.choice(("a", "b", "c"))) for _ in range(50)]

    assert decisions(3) == decisions(3)
    assert decisions(3) != decisions(4)


def test_assigning_seed_reseeds() -> None:
    f = Faults(seed=1)
    first = [f.roll(0.5) for _ in range(30)]
    f.seed = 1
    assert [f.roll(0.5) for _ in range(30)] == first


def test_zero_rate_draws_nothing_so_other_faults_keep_their_sequence() -> None:
    f, g = Faults(seed=9), Faults(seed=9)
    seq_f = [f.roll(0.5) for _ in range(20)]
    seq_g = [(g.roll(0.0), g.roll(0.5))[1] for _ in range(20)]
    assert seq_f == seq_g


def test_draw_accepts_fixed_range_and_callable() -> None:
    f = Faults()
    assert f.draw(0.25) == 0.25
    assert all(0.1 <= f.draw((0.1, 0.2)) <= 0.2 for _ in range(100))
    assert f.draw(lambda rng: 0.5 + rng.random() * 0) == 0.5
    assert f.draw(lambda rng: -3.0) == 0.0  # never negative
    assert isinstance(f.rng, random.Random)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failure_rate", 1.5),
        ("drop_event_rate", -0.1),
        ("lost_response_rate", "0.5"),
        ("latency", -1.0),
        ("latency", (2.0, 1.0)),
        ("delay_event", (1.0,)),
        ("keepalive_interval", 0.0),
        ("cut_stream_after_events", 0),
        ("retry_after", 0.5),
        ("retry_after", -1),
        ("get_error_rate", 2),
        ("get_html_rate", None),
        ("get_redirect_rate", -0.5),
        ("enqueue_bad_body_rate", 1.01),
        ("silent_cancel_rate", "1"),
        ("enqueue_bad_body", "xml"),
        ("refuse_streams", -1),
        ("refuse_streams", True),
        ("refuse_stream_status", 200),
        ("refuse_stream_status", "401"),
        ("drip_interval", -0.1),
        ("drip_interval", float("inf")),
        ("oversized_event_bytes", 1.5),
        ("result_body", "not bytes"),
        ("result_gzip_bomb", -1),
    ],
)
def test_bad_values_fail_at_construction_and_at_runtime(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"Faults.{field}"):
        Faults(**{field: value})
    f = Faults()
    with pytest.raises(ValueError, match=f"Faults.{field}"):
        setattr(f, field, value)


QWEN = MODELS["qwen-image-edit"]
URI = "data:image/png;base64,AAAA"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"input_image": URI}, "prompt is required"),
        ({"prompt": "x"}, "input_image is required"),
        (
            {"prompt": "x", "input_image": URI, "aspect_ratio": "5:4"},
            "aspect_ratio must be one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3, got '5:4'",
        ),
        ({"prompt": 3, "input_image": URI}, "prompt must be a string, got 3"),
        ({"prompt": "x", "input_image": "ftp://a/b.png"}, "input_image must be a URI"),
    ],
)
def test_check_params_names_the_field(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError, match="^" + message.replace("(", r"\(")):
        check_params(QWEN, params)


def test_check_params_numbers_arrays_and_valid_input() -> None:
    flux, plus = MODELS["flux-kontext-dev"], MODELS["qwen-image-edit-plus"]
    base = {"prompt": "x", "input_image": URI}
    check_params(QWEN, {**base, "aspect_ratio": "1:1"})
    check_params(flux, {**base, "seed": 3, "guidance": 2, "num_inference_steps": 50})
    with pytest.raises(ParamError, match="num_inference_steps must be <= 50, got 51"):
        check_params(flux, {**base, "num_inference_steps": 51})
    with pytest.raises(ParamError, match="seed must be an integer, got True"):
        check_params(flux, {**base, "seed": True})
    check_params(plus, {"prompt": "x", "input_image": [URI, URI], "output_format": "webp"})
    with pytest.raises(ParamError, match="input_image must be an array"):
        check_params(plus, base)
    with pytest.raises(ParamError, match=r"input_image\[1\] must be a string"):
        check_params(plus, {"prompt": "x", "input_image": [URI, 7]})

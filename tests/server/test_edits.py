"""The image rule set: pure functions, checked pixel by pixel where it matters."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from oxedit.server import _edits
from oxedit.server._schemas import ASPECT_RATIOS

from ._helpers import image_bytes


def gradient(w: int = 4, h: int = 4) -> Image.Image:
    """Every pixel different, so that moved pixels are visible."""
    img = Image.new("RGB", (w, h))
    img.putdata([(x * 50, y * 50, (x + y) * 20) for y in range(h) for x in range(w)])
    return img


def px(img: Image.Image) -> list[list[tuple[int, int, int]]]:
    return [[img.getpixel((x, y)) for x in range(img.width)] for y in range(img.height)]  # type: ignore[misc]


def test_invert_gives_255_minus_each_channel() -> None:
    src = gradient()
    out = _edits.apply_prompt(src, "Invert the colours")
    assert px(out) == [[tuple(255 - c for c in p) for p in row] for row in px(src)]


def test_mirror_swaps_columns_and_flip_swaps_rows() -> None:
    src = gradient()
    assert px(_edits.apply_prompt(src, "MIRROR it")) == [row[::-1] for row in px(src)]
    assert px(_edits.apply_prompt(src, "flip horizontally")) == [row[::-1] for row in px(src)]
    assert px(_edits.apply_prompt(src, "turn it upside down")) == px(src)[::-1]
    assert px(_edits.apply_prompt(src, "flip vertically")) == px(src)[::-1]


def test_rotate_turns_a_quarter_counterclockwise_with_expand() -> None:
    src = gradient(4, 2)
    out = _edits.apply_prompt(src, "rotate")
    assert out.size == (2, 4)
    # Counterclockwise: the top-right pixel becomes the top-left one.
    assert out.getpixel((0, 0)) == src.getpixel((3, 0))


def test_grayscale_has_equal_channels_and_stays_rgb() -> None:
    out = _edits.apply_prompt(gradient(), "make it black and white")
    assert out.mode == "RGB"
    assert all(r == g == b for row in px(out) for (r, g, b) in row)


@pytest.mark.parametrize(
    "prompt",
    [
        "blur it",
        "sharpen",
        "sepia tone",
        "find edges",
        "posterize",
        "brighten",
        "darken",
        "more contrast",
    ],
)
def test_each_rule_changes_the_image(prompt: str) -> None:
    src = Image.new("RGB", (16, 16), (90, 100, 110))
    src.paste((250, 10, 10), (4, 4, 12, 12))
    assert px(_edits.apply_prompt(src, prompt)) != px(src)


def test_matching_rules_compose_in_table_order() -> None:
    src = gradient()
    both = _edits.apply_prompt(src, "invert and mirror")
    assert px(both) == px(_edits.apply_prompt(_edits.apply_prompt(src, "invert"), "mirror"))


def test_prompt_without_keyword_is_drawn_onto_the_image() -> None:
    src = Image.new("RGB", (64, 32), (255, 255, 255))
    out = _edits.apply_prompt(src, "Add a funny hat")
    assert out.size == src.size
    assert any(p != (255, 255, 255) for row in px(out) for p in row)
    assert px(src) == [[(255, 255, 255)] * 64] * 32  # the input is not modified


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_fit_aspect_pads_to_the_exact_ratio_without_scaling(ratio: str) -> None:
    rw, rh = (int(p) for p in ratio.split(":"))
    src = Image.new("RGB", (10, 10), (0, 0, 0))
    out = _edits.fit_aspect(src, ratio)
    assert out.width >= 10 and out.height >= 10
    assert min(out.size) == 10  # grown along one axis only
    assert abs(out.width / out.height - rw / rh) < 0.1


def test_fit_aspect_centres_on_white() -> None:
    out = _edits.fit_aspect(Image.new("RGB", (2, 2), (0, 0, 0)), "16:9")
    assert out.size == (4, 2)
    assert px(out) == [[(255, 255, 255), (0, 0, 0), (0, 0, 0), (255, 255, 255)]] * 2
    tall = _edits.fit_aspect(Image.new("RGB", (2, 2), (0, 0, 0)), "9:16")
    assert tall.size == (2, 4)
    assert tall.getpixel((0, 0)) == (255, 255, 255) and tall.getpixel((0, 1)) == (0, 0, 0)


def test_edit_is_deterministic_byte_for_byte() -> None:
    data = image_bytes((80, 40))
    first = _edits.edit([data], "Add a funny hat", aspect_ratio="16:9")
    assert first == _edits.edit([data], "Add a funny hat", aspect_ratio="16:9")
    assert first != _edits.edit([data], "Paint a funny hat", aspect_ratio="16:9")
    out = Image.open(io.BytesIO(first))
    assert out.format == "PNG" and out.size == (80, 45)


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpg", "JPEG"), ("webp", "WEBP")])
def test_output_formats(fmt: str, pil: str) -> None:
    out = _edits.edit([image_bytes()], "invert", output_format=fmt)
    assert Image.open(io.BytesIO(out)).format == pil


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_accepted_input_formats(fmt: str) -> None:
    img = _edits.decode_image(image_bytes((6, 4), fmt=fmt))
    assert img.mode == "RGB" and img.size == (6, 4)


@pytest.mark.parametrize(
    "data", [image_bytes(fmt="BMP"), image_bytes(fmt="TIFF"), b"not an image", b""]
)
def test_other_inputs_are_rejected_with_the_documented_message(data: bytes) -> None:
    with pytest.raises(_edits.EditError, match="^input_image must be jpeg, png, gif, or webp$"):
        _edits.decode_image(data)


def test_alpha_is_flattened_onto_white() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (2, 1), (0, 0, 0, 0)).save(buf, "PNG")
    assert px(_edits.decode_image(buf.getvalue())) == [[(255, 255, 255)] * 2]


def test_compose_puts_images_side_by_side_top_aligned() -> None:
    out = _edits.compose([Image.new("RGB", (2, 2), (0, 0, 0)), Image.new("RGB", (1, 1), (9, 9, 9))])
    assert out.size == (3, 2)
    assert out.getpixel((2, 0)) == (9, 9, 9) and out.getpixel((2, 1)) == (255, 255, 255)


def test_parse_data_uri() -> None:
    assert _edits.parse_data_uri("data:image/png;base64,aGVsbG8=") == b"hello"
    assert _edits.parse_data_uri("data:,a%20b") == b"a b"
    with pytest.raises(_edits.EditError, match="not valid base64"):
        _edits.parse_data_uri("data:image/png;base64,!!!")
    with pytest.raises(_edits.EditError, match="not a valid data URI"):
        _edits.parse_data_uri("data:image/png;base64")

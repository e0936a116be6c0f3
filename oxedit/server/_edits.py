"""Real, deterministic image edits: what the local server does instead of a 20B model.

Pure functions of (input bytes, prompt, parameters): the same request always gives the same
output bytes, so tests can compare results exactly. The prompt picks edits by keyword
(case-insensitive); every rule that matches is applied, in table order; a prompt that matches
none is drawn onto the image instead, so the edit is still visible.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import urllib.parse
import warnings
from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

__all__ = [
    "CONTENT_TYPES",
    "MAX_INPUT_PIXELS",
    "RULES",
    "EditError",
    "apply_prompt",
    "compose",
    "decode_image",
    "edit",
    "encode",
    "fit_aspect",
    "parse_data_uri",
]

#: Inputs above this many pixels fail, rather than tie a worker up for seconds.
MAX_INPUT_PIXELS = 40_000_000
ACCEPTED_FORMATS = frozenset({"JPEG", "PNG", "GIF", "WEBP"})
FORMAT_ERROR = "input_image must be jpeg, png, gif, or webp"
# `output_format` values [doc]: jpg, not jpeg.
CONTENT_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}

_WHITE = (255, 255, 255)


class EditError(ValueError):
    """The input cannot be edited; the message is the generation's error."""


def parse_data_uri(uri: str) -> bytes:
    """The bytes of a `data:[<media type>][;base64],<data>` URI."""
    header, sep, data = uri.partition(",")
    if not sep or not header.startswith("data:"):
        raise EditError("input_image is not a valid data URI")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise EditError("input_image data URI is not valid base64") from None
    return urllib.parse.unquote_to_bytes(data)


def decode_image(data: bytes) -> Image.Image:
    """Decode input bytes to an RGB image; alpha is flattened onto white, GIFs give frame 0."""
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between 89 and 179 megapixels; we refuse earlier.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        if img.format not in ACCEPTED_FORMATS:
            raise EditError(FORMAT_ERROR)
        if img.width * img.height > MAX_INPUT_PIXELS:
            raise EditError(
                f"input_image is too large: {img.width}x{img.height} pixels "
                f"(at most {MAX_INPUT_PIXELS:,})"
            )
        img.seek(0)
        img.load()
    except EditError:
        raise
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise EditError(FORMAT_ERROR) from None
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _WHITE)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB")


def compose(images: Sequence[Image.Image]) -> Image.Image:
    """Several reference images side by side, top-aligned on white (multi-image models)."""
    if len(images) == 1:
        return images[0]
    width = sum(im.width for im in images)
    height = max(im.height for im in images)
    out = Image.new("RGB", (width, height), _WHITE)
    x = 0
    for im in images:
        out.paste(im, (x, 0))
        x += im.width
    return out


def _sepia(img: Image.Image) -> Image.Image:
    return ImageOps.colorize(ImageOps.grayscale(img), black=(40, 26, 13), white=(255, 240, 192))


Edit = Callable[[Image.Image], Image.Image]

#: (name, pattern on the lower-cased prompt, edit). Applied in this order.
RULES: tuple[tuple[str, re.Pattern[str], Edit], ...] = tuple(
    (name, re.compile(pattern), fn)
    for name, pattern, fn in (
        (
            "grayscale",
            r"gr[ae]yscale|black and white|black & white|monochrome",
            lambda im: ImageOps.grayscale(im).convert("RGB"),
        ),
        ("sepia", r"sepia|vintage", _sepia),
        ("invert", r"invert|negative", ImageOps.invert),
        ("mirror", r"mirror|flip\w* horizontal|horizontal\w* flip", ImageOps.mirror),
        ("flip", r"flip\w* vertical|vertical\w* flip|upside[ -]down", ImageOps.flip),
        ("rotate", r"rotate", lambda im: im.transpose(Image.Transpose.ROTATE_90)),
        ("blur", r"blur", lambda im: im.filter(ImageFilter.GaussianBlur(2))),
        ("sharpen", r"sharpen", lambda im: im.filter(ImageFilter.SHARPEN)),
        ("edges", r"edges|outline|sketch", lambda im: im.filter(ImageFilter.FIND_EDGES)),
        ("posterize", r"posteri[sz]e|cartoon", lambda im: ImageOps.posterize(im, 3)),
        ("brighten", r"brighte?n|lighter", lambda im: ImageEnhance.Brightness(im).enhance(1.4)),
        ("darken", r"darken|darker", lambda im: ImageEnhance.Brightness(im).enhance(0.6)),
        ("contrast", r"contrast", lambda im: ImageOps.autocontrast(im, cutoff=2)),
    )
)

_font: ImageFont.FreeTypeFont | ImageFont.ImageFont | None = None


def _draw_text(img: Image.Image, text: str) -> Image.Image:
    global _font
    if _font is None:  # loaded on first use: importing the server should stay cheap
        _font = ImageFont.load_default()
    out = img.copy()
    draw = ImageDraw.Draw(out)
    draw.text((2, 2), text, fill=(0, 0, 0), font=_font, stroke_width=1, stroke_fill=_WHITE)
    return out


def apply_prompt(img: Image.Image, prompt: str) -> Image.Image:
    """Apply every rule whose keyword is in `prompt`, or draw the prompt if none is."""
    lowered = prompt.lower()
    matched = False
    for _name, pattern, fn in RULES:
        if pattern.search(lowered):
            img = fn(img)
            matched = True
    return img if matched else _draw_text(img, prompt)


def fit_aspect(img: Image.Image, aspect_ratio: str) -> Image.Image:
    """Pad `img` with white, centred, to `aspect_ratio` ("W:H"). Never scales up or down, so
    small inputs stay small."""
    if aspect_ratio == "match_input_image":  # [doc] flux models: keep the input's shape
        return img
    rw, rh = (int(p) for p in aspect_ratio.split(":"))
    w, h = img.size
    if w * rh == h * rw:
        return img
    # Too narrow: widen; too wide: heighten (rounding up, so the ratio is never undershot).
    size = (-(-h * rw // rh), h) if w * rh < h * rw else (w, -(-w * rh // rw))
    out = Image.new("RGB", size, _WHITE)
    out.paste(img, ((size[0] - w) // 2, (size[1] - h) // 2))
    return out


def encode(img: Image.Image, output_format: str = "png") -> bytes:
    """Encode with fixed settings (no timestamps or random metadata): deterministic bytes."""
    buf = io.BytesIO()
    if output_format == "jpg":
        img.save(buf, "JPEG", quality=90)
    elif output_format == "webp":
        img.save(buf, "WEBP", quality=90, method=4)
    else:
        img.save(buf, "PNG")
    return buf.getvalue()


def edit(
    inputs: Sequence[bytes],
    prompt: str,
    *,
    aspect_ratio: str | None = None,
    output_format: str = "png",
) -> bytes:
    """The whole edit: decode, compose, apply the prompt, pad to the aspect ratio, encode.

    Raises:
        EditError: an input is not a decodable jpeg, png, gif or webp image.
    """
    img = apply_prompt(compose([decode_image(b) for b in inputs]), prompt)
    if aspect_ratio is not None:
        img = fit_aspect(img, aspect_ratio)
    return encode(img, output_format)

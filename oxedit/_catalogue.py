"""The models oxedit knows, as plain data: one source for the local server's catalogue
(`oxedit.testing`) and for the client's offline fallback schemas (`oxedit._resources.validate`).

Each model follows its page on docs.oxen.ai (inference-api/reference/models/<id>): the
parameters, their types, enums, ranges and defaults. Those pages are generated from the
models endpoint's `request_schema`, so the schemas below are that endpoint's JSON Schema
written out again. Tags as in oxen-api.md: [doc] the docs say it, [spec] only the hub's
OpenAPI spec says it, [guess] documented nowhere.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

__all__ = [
    "ASPECT_RATIOS",
    "KONTEXT_ASPECT_RATIOS",
    "MODELS",
    "OUTPUT_FORMATS",
    "QWEN_ASPECT_RATIOS",
    "CatalogueModel",
    "schemas",
]

# [doc] models/qwen-image-edit-plus, flux-kontext-dev, flux-2-*: `jpg`, never `jpeg`.
OUTPUT_FORMATS: Final = ("webp", "jpg", "png")
# [doc] models/qwen-image-edit, qwen-image-edit-plus.
QWEN_ASPECT_RATIOS: Final = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
# [doc] models/flux-kontext-dev: 12 values, in the page's order.
KONTEXT_ASPECT_RATIOS: Final = (
    "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
    "match_input_image",
)  # fmt: skip
# [doc] models/flux-2-dev, -pro, -flex.
FLUX2_ASPECT_RATIOS: Final = (*QWEN_ASPECT_RATIOS, "match_input_image")
FLUX2_RESOLUTIONS: Final = ("1 MP", "2 MP", "0.5 MP")
# [doc] models/bytedance-seedream-4.
SEEDREAM_SIZES: Final = ("1K", "2K", "4K")

# Every aspect ratio of a catalogued model, the default model's first (the CLI's typo guard).
ASPECT_RATIOS: Final = tuple(
    dict.fromkeys((*QWEN_ASPECT_RATIOS, *KONTEXT_ASPECT_RATIOS, *FLUX2_ASPECT_RATIOS))
)
_IMAGE_EDIT: Final = (("text", "image"), ("image",))


class CatalogueModel(msgspec.Struct, frozen=True, kw_only=True):
    """One model as the models endpoint describes it.

    Attributes:
        id: The model id sent as `model`.
        display_name: Its human-readable name.
        inputs: `capabilities.input`.
        outputs: `capabilities.output`.
        pricing: `pricing` without its null fields: `method` ([spec] `token`, `time`,
            `per_image`, `per_video_output_second`) and the costs that apply.
        request_schema: JSON Schema of its parameters; None where the API gives null [spec].
        created: `created`, Unix seconds [guess: the values are made up].
    """

    id: str
    display_name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    pricing: dict[str, Any]
    request_schema: dict[str, Any] | None
    created: int


def _p(type_: str, description: str, **extra: Any) -> dict[str, Any]:
    """A schema property; `extra` holds `default`, `enum`, `minimum`, `maximum`, `format`..."""
    return {"type": type_, "description": description, **extra}


def _schema(required: tuple[str, ...], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


_PROMPT = _p(
    "string",
    "Text description of what you want to generate, or the instruction on how to edit the "
    "given image.",
)
_ONE_IMAGE = _p(
    "string",
    "Image to use as reference. Must be jpeg, png, gif, or webp.",
    format="uri",
)
_IMAGES = _p(
    "array",
    "Input images to transform or use as reference. Reference them in the prompt as @Image1, "
    "@Image2, etc.",
    items={"type": "string", "format": "uri"},
)
_QUALITY = _p(
    "integer",
    "Quality when saving the output images, from 0 to 100. 100 is best quality, 0 is lowest "
    "quality. Not relevant for .png outputs",
    default=80,
    minimum=0,
    maximum=100,
)


def _flux2(model_id: str, name: str, cost: float, created: int) -> CatalogueModel:
    # [doc] models/flux-2-dev, flux-2-pro, flux-2-flex: the same parameters; only `prompt` is
    # required, `input_image` is an optional array (text-to-image without it).
    return CatalogueModel(
        id=model_id,
        display_name=name,
        inputs=_IMAGE_EDIT[0],
        outputs=_IMAGE_EDIT[1],
        pricing={"method": "per_image", "cost_per_image": cost},  # [guess] amount (doctor checks)
        created=created,
        request_schema=_schema(
            ("prompt",),
            prompt=_p("string", "Prompt for generated image."),
            input_image=_IMAGES,
            aspect_ratio=_p(
                "string", "Aspect Ratio", enum=list(FLUX2_ASPECT_RATIOS), default="16:9"
            ),
            resolution=_p("string", "Resolution", enum=list(FLUX2_RESOLUTIONS), default="1 MP"),
            num_inference_steps=_p(
                "integer", "Number of denoising steps.", default=30, minimum=1, maximum=50
            ),
            guidance=_p(
                "number", "Guidance for generated image.", default=2, minimum=0, maximum=10
            ),
            seed=_p("integer", "Random seed. Set for reproducible generation"),
            output_format=_p(
                "string", "Format of the output images", enum=list(OUTPUT_FORMATS), default="webp"
            ),
            output_quality=_QUALITY,
            disable_safety_checker=_p(
                "boolean", "Disable safety checker for generated images.", default=False
            ),
        ),
    )


MODELS: Final[tuple[CatalogueModel, ...]] = (
    CatalogueModel(
        # [doc] models/qwen-image-edit (also /work/shared/docs-qwen-image-edit.md).
        id="qwen-image-edit",
        display_name="Qwen Image Edit",
        inputs=_IMAGE_EDIT[0],
        outputs=_IMAGE_EDIT[1],
        pricing={"method": "per_image", "cost_per_image": 0.03},  # [guess] amount (doctor checks)
        created=1755734400,
        request_schema=_schema(
            ("prompt", "input_image"),
            prompt=_PROMPT,
            input_image=_ONE_IMAGE,
            aspect_ratio=_p(
                "string",
                "Aspect ratio for the generated image",
                enum=list(QWEN_ASPECT_RATIOS),
                default="16:9",
            ),
        ),
    ),
    CatalogueModel(
        # [doc] models/qwen-image-edit-plus: `input_image` is an array, even for one image.
        id="qwen-image-edit-plus",
        display_name="Qwen Image Edit - 2509",
        inputs=_IMAGE_EDIT[0],
        outputs=_IMAGE_EDIT[1],
        pricing={"method": "per_image", "cost_per_image": 0.03},  # [guess] amount (doctor checks)
        created=1758758400,
        request_schema=_schema(
            ("prompt", "input_image"),
            prompt=_PROMPT,
            input_image=_IMAGES,
            aspect_ratio=_p(
                "string", "Aspect Ratio", enum=list(QWEN_ASPECT_RATIOS), default="16:9"
            ),
            negative_prompt=_p("string", "Negative prompt for generated image"),
            output_format=_p(
                "string", "Format of the output images", enum=list(OUTPUT_FORMATS), default="png"
            ),
        ),
    ),
    CatalogueModel(
        # [doc] models/flux-kontext-dev.
        id="flux-kontext-dev",
        display_name="FLUX.1-Kontext [dev]",
        inputs=_IMAGE_EDIT[0],
        outputs=_IMAGE_EDIT[1],
        pricing={"method": "per_image", "cost_per_image": 0.025},  # [guess] amount (doctor checks)
        created=1750204800,
        request_schema=_schema(
            ("prompt", "input_image"),
            prompt=_PROMPT,
            input_image=_ONE_IMAGE,
            aspect_ratio=_p(
                "string", "Aspect Ratio", enum=list(KONTEXT_ASPECT_RATIOS), default="16:9"
            ),
            num_inference_steps=_p(
                "integer", "Number of inference steps", default=28, minimum=4, maximum=50
            ),
            guidance=_p(
                "number", "Guidance scale for generation", default=2.5, minimum=0, maximum=10
            ),
            seed=_p("integer", "Random seed for reproducible generation. Leave blank for random."),
            output_format=_p(
                "string", "Output image format", enum=list(OUTPUT_FORMATS), default="webp"
            ),
            output_quality=_QUALITY,
            disable_safety_checker=_p("boolean", "Disable NSFW safety checker", default=False),
        ),
    ),
    _flux2("flux-2-dev", "FLUX.2 [dev]", 0.025, 1764028800),
    _flux2("flux-2-pro", "FLUX.2 [pro]", 0.05, 1764028800),
    _flux2("flux-2-flex", "FLUX.2 [flex]", 0.06, 1764028800),
    CatalogueModel(
        # [doc] models/bytedance-seedream-4: an optional array of up to 14 images.
        id="bytedance-seedream-4",
        display_name="Seedream 4.0",
        inputs=_IMAGE_EDIT[0],
        outputs=_IMAGE_EDIT[1],
        pricing={"method": "per_image", "cost_per_image": 0.03},  # [guess] amount (doctor checks)
        created=1757289600,
        request_schema=_schema(
            ("prompt",),
            prompt=_p("string", "Text prompt for image generation."),
            input_image=_p(
                "array",
                "Optional reference image URLs for image-to-image editing. Up to 14 images.",
                items={"type": "string", "format": "uri"},
            ),
            size=_p("string", "Image resolution.", enum=list(SEEDREAM_SIZES), default="2K"),
            watermark=_p("boolean", "Whether to add an 'AI generated' watermark.", default=False),
        ),
    ),
    CatalogueModel(
        # A text model: the queue refuses it (it outputs no media). The models overview gives
        # text models `"request_schema": null` and token pricing [doc].
        id="qwen3-32b",
        display_name="Qwen3 32B",
        inputs=("text",),
        outputs=("text",),
        pricing={  # [guess] the amounts (`oxedit doctor` shows the hub's pricing)
            "method": "token",
            "input_cost_per_token": 1.0e-7,
            "output_cost_per_token": 3.0e-7,
        },
        created=1745971200,
        request_schema=None,
    ),
)


def schemas() -> dict[str, dict[str, Any]]:
    """Model id -> request schema, for every catalogued model that has one."""
    return {m.id: m.request_schema for m in MODELS if m.request_schema is not None}

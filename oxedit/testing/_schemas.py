"""The model catalogue of the local server, and validation of model parameters.

Models are msgspec Structs shaped like `GET /api/ai/models/{id}` of the Oxen docs. Their
`request_schema` is a small JSON Schema; `check_params` enforces it when a job runs (the docs:
"everything model-specific is validated only when the job runs"), while `/api/ai/queue` only
uses it to know which top-level fields exist.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = [
    "ASPECT_RATIOS",
    "MODELS",
    "OUTPUT_FORMATS",
    "Capabilities",
    "Model",
    "ParamError",
    "Pricing",
    "Property",
    "RequestSchema",
    "check_params",
]

ASPECT_RATIOS = ("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3")
OUTPUT_FORMATS = ("png", "jpeg", "webp")


class Property(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One parameter of a model's `request_schema`."""

    type: str
    description: str | None = None
    default: Any = None
    enum: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    format: str | None = None
    items: Property | None = None


class RequestSchema(msgspec.Struct, frozen=True, kw_only=True):
    """JSON Schema of a model's parameters."""

    type: str = "object"
    properties: dict[str, Property]
    required: tuple[str, ...] = ()


class Capabilities(msgspec.Struct, frozen=True, kw_only=True):
    input: tuple[str, ...]
    output: tuple[str, ...]


class Pricing(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    method: str
    cost_per_image: float | None = None
    cost_per_million_input_tokens: float | None = None
    cost_per_million_output_tokens: float | None = None


class Model(msgspec.Struct, frozen=True, kw_only=True):
    """A model as listed by `GET /api/ai/models`."""

    id: str
    display_name: str
    capabilities: Capabilities
    pricing: Pricing
    request_schema: RequestSchema

    @property
    def outputs_media(self) -> bool:
        return "image" in self.capabilities.output or "video" in self.capabilities.output


class ParamError(ValueError):
    """A model parameter is missing or invalid; the message is the generation's error."""


_PROMPT = Property(
    type="string",
    default="Add a funny hat",
    description="Text description of what you want to generate, or the instruction on how "
    "to edit the given image.",
)
_IMAGE = Property(
    type="string",
    format="uri",
    description="Image to use as reference. Must be jpeg, png, gif, or webp. Format: uri.",
)
_ASPECT = Property(
    type="string",
    enum=ASPECT_RATIOS,
    default="16:9",
    description="Aspect ratio for the generated image One of: " + ", ".join(ASPECT_RATIOS) + ".",
)
_FORMAT = Property(
    type="string", enum=OUTPUT_FORMATS, default="png", description="Format of the output image."
)


def _image_model(mid: str, name: str, cost: float, props: dict[str, Property]) -> Model:
    return Model(
        id=mid,
        display_name=name,
        capabilities=Capabilities(input=("text", "image"), output=("image",)),
        pricing=Pricing(method="per_image", cost_per_image=cost),
        request_schema=RequestSchema(properties=props, required=("prompt", "input_image")),
    )


MODELS: dict[str, Model] = {
    m.id: m
    for m in (
        _image_model(
            "qwen-image-edit",
            "Qwen Image Edit",
            0.03,
            {"prompt": _PROMPT, "input_image": _IMAGE, "aspect_ratio": _ASPECT},
        ),
        _image_model(
            "qwen-image-edit-plus",
            "Qwen Image Edit Plus",
            0.03,
            {
                "prompt": _PROMPT,
                "input_image": Property(
                    type="array",
                    items=_IMAGE,
                    description="One to three reference images, each jpeg, png, gif, or webp.",
                ),
                "negative_prompt": Property(type="string", description="What to avoid."),
                "aspect_ratio": _ASPECT,
                "output_format": _FORMAT,
            },
        ),
        _image_model(
            "flux-kontext-dev",
            "FLUX.1 Kontext [dev]",
            0.025,
            {
                "prompt": _PROMPT,
                "input_image": _IMAGE,
                "seed": Property(type="integer", description="Random seed, for reproducibility."),
                "guidance": Property(
                    type="number",
                    default=2.5,
                    minimum=0,
                    maximum=10,
                    description="How closely to follow the prompt.",
                ),
                "num_inference_steps": Property(
                    type="integer",
                    default=28,
                    minimum=1,
                    maximum=50,
                    description="Number of denoising steps.",
                ),
                "output_format": _FORMAT,
            },
        ),
        Model(
            id="qwen3-32b",
            display_name="Qwen3 32B",
            capabilities=Capabilities(input=("text",), output=("text",)),
            pricing=Pricing(
                method="per_token",
                cost_per_million_input_tokens=0.1,
                cost_per_million_output_tokens=0.3,
            ),
            request_schema=RequestSchema(
                properties={"prompt": Property(type="string", description="The prompt.")},
                required=("prompt",),
            ),
        ),
    )
}


def check_params(model: Model, params: dict[str, Any]) -> None:
    """Enforce `model.request_schema` on the model's own parameters.

    Raises:
        ParamError: with the message the failed generation carries, naming the field.
    """
    schema = model.request_schema
    for name in schema.required:
        if params.get(name) is None:
            raise ParamError(f"{name} is required")
    for name, value in params.items():
        prop = schema.properties.get(name)
        if prop is not None and value is not None:
            _check_value(name, prop, value)


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
}


def _check_value(name: str, prop: Property, value: Any) -> None:
    if not _has_type(prop.type, value):
        raise ParamError(f"{name} must be {_TYPE_NAMES.get(prop.type, prop.type)}, got {value!r}")
    if prop.enum is not None and value not in prop.enum:
        raise ParamError(f"{name} must be one of {', '.join(prop.enum)}, got {value!r}")
    if prop.minimum is not None and value < prop.minimum:
        raise ParamError(f"{name} must be >= {prop.minimum:g}, got {value!r}")
    if prop.maximum is not None and value > prop.maximum:
        raise ParamError(f"{name} must be <= {prop.maximum:g}, got {value!r}")
    if prop.format == "uri" and not value.startswith(("http://", "https://", "data:")):
        raise ParamError(f"{name} must be a URI (an http(s) URL or a data: URI)")
    if prop.items is not None:
        if not value:
            raise ParamError(f"{name} must not be empty")
        for i, item in enumerate(value):
            _check_value(f"{name}[{i}]", prop.items, item)


def _has_type(type_: str, value: Any) -> bool:
    if isinstance(value, bool):
        return type_ == "boolean"
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "integer":
        return isinstance(value, int)
    if type_ == "number":
        return isinstance(value, int | float)
    if type_ == "array":
        return isinstance(value, list)
    return type_ != "boolean"

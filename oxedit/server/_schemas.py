"""The model catalogue of the local server, and validation of model parameters.

Models are msgspec Structs shaped like `GET /api/ai/models/{id}` of the Oxen docs, built from
`oxedit._catalogue` (the one list of known models, which the client's offline fallback also
reads). Their `request_schema` is a small JSON Schema; `check_params` enforces it when a job
runs (the docs: "everything model-specific is validated only when the job runs"), while
`/api/ai/queue` only uses it to know which top-level fields exist.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .._catalogue import MODELS as _CATALOGUE
from .._catalogue import OUTPUT_FORMATS, QWEN_ASPECT_RATIOS, CatalogueModel

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

ASPECT_RATIOS = QWEN_ASPECT_RATIOS  # qwen-image-edit's, the default model's


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


class Pricing(msgspec.Struct, frozen=True, kw_only=True):
    """[doc] models/overview: every field is present, null where it does not apply."""

    method: str  # token, time, per_image or per_video_output_second
    input_cost_per_token: float | None = None
    output_cost_per_token: float | None = None
    cost_per_second: float | None = None
    cost_per_image: float | None = None
    cost_per_second_high_res: float | None = None
    cost_per_second_with_audio: float | None = None


class Model(msgspec.Struct, frozen=True, kw_only=True):
    """A model as listed by `GET /api/ai/models` ([spec] requires id, object, created and
    owned_by; `request_schema` may be null)."""

    id: str
    object: str = "model"
    created: int
    owned_by: str = "oxen"  # [doc] "oxen" for base models
    display_name: str
    capabilities: Capabilities
    pricing: Pricing
    request_schema: RequestSchema | None

    @property
    def outputs_media(self) -> bool:
        return "image" in self.capabilities.output or "video" in self.capabilities.output

    @property
    def properties(self) -> dict[str, Property]:
        """The parameters its schema declares (none when the schema is null)."""
        return self.request_schema.properties if self.request_schema is not None else {}


class ParamError(ValueError):
    """A model parameter is missing or invalid; the message is the generation's error."""


def _model(entry: CatalogueModel) -> Model:
    schema = entry.request_schema
    return Model(
        id=entry.id,
        created=entry.created,
        display_name=entry.display_name,
        capabilities=Capabilities(input=entry.inputs, output=entry.outputs),
        pricing=msgspec.convert(entry.pricing, Pricing),
        request_schema=None if schema is None else msgspec.convert(schema, RequestSchema),
    )


MODELS: dict[str, Model] = {entry.id: _model(entry) for entry in _CATALOGUE}


def check_params(model: Model, params: dict[str, Any]) -> None:
    """Enforce `model.request_schema` on the model's own parameters.

    Raises:
        ParamError: with the message the failed generation carries, naming the field.
    """
    schema = model.request_schema
    if schema is None:
        return
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

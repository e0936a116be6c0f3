"""Validation of request bodies: what the docs say the API checks at enqueue.

Auth, model exists and outputs images, `num_generations`, JSON shape, plus unknown top-level
fields, which the real service may ignore but this server rejects, so a typo in a client fails
a test instead of being silently dropped.
"""

from __future__ import annotations

from typing import Any

from ._responses import ApiError, invalid_params, message_error
from ._schemas import MODELS, Model

__all__ = ["EDIT_PARAMS", "TARGETS", "edit_request", "queue_request", "split_body"]

TARGETS = ("target_namespace", "target_repo", "target_directory")
_QUEUE_PARAMS = frozenset({"model", "num_generations", *TARGETS})
EDIT_PARAMS = frozenset({"model", "response_format", "target_namespace"})


def queue_request(body: Any) -> tuple[Model, dict[str, Any], dict[str, str], int]:
    """The model, its params, the targets and `num_generations` of a `POST /api/ai/queue`."""
    model, params = split_body(body, _QUEUE_PARAMS)
    count = body.get("num_generations", 1)
    if not isinstance(count, int) or isinstance(count, bool):
        raise invalid_params(f"num_generations must be an integer, got {count!r}")
    if not 1 <= count <= 4:
        raise invalid_params(f"num_generations must be between 1 and 4, got {count}")
    targets = {k: body[k] for k in TARGETS if k in body}
    for key, value in targets.items():
        if not isinstance(value, str):
            raise invalid_params(f"{key} must be a string, got {value!r}")
    return model, params, targets, count


def split_body(body: Any, queue_params: frozenset[str]) -> tuple[Model, dict[str, Any]]:
    """Validate what the docs validate at enqueue; return the model and its own params."""
    if not isinstance(body, dict):
        raise invalid_params("Request body must be a JSON object")
    name = body.get("model")
    if name is None:
        raise invalid_params("model is required")
    if not isinstance(name, str):
        raise invalid_params(f"model must be a string, got {name!r}")
    model = MODELS.get(name)
    if model is None:
        # [doc] this message-shaped body; [spec] 400, the only error POST /api/ai/queue lists.
        # The edit endpoint answers the same [guess] (`oxedit doctor` sends it one to see).
        raise ApiError(message_error(400, f"Model not found: {name}"))
    if not model.outputs_media:
        raise invalid_params(f"Model {name} does not output images or video; choose an image model")
    props = model.properties
    unknown = sorted(k for k in body if k not in queue_params and k not in props)
    if unknown:
        raise invalid_params(
            f"Unknown field{'s' if len(unknown) > 1 else ''} for model {name}: "
            + ", ".join(unknown)
        )
    return model, {k: v for k, v in body.items() if k in props}


def edit_request(body: Any, field: str) -> tuple[Model, dict[str, Any]]:
    """The model and its params of a `POST /api/ai/images/edit` whose image comes in `field`.

    `input_image` [doc]: the docs and model pages send it. `image` [spec]: the spec's
    `ImageEditRequest` requires it, and knows no `input_image`.
    """
    if field == "image" and isinstance(body, dict):
        if "image" not in body:
            # [guess] worded like the other missing fields; it names the field (doctor checks).
            raise invalid_params("image is required")
        if "input_image" in body:
            raise invalid_params("Unknown field for this endpoint: input_image (send image)")
        body = {("input_image" if k == "image" else k): v for k, v in body.items()}
    return split_body(body, EDIT_PARAMS)

"""Checking a request against its model's `request_schema` before anything is sent.

The queue validates only the model and `num_generations` at enqueue; a bad model parameter
fails the generation later, when it runs [doc]. So oxedit checks what the model's schema says
(`type`, `enum`, `minimum`/`maximum`, `required`, which parameters exist) first, and a new
model is checked the day it appears.

`Schemas` is the per-client cache: the first request for a model awaits one
`GET /api/ai/models/{id}` (concurrent first requests share it); later requests are a dict
lookup and a few comparisons, with no I/O. When the schema cannot be fetched, the offline table
(`oxedit._catalogue`) stands in, or the request goes unchecked: an unavailable schema never
fails a request. The CLI adds `DiskCache`, so that short commands do not fetch every time.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import anyio

from .. import _constants as C
from .._atomic import write_atomic
from .._catalogue import schemas as _catalogue_schemas
from .._exceptions import (
    AuthenticationError,
    ClientStateError,
    InvalidRequestError,
    NotFoundError,
    OxeditError,
)
from .._models import Model
from .inputs import QUEUE_PARAMS

__all__ = ["FALLBACK", "DiskCache", "Schema", "Schemas", "cache_file"]

log = logging.getLogger("oxedit")

#: Model id -> request schema: the offline fallback, from the same catalogue as the local
#: server's, for when the models endpoint cannot be reached or gives no schema.
FALLBACK: Final = _catalogue_schemas()

# Body fields that are not the model's own parameters.
_NOT_PARAMS: Final = frozenset({"model", "response_format", *QUEUE_PARAMS})
_SHOW_MAX: Final = 80  # characters of a bad value quoted in an error
_TYPE_NAMES: Final = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}


_TYPES: Final[dict[str, type | tuple[type, ...]]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
}


def _has_type(type_: str, value: Any) -> bool:
    if isinstance(value, bool):  # JSON has no bool-as-int: True is no integer
        return type_ == "boolean"
    check = _TYPES.get(type_)
    return check is None or isinstance(value, check)  # an unknown type is not ours to judge


class _Prop:
    """One property of a schema, reduced to what is checked."""

    __slots__ = ("enum", "items", "maximum", "minimum", "types")

    def __init__(self, raw: Mapping[str, Any]) -> None:
        type_ = raw.get("type")
        self.types: tuple[str, ...] = (
            (type_,) if isinstance(type_, str) else tuple(t for t in type_ or () if t != "null")
        )
        enum = raw.get("enum")
        self.enum: tuple[Any, ...] | None = tuple(enum) if isinstance(enum, list) else None
        self.minimum = _number(raw.get("minimum"))
        self.maximum = _number(raw.get("maximum"))
        items = raw.get("items")
        self.items = _Prop(items) if isinstance(items, Mapping) else None

    def check(self, model: str, name: str, value: Any) -> None:
        if self.types and not any(_has_type(t, value) for t in self.types):
            kinds = " or ".join(_TYPE_NAMES.get(t, t) for t in self.types)
            raise InvalidRequestError(f"{name}={_show(value)} must be {kinds} (model {model!r})")
        if self.enum is not None and value not in self.enum:
            allowed = ", ".join(map(str, self.enum))
            raise InvalidRequestError(
                f"{name}={_show(value)} is not one of {allowed} (model {model!r})"
            )
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = self.minimum, self.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                raise InvalidRequestError(
                    f"{name}={value!r} must be {_bounds(low, high)} (model {model!r})"
                )
        if self.items is not None and isinstance(value, list):
            for i, item in enumerate(value):
                self.items.check(model, f"{name}[{i}]", item)


def _show(value: Any) -> str:
    """`repr(value)`, cut short: a value can be a megabyte data URI or a long prompt."""
    text = repr(value)
    return text if len(text) <= _SHOW_MAX else f"{text[: _SHOW_MAX - 3]}..."


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"from {low:g} to {high:g}"
    return f"at least {low:g}" if low is not None else f"at most {high:g}"


class Schema:
    """A model's request schema, compiled once for cheap checks of every request."""

    __slots__ = ("model", "names", "props", "required")

    def __init__(self, model: str, raw: Mapping[str, Any]) -> None:
        self.model = model
        props = raw.get("properties") or {}
        self.props = {n: _Prop(p) for n, p in props.items() if isinstance(p, Mapping)}
        self.required = tuple(n for n in raw.get("required") or () if isinstance(n, str))
        self.names = ", ".join(sorted(self.props))

    def check(self, payload: dict[str, Any]) -> None:
        """Raise `InvalidRequestError` naming the first bad value; shape `input_image` as the
        model takes it (an array for multi-image models, even of one image [doc])."""
        self.shape_image(payload)
        model = self.model
        for name in self.required:
            if payload.get(name) is None:
                raise InvalidRequestError(f"model {model!r} requires {name}=...; pass it")
        for name, value in payload.items():
            if name in _NOT_PARAMS:
                continue
            prop = self.props.get(name)
            if prop is None:
                raise InvalidRequestError(
                    f"{name}={_show(value)} is not a parameter of model {model!r}; its parameters "
                    f"are {self.names}"
                )
            prop.check(model, name, value)

    def shape_image(self, payload: dict[str, Any]) -> None:
        """`input_image` as the model takes it: one string, or an array even of one image."""
        model = self.model
        image = self.props.get("input_image")
        images = payload.get("input_image")
        if images is not None:
            if image is None:
                raise InvalidRequestError(
                    f"model {model!r} takes no input image; its parameters are {self.names}"
                )
            if "array" in image.types and isinstance(images, str):
                payload["input_image"] = [images]
            elif "string" in image.types and isinstance(images, list):
                if len(images) != 1:
                    raise InvalidRequestError(
                        f"model {model!r} takes one image, got {len(images)}; use e.g. "
                        "'qwen-image-edit-plus' for several"
                    )
                payload["input_image"] = images[0]


@dataclass(slots=True)
class _Entry:
    schema: Schema | None  # None: the request is sent unchecked
    missing: bool  # the models endpoint answered 404
    expires: float  # time.monotonic(); inf: for the client's lifetime
    # Shapes of requests that passed (see `_shape`): the same again needs no check. Each
    # says whether the check reshaped `input_image` (`Schema.shape_image`), so that one of
    # the same shape is reshaped too, and one that was not needs no call.
    passed: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    # The last request checked anew, when its parameters (all but the prompt and the one
    # image) are immutable atoms: those (name, value) pairs, and whether it was reshaped. A
    # request holding the very same objects (as a loop of submits passes them) is of that
    # shape without making its key.
    last: tuple[tuple[tuple[str, Any], ...], bool] | None = None


# What differs in every request, left out of its shape; and the values a request's shape may
# be recognised by identity (immutable: the same object is the same value).
_FREE: Final = frozenset({"prompt", "input_image"})
_ATOMS: Final = frozenset({str, int, float, bool, type(None)})

# Made once: a tuple written in the check would be built anew for each parameter of each submit.
_UNHASHABLE: Final = (list, dict, set)


def _shape(payload: dict[str, Any]) -> tuple[Any, ...] | None:
    """What the check of `payload` depends on: every parameter's value, but of the prompt and
    the images (different in every request, checked by their type alone) only their types and
    number. None when a value cannot be a key (a list or dict parameter: checked each time).

    One flat tuple (no tuple per parameter: each would be an object for the garbage collector,
    per submit): each name is followed by what its kind takes, so two payloads give the same
    key only when they have the same shape."""
    key: list[Any] = []
    for name, value in payload.items():
        key.append(name)
        if name == "prompt":
            key.append(type(value))
        elif name == "input_image":
            if isinstance(value, list):  # `list`, then the types (never `list` for one image)
                key.append(list)
                key.append(tuple(map(type, value)))
            else:
                key.append(type(value))
        elif isinstance(value, _UNHASHABLE):
            return None
        else:
            # The type too: 1 == 1.0 == True, but a schema tells them apart.
            key.append(type(value))
            key.append(value)
    return tuple(key)


class _Loading:
    """A fetch of one model's schema in progress, and its outcome for those who waited."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.entry: _Entry | None = None
        self.error: BaseException | None = None


def _compile(model: str, raw: Mapping[str, Any] | None) -> Schema | None:
    """The model's schema; the offline table's when the API gave none."""
    if not raw or not raw.get("properties"):
        raw = FALLBACK.get(model)
    return Schema(model, raw) if raw else None


class Schemas:
    """Per-client cache of compiled schemas, one fetch per model.

    Args:
        fetch: `GET /api/ai/models/{id}` (retried as any GET).
        disk: Also keep schemas in this file between processes (the CLI's).
    """

    def __init__(
        self, fetch: Callable[[str], Awaitable[Model]], disk: DiskCache | None = None
    ) -> None:
        self._fetch = fetch
        self.disk = disk
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, _Loading] = {}

    def using(self, fetch: Callable[[str], Awaitable[Model]]) -> Schemas:
        """These schemas (one cache, one fetch per model), fetched through `fetch` from now on:
        a `with_options` client's schema requests follow its own settings."""
        view = copy.copy(self)
        view._fetch = fetch
        return view

    def cached(self, payload: dict[str, Any]) -> bool:
        """Check `payload` with its model's cached schema, without awaiting (the hot path of
        10,000 submits); False when the schema must be loaded first: then `await check()`."""
        entry = self._entries.get(payload["model"])
        if entry is None or entry.expires <= time.monotonic():
            return False
        schema = entry.schema
        if schema is not None and not entry.missing:
            last = entry.last
            if (
                last is not None
                and len(payload) == len(last[0]) + 2
                and type(payload.get("prompt")) is str
                and type(payload.get("input_image")) is str
            ):
                get = payload.get
                for name, value in last[0]:
                    if get(name) is not value:
                        break
                else:  # the same objects as the last request checked: its shape
                    if last[1]:
                        schema.shape_image(payload)
                    return True
            # Thousands of submits differ only in prompt and image: check each shape once.
            try:
                shape = _shape(payload)
                reshaped = None if shape is None else entry.passed.get(shape)
            except TypeError:  # an unhashable value inside a tuple, say
                shape, reshaped = None, None
            if reshaped is not None:  # seen: checked already
                if reshaped:
                    schema.shape_image(payload)
                return True
            images = payload.get("input_image")
            schema.check(payload)
            reshaped = payload.get("input_image") is not images
            if shape is not None and len(entry.passed) < C.SCHEMA_SHAPES_KEPT:
                entry.passed[shape] = reshaped
            if type(images) is str and type(payload.get("prompt")) is str:  # as the fast path
                pairs = tuple((k, v) for k, v in payload.items() if k not in _FREE)
                if all(type(v) in _ATOMS for _, v in pairs):
                    entry.last = pairs, reshaped
            return True
        self._apply(entry, payload)
        return True

    async def check(self, payload: dict[str, Any]) -> None:
        """Check `payload` (a request body) against its model's schema, fetching it once."""
        if not self.cached(payload):
            entry = await self._load(payload["model"])
            if not self.cached(payload):  # loaded: a burst's same shapes are checked once
                self._apply(entry, payload)

    @staticmethod
    def _apply(entry: _Entry, payload: dict[str, Any]) -> None:
        if entry.missing:
            raise InvalidRequestError(
                f"model {payload['model']!r} does not exist; see client.models() (or `oxedit "
                "models`) for the model ids"
            )
        if entry.schema is not None:
            entry.schema.check(payload)

    async def exists(self, model: str) -> bool:
        """False only when the models endpoint said the model does not exist."""
        entry = self._entries.get(model)
        if entry is None or entry.expires <= time.monotonic():
            entry = await self._load(model)
        return not entry.missing

    async def _load(self, model: str) -> _Entry:
        """One fetch per model however many ask at once: the others wait for its outcome."""
        while True:
            loading = self._loading.get(model)
            if loading is None:
                break
            await loading.done.wait()
            if loading.entry is not None:
                return loading.entry
            if loading.error is not None and not isinstance(loading.error, asyncio.CancelledError):
                raise loading.error
            # The fetching caller was cancelled: the next one in line fetches.
        loading = self._loading[model] = _Loading()
        try:
            loading.entry = self._entries[model] = await self._fetch_entry(model)
            return loading.entry
        except BaseException as exc:
            loading.error = exc
            raise
        finally:
            del self._loading[model]
            loading.done.set()

    async def _fetch_entry(self, model: str) -> _Entry:
        disk = self.disk
        if disk is not None:
            hit, raw = await disk.get(model)
            if hit:
                return _Entry(_compile(model, raw), False, math.inf)
        try:
            found = await self._fetch(model)
        except NotFoundError:
            # Not forever, and not on disk: a model can be added while a client runs.
            return _Entry(None, True, time.monotonic() + C.UNKNOWN_MODEL_RECHECK)
        except (AuthenticationError, ClientStateError):
            raise  # the enqueue would be refused the same way: say so before sending
        except OxeditError as exc:
            schema = _compile(model, None)
            log.warning(
                "the schema of model %r could not be fetched (%s); %s for %.0f s",
                model,
                exc,
                "checking with oxedit's own table" if schema else "sending unchecked",
                C.SCHEMA_RETRY_AFTER,
            )
            return _Entry(schema, False, time.monotonic() + C.SCHEMA_RETRY_AFTER)
        raw = found.schema or None
        if disk is not None:
            await disk.put(model, raw)
        return _Entry(_compile(model, raw), False, math.inf)


def cache_file(kind: str, base_url: str) -> Path:
    """The CLI's cache file of `kind` for `base_url`: `<folder>/<kind>-<digest>.json`, the
    folder being `$OXEDIT_CACHE_DIR`, else `$XDG_CACHE_HOME/oxedit`, else `~/.cache/oxedit`."""
    folder = os.environ.get("OXEDIT_CACHE_DIR")
    if not folder:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        folder = str(Path(xdg) / "oxedit")
    digest = hashlib.sha256(base_url.encode()).hexdigest()[:16]
    return Path(folder) / f"{kind}-{digest}.json"


class DiskCache:
    """The CLI's schema cache: one JSON file per base URL, entries kept `ttl` seconds. Only
    models that exist are kept: an unknown id is asked about again by the next command.

    The folder is `$OXEDIT_CACHE_DIR`, else `$XDG_CACHE_HOME/oxedit`, else `~/.cache/oxedit`.
    A cache that cannot be read or written is skipped: it only saves requests.
    """

    def __init__(self, path: Path, *, ttl: float = C.SCHEMA_DISK_TTL) -> None:
        self.path = path
        self.ttl = ttl

    @classmethod
    def for_base_url(cls, base_url: str) -> DiskCache:
        return cls(cache_file("schemas", base_url))

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _get(self, model: str) -> tuple[bool, dict[str, Any] | None]:
        entry = self._read().get(model)
        if not isinstance(entry, dict) or not isinstance(entry.get("at"), int | float):
            return False, None
        if not 0 <= time.time() - entry["at"] < self.ttl:
            return False, None
        schema = entry.get("schema")
        return True, (schema if isinstance(schema, dict) else None)

    def _put(self, model: str, schema: dict[str, Any] | None) -> None:
        data = self._read()
        data[model] = {"at": time.time(), "schema": schema}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, json.dumps(data).encode())
        except OSError as exc:
            log.debug("schema cache %s not written: %s", self.path, exc)

    async def get(self, model: str) -> tuple[bool, dict[str, Any] | None]:
        """`(True, schema)` when a fresh entry exists (the schema may be None: the API had
        none), else `(False, None)`."""
        return await anyio.to_thread.run_sync(self._get, model)

    async def put(self, model: str, schema: dict[str, Any] | None) -> None:
        """Remember `model`'s schema as the API gave it (None: it had none)."""
        await anyio.to_thread.run_sync(self._put, model, schema)

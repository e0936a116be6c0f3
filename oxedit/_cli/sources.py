"""Batch sources for the CLI: a folder of images, or a JSONL / CSV manifest.

Each yields, in order, an `EditRequest` or an `InvalidRequestError` naming the row or file
and the fix: a bad row never stops the others.
"""

from __future__ import annotations

import csv
import difflib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from .._bulk.requests import EditRequest
from .._exceptions import InvalidRequestError

__all__ = ["IMAGE_SUFFIXES", "load_source"]

IMAGE_SUFFIXES: Final = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})
_MANIFEST_SUFFIXES: Final = frozenset({".jsonl", ".ndjson", ".csv"})

Item = EditRequest | InvalidRequestError


def load_source(
    source: str | Path, *, defaults: dict[str, Any], where: list[str] | None = None
) -> list[Item]:
    """The items of a folder or manifest; `defaults` fills keys a row leaves out (prompt,
    model, aspect_ratio from the command line). `where`, if given, receives each item's
    place, to name it in later errors: `manifest.jsonl line 3 (cat.png)`, or a folder's file.
    """
    path = Path(source)
    if path.is_dir():
        items = list(_folder(path, defaults))
        if where is not None:
            where.extend(i.image if isinstance(i, EditRequest) else str(i) for i in items)
        if items and not defaults.get("prompt"):
            raise InvalidRequestError(
                f"no prompt for the images of {str(source)!r}: give one with --prompt"
            )
        return items
    if not path.exists():
        raise InvalidRequestError(
            f"{str(source)!r}: no such folder or manifest; pass a folder of images or a "
            ".jsonl/.csv file"
        )
    if path.suffix.lower() not in _MANIFEST_SUFFIXES:
        raise InvalidRequestError(
            f"{str(source)!r} is neither a folder nor a manifest (.jsonl or .csv)"
        )
    rows = list(_csv_rows(path) if path.suffix.lower() == ".csv" else _jsonl_rows(path))
    if rows and not defaults.get("prompt") and not any(_has_prompt(row) for _, row in rows):
        raise InvalidRequestError(
            f"no prompt: no row of {path.name} has a 'prompt'; add a 'prompt' to the rows or "
            "give one for all of them with --prompt"
        )
    if where is not None:
        where.extend(_place(at, row) for at, row in rows)
    return [_row(path, at, row, defaults) for at, row in rows]


def _place(at: str, row: dict[str, Any] | InvalidRequestError) -> str:
    image = row.get("image") if isinstance(row, dict) else None
    return f"{at} ({image})" if isinstance(image, str) and image else at


def _has_prompt(row: dict[str, Any] | InvalidRequestError) -> bool:
    prompt = None if isinstance(row, InvalidRequestError) else row.get("prompt")
    return isinstance(prompt, str) and bool(prompt.strip())


def _folder(folder: Path, defaults: dict[str, Any]) -> Iterator[Item]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    for file in files:
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        yield _row(folder, str(file), {"image": str(file), "name": file.stem}, defaults)


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any] | InvalidRequestError]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            where = f"{path.name} line {number}"
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield (
                    where,
                    InvalidRequestError(
                        f"{where}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove "
                        "the line"
                    ),
                )
                continue
            if not isinstance(row, dict):
                yield (
                    where,
                    InvalidRequestError(
                        f"{where}: expected a JSON object like "
                        '{"image": "cat.png", "prompt": "Add a hat"}'
                    ),
                )
                continue
            yield where, row


def _csv_rows(path: Path) -> Iterator[tuple[str, dict[str, Any] | InvalidRequestError]]:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "image" not in reader.fieldnames:
            raise InvalidRequestError(
                f"{path.name}: the CSV header must name an 'image' column (and usually 'prompt')"
            )
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            if None in row:
                yield (
                    where,
                    InvalidRequestError(
                        f"{where}: more values than header columns; quote values that hold commas"
                    ),
                )
                continue
            values = {k: v for k, v in row.items() if v not in (None, "")}
            count = values.get("num_generations")
            if isinstance(count, str) and count.strip().isdigit():
                # CSV has only text; the API takes a number (other params pass as text).
                values["num_generations"] = int(count)
            yield where, values


def _row(
    base: Path, where: str, row: dict[str, Any] | InvalidRequestError, defaults: dict[str, Any]
) -> Item:
    if isinstance(row, InvalidRequestError):
        return row
    merged = {**{k: v for k, v in defaults.items() if v is not None}, **row}
    image = merged.get("image")
    if isinstance(image, str) and image and not image.startswith(("http://", "https://", "data:")):
        # Manifest paths are relative to the manifest; folder items are already full paths.
        relative = not base.is_dir() and not Path(image).is_absolute()
        resolved = base.parent / image if relative else Path(image)
        merged["image"] = str(resolved)
        if not resolved.is_file():
            return InvalidRequestError(
                f"{where}: image {image!r} not found (looked at {resolved}); fix the path"
            )
        if resolved.suffix.lower() not in IMAGE_SUFFIXES:
            return InvalidRequestError(f"{where}: {image!r} is not a jpeg, png, gif or webp file")
    try:
        return EditRequest.from_mapping(merged)
    except InvalidRequestError as exc:
        return InvalidRequestError(f"{where} {exc}{_near_miss(merged)}")


_KEYS: Final = ("image", "prompt", "model", "name")


def _near_miss(row: dict[str, Any]) -> str:
    """`; did you mean 'image' for 'imgae'?` when a key the row lacks is a typo away."""
    for key in _KEYS:
        if key in row:
            continue
        close = difflib.get_close_matches(key, [k for k in row if k not in _KEYS], n=1)
        if close:
            return f"; did you mean {key!r} for {close[0]!r}?"
    return ""

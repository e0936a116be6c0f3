"""What `oxedit doctor` learned about a hub that the client can use, kept per base URL.

Where the docs, the spec and the official client disagree, oxedit follows one reading and
`oxedit doctor` finds out which one a hub follows. What it found and the client can act on is
written to the CLI's cache folder (beside the schema cache, `_resources.validate.cache_file`),
and every `oxedit` command on that base URL starts from it:

- `edit_field`: the image field of `POST /api/ai/images/edit` (`input_image` [doc] or `image`
  [spec]); the client would learn it on its first edit anyway, at the cost of one refused try.
- `history_first_page`: 1 [spec reading] or 0; nothing would reveal it at run time.
- `metadata_route`: `meta` (oxen-server's, the official client's) or `metadata` [doc], the
  route the uploader's existence check keeps to once one has found a file
  (`Uploader.metadata_route`): seeded, it asks that one only from the first image on.

A file that cannot be read, or a value that is not one of those, is ignored: the findings only
save requests or fix readings, the defaults still work where the hub follows the docs.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._atomic import write_atomic
from .._resources.validate import cache_file

if TYPE_CHECKING:
    from .._client import Client

__all__ = ["ALLOWED", "apply_findings", "findings_file", "load_findings", "save_findings"]

log = logging.getLogger("oxedit")

#: Each finding and the values it may take (the first is what oxedit assumes).
ALLOWED: Final[dict[str, tuple[Any, ...]]] = {
    "edit_field": ("input_image", "image"),
    "history_first_page": (1, 0),
    "metadata_route": ("meta", "metadata"),
}


def findings_file(base_url: str) -> Path:
    return cache_file("findings", base_url)


def load_findings(base_url: str) -> dict[str, Any]:
    """The findings remembered for `base_url` (only valid ones; {} when there are none)."""
    try:
        data = json.loads(findings_file(base_url).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("base_url") != base_url:
        return {}  # another URL with the same digest prefix, or an old format
    return {
        key: value
        for key, value in data.items()
        if key in ALLOWED and value in ALLOWED[key] and type(value) is type(ALLOWED[key][0])
    }


def save_findings(base_url: str, found: dict[str, Any]) -> Path | None:
    """Merge `found` into what is remembered for `base_url`; the file, or None if unwritable."""
    merged = {**load_findings(base_url), **{k: v for k, v in found.items() if k in ALLOWED}}
    path = findings_file(base_url)
    body = {"base_url": base_url, "at": time.time(), **merged}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(body, indent=1).encode())
    except OSError as exc:
        log.warning("doctor's findings not written to %s: %s", path, exc)
        return None
    return path


def apply_findings(client: Client) -> dict[str, Any]:
    """Set what doctor found for the client's base URL on the client; returns it."""
    found = load_findings(client.base_url)
    tracker = client._tracker
    if "edit_field" in found:
        tracker.api.edit_image_field = found["edit_field"]
    if "history_first_page" in found:
        tracker.api.history_first_page = found["history_first_page"]
    if "metadata_route" in found and tracker.uploader is not None:
        tracker.uploader.metadata_route = found["metadata_route"]
    return found

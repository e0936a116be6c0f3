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
from typing import Any, Final

from .._atomic import write_atomic
from .._config import HubProfile
from .._resources.validate import cache_file

__all__ = ["ALLOWED", "findings_file", "hub_profile", "load_findings", "save_findings"]

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


def hub_profile(base_url: str) -> HubProfile:
    """What doctor found for `base_url`, as the client's `hub=` setting."""
    return HubProfile(**load_findings(base_url))

"""Thumbnails for the HTML report: small WebP files in a hidden folder under the output folder.

A thumbnail's name is a digest of its source (the resolved path, size and modification time, or
the bytes of a data URI), so rebuilding a page reuses every thumbnail whose image did not
change, and an edited image gets a fresh one. The folder holds only files named that way (and
the `_atomic` temporaries of a crashed write); pruning removes nothing else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from PIL import Image

from ... import _constants as C
from ..._atomic import remove_own_temps, write_atomic

__all__ = ["THUMBS_DIR", "Source", "Thumbnailer", "data_uri_source", "shrink"]

THUMBS_DIR: Final = ".oxedit-thumbs"
_DIGEST_HEX: Final = 20
_OWN_THUMB: Final = re.compile(rf"^[0-9a-f]{{{_DIGEST_HEX}}}\.webp$")

# A source: a local file, or the bytes a data URI carries (with their digest).
Source = Path | tuple[str, bytes]


class Thumbnailer:
    """Makes (or reuses) the thumbnails of one output folder.

    Args:
        out_dir: The batch's output folder; thumbnails go to `out_dir/.oxedit-thumbs/`.
    """

    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / THUMBS_DIR
        self._made: set[str] = set()

    def make_all(self, sources: Iterable[Source]) -> dict[Source, Path | None]:
        """The thumbnail of each source (None: not an image, or unreadable), made in a few
        threads: Pillow releases the GIL while it decodes and resizes."""
        unique = list(dict.fromkeys(sources))
        with ThreadPoolExecutor(C.REPORT_THUMB_WORKERS) as pool:
            made = list(pool.map(self.thumb, unique))
        return dict(zip(unique, made, strict=True))

    def thumb(self, source: Source) -> Path | None:
        """The thumbnail of one source, made if it does not exist yet."""
        try:
            if isinstance(source, Path):
                st = source.stat()
                key = f"{source.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()
            else:
                key = source[0].encode()
            target = self.folder / f"{hashlib.sha256(key).hexdigest()[:_DIGEST_HEX]}.webp"
            self._made.add(target.name)
            if not (target.exists() and target.stat().st_size):  # empty: a crash, not fsynced
                data = source.read_bytes() if isinstance(source, Path) else source[1]
                write_atomic(target, shrink(data), durable=False)  # a cache: made again if lost
            return target
        except (OSError, ValueError, Image.DecompressionBombError):
            # Gone, not an image, or unreadable: the page shows a placeholder instead.
            return None

    def prune(self) -> int:
        """Remove the thumbnails this page does not use (and crashed writes' temporaries);
        returns how many. Only files this module names are ever removed."""
        removed = remove_own_temps(self.folder)
        if self.folder.is_dir():
            for entry in os.scandir(self.folder):
                if (
                    _OWN_THUMB.match(entry.name)
                    and entry.name not in self._made
                    and entry.is_file(follow_symlinks=False)
                ):
                    os.unlink(entry.path)
                    removed += 1
        return removed


def shrink(data: bytes) -> bytes:
    """`data` (an image file) as a WebP thumbnail of at most `REPORT_THUMB_PIXELS` a side.

    Raises:
        OSError: `data` is not an image Pillow can read.
    """
    side = C.REPORT_THUMB_PIXELS
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (side, side))  # JPEG: decode at a reduced scale, much faster
        image = opened.convert("RGBA" if _has_alpha(opened) else "RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=C.REPORT_THUMB_QUALITY, method=4)
    return buffer.getvalue()


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info


def data_uri_source(uri: str) -> Source | None:
    """The source a base64 `data:` URI stands for, or None when it is not one."""
    header, comma, payload = uri.partition(",")
    if not comma or not header.endswith(";base64"):
        return None
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return ("data:" + hashlib.sha256(data).hexdigest(), data)

"""Results you can see where you work: images inline in Jupyter, a live batch bar, a grid.

A leaf module (Pillow, rich and, when it is there, IPython): it knows nothing of clients. The
callers hand it bytes and texts; downloading stays theirs, so nothing here ever runs on, or
waits for, an event loop.
"""

from __future__ import annotations

import base64
import html
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from PIL import Image, ImageOps
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import _constants as C

__all__ = [
    "BatchBar",
    "Card",
    "grid_html",
    "image_bundle",
    "in_notebook",
    "show_image",
    "thumbnail_uri",
]

# The formats a notebook shows from their own MIME type; others (WebP, GIF) go in an <img>.
_NATIVE: Final = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg"}
_OTHER: Final = {b"RIFF": "image/webp", b"GIF8": "image/gif"}


def sniff(data: bytes) -> str | None:
    """The MIME type of image bytes, from their first bytes (None: not one we know)."""
    for magic, mime in (_NATIVE | _OTHER).items():
        if data.startswith(magic) and (mime != "image/webp" or data[8:12] == b"WEBP"):
            return mime
    return None


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel: IPython imported, with a kernel attached (a
    terminal IPython has none, and draws rich's bar like any terminal)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    shell = get() if get is not None else None
    return getattr(shell, "kernel", None) is not None


def image_bundle(data: bytes, text: str) -> dict[str, Any]:
    """A Jupyter MIME bundle showing `data` inline, with `text` as its plain-text form.

    PNG and JPEG go as themselves; other images as an `<img>` with a data URI, which every
    frontend renders; bytes that are no image we know show as text only.
    """
    mime = sniff(data)
    encoded = base64.b64encode(data).decode("ascii")
    if mime == "image/png" or mime == "image/jpeg":
        return {mime: encoded, "text/plain": text}
    if mime is not None:
        alt = html.escape(text, quote=True)
        return {
            "text/html": f'<img src="data:{mime};base64,{encoded}" alt="{alt}"/>',
            "text/plain": text,
        }
    return {"text/plain": f"{text} ({len(data)} bytes, not an image)"}


def show_image(data: bytes, text: str) -> None:
    """Show image bytes: inline in a notebook, else in the system's image viewer (Pillow)."""
    if in_notebook():
        from IPython.display import display

        display(image_bundle(data, text), raw=True)  # type: ignore[no-untyped-call]
        return
    Image.open(io.BytesIO(data)).show(title=text)


def thumbnail_uri(data: bytes, pixels: int = C.SYNC_GRID_THUMB_PIXELS) -> str | None:
    """A small JPEG of image bytes as a data URI (None: not an image Pillow can read)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            small = ImageOps.exif_transpose(image)
            small.thumbnail((pixels, pixels))
            out = io.BytesIO()
            small.convert("RGB").save(out, "JPEG", quality=C.SYNC_GRID_THUMB_QUALITY)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


@dataclass(frozen=True, slots=True)
class Card:
    """One item of the inline grid: a title, its status, and the two pictures' `src` (a data
    URI or a URL; None: nothing to show), and what went wrong if it did."""

    title: str
    status: str
    before: str | None
    after: str | None
    note: str | None = None


_COLOURS: Final = {"succeeded": "#2e9d5b", "failed": "#d0453c", "error": "#d0453c"}


def _picture(src: str | None, label: str) -> str:
    size = C.SYNC_GRID_THUMB_PIXELS
    box = f"width:{size}px;height:{size}px;object-fit:contain;background:#8881"
    if src is None:
        return (
            f'<div style="{box};display:flex;align-items:center;justify-content:center;'
            f'color:#888;font-size:11px">no {label}</div>'
        )
    return f'<img src="{html.escape(src, quote=True)}" alt="{label}" style="{box}"/>'


def grid_html(cards: Sequence[Card], more: int = 0, summary: str = "") -> str:
    """The before/after grid of a batch: one compact card per item, like the report's
    (`report.html`), self-contained (inline styles, pictures as data URIs). Every text is
    escaped: prompts and error messages are user data."""
    esc = html.escape
    parts = [
        '<div style="display:grid;grid-template-columns:repeat(auto-fill,minmax('
        f'{2 * C.SYNC_GRID_THUMB_PIXELS + 28}px,1fr));gap:10px;font:12px system-ui,sans-serif">'
    ]
    for card in cards:
        colour = _COLOURS.get(card.status, "#d08a1c")
        note = (
            f'<div style="color:#d0453c;overflow-wrap:anywhere">{esc(card.note)}</div>'
            if card.note
            else ""
        )
        parts.append(
            f'<div style="border:1px solid #8884;border-left:4px solid {colour};'
            'border-radius:6px;padding:6px">'
            f'<div style="display:flex;justify-content:space-between;gap:6px">'
            f'<b style="overflow-wrap:anywhere">{esc(card.title)}</b>'
            f'<span style="color:{colour}">{esc(card.status)}</span></div>'
            f'<div style="display:flex;gap:4px;margin-top:4px">'
            f"{_picture(card.before, 'input')}{_picture(card.after, 'output')}</div>"
            f"{note}</div>"
        )
    parts.append("</div>")
    tail = [summary] if summary else []
    if more:
        tail.append(f"and {more} more item{'s' if more != 1 else ''} not shown")
    if tail:
        parts.append(f'<p style="font:12px system-ui,sans-serif">{esc("; ".join(tail))}</p>')
    return "".join(parts)


class BatchBar:
    """A batch's live bar (done / total, succeeded and failed, elapsed), drawn by rich: in a
    terminal as rich's own live display on stderr; in a notebook as rich's HTML in one output
    that each `refresh()` replaces (a Jupyter display id), so the saved notebook keeps the
    last state and no widget library is needed.

    Only the thread that calls it draws: a notebook's output belongs to the cell's thread.
    """

    def __init__(self, total: int | None, *, notebook: bool) -> None:
        self._notebook = notebook
        self._console = (
            Console(
                record=True,
                file=io.StringIO(),
                width=100,
                force_terminal=True,
                force_jupyter=False,  # rich would display each print itself: one output only
            )
            if notebook
            else Console(stderr=True)
        )
        self._progress = Progress(
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            TextColumn(
                "[green]{task.fields[ok]} succeeded[/] [red]{task.fields[failed]} failed[/]"
            ),
            TimeElapsedColumn(),
            console=self._console,
            auto_refresh=not notebook,
        )
        self._task = self._progress.add_task("oxedit", total=total, ok=0, failed=0)
        self._ok = self._failed = 0
        self._handle: Any = None

    def __enter__(self) -> BatchBar:
        if self._notebook:
            from IPython.display import display

            self._handle = display(  # type: ignore[no-untyped-call]
                self._bundle(), raw=True, display_id=True
            )
        else:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._notebook:
            self.refresh()
        else:
            self._progress.stop()

    def add(self, ok: bool) -> None:
        """One item finished."""
        self._ok += ok
        self._failed += not ok
        self._progress.update(self._task, advance=1, ok=self._ok, failed=self._failed)

    def refresh(self) -> None:
        """Redraw (a notebook's bar; a terminal's redraws itself)."""
        if self._handle is not None:
            self._handle.update(self._bundle(), raw=True)

    def _bundle(self) -> dict[str, str]:
        console = self._console
        console.print(self._progress.get_renderable())
        text = console.export_text(clear=False)
        code = console.export_html(
            inline_styles=True, code_format='<pre style="line-height:1.3">{code}</pre>'
        )
        return {"text/html": code, "text/plain": text.rstrip()}

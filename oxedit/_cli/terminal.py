"""The CLI's consoles: text is never hard-wrapped for a pipe or a log, and values never meet
rich markup unescaped."""

from __future__ import annotations

import sys
from typing import Any, Final

from rich.console import Console
from rich.text import Text

__all__ = ["cell", "line", "make_console"]

# Width given to rich when the output is not a terminal (a pipe, a log, CI): wide enough that
# no line is ever split. Tables do not expand, so they stay as narrow as their content.
_UNWRAPPED_WIDTH: Final = 100_000


def make_console(*, stderr: bool) -> Console:
    """A console on stdout or stderr. On a terminal rich fits tables to its width; elsewhere
    nothing is wrapped, whatever COLUMNS says. Print messages with `line`."""
    stream = sys.stderr if stderr else sys.stdout
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream
        terminal = False
    return Console(
        stderr=stderr,
        highlight=False,
        width=None if terminal else _UNWRAPPED_WIDTH,
    )


def cell(value: Any) -> Text:
    """A table cell showing `value` literally (a path or message with `[...]` is not markup)."""
    return Text("" if value is None else str(value))


def line(console: Console, message: str, *, style: str | None = None) -> None:
    """Print `message` as one line: literally (no markup), never split by rich (on a
    terminal, the terminal itself wraps it for the eye)."""
    console.print(Text(message, style=style or ""), soft_wrap=True)

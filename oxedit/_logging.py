"""The `OXEDIT_LOG` switch (like openai's `OPENAI_LOG`): debug or info logs on stderr.

Nothing is configured unless the variable is set; an application that configures logging
itself just uses the `oxedit` logger. No log line carries the API key: requests are logged by
method, URL and status, never with their headers.
"""

from __future__ import annotations

import logging
import os
import sys

from ._exceptions import ConfigurationError

__all__ = ["setup_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _StderrHandler(logging.Handler):
    """Writes to whatever `sys.stderr` is at the time (a handler bound to the stream of the
    moment would keep writing to a replaced, perhaps closed, one)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def setup_logging() -> None:
    """Apply `OXEDIT_LOG` to the `oxedit` logger: its level, and one stderr handler (added
    once, however many clients are created).

    Raises:
        ConfigurationError: `OXEDIT_LOG` is set to something other than debug or info.
    """
    value = os.environ.get("OXEDIT_LOG")
    if not value:
        return
    level = _LEVELS.get(value.strip().lower())
    if level is None:
        raise ConfigurationError(
            f"OXEDIT_LOG={value!r} is not one of {', '.join(_LEVELS)}; set it to one of them "
            "or unset it"
        )
    logger = logging.getLogger("oxedit")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)

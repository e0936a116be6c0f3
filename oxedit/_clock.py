"""The event loop's clock, read without a Python call where the loop allows it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["loop_clock"]


def loop_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """What reads `loop.time()`: `time.monotonic` itself when the loop's clock is asyncio's
    own (`BaseEventLoop.time` is a Python method calling it: one Python call fewer each time
    the engine reads the clock, several times per job), else the loop's method (uvloop,
    a test loop with a clock of its own, a loop whose `time` was replaced). Read once: the
    caller keeps what this returns."""
    read = loop.time
    if getattr(read, "__func__", None) is asyncio.BaseEventLoop.time:
        return time.monotonic
    return read

"""Atomic file writes, and the cleanup of the temporary files they leave behind on a crash.

A result is written to a temporary file in the target's folder, then renamed over the target,
so the final name only ever holds a complete file. The temporary name carries a marker no user
file has and the writer's process id (`.NAME.oxedit-<pid>-<12 hex>.part`), so cleaning up after
a crash removes only files oxedit itself created, never a user's `.movie.mkv.part`, and only
those whose writer is gone, never another run's write in progress.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import Final

import anyio

__all__ = ["is_own_temp", "remove_own_temps", "save_atomic", "temp_name", "write_atomic"]

_MARKER: Final = "oxedit-"
_TOKEN_HEX: Final = 12
# The process id is absent from the names of versions before it was added.
_OWN_TEMP: Final = re.compile(rf"^\..+\.{_MARKER}(?:([0-9]+)-)?[0-9a-f]{{{_TOKEN_HEX}}}\.part$")


def temp_name(name: str) -> str:
    """A fresh temporary file name for a file to be named `name`, written by this process."""
    return f".{name}.{_MARKER}{os.getpid()}-{secrets.token_hex(_TOKEN_HEX // 2)}.part"


def is_own_temp(name: str) -> bool:
    """True for names `temp_name` makes, and only those."""
    return _OWN_TEMP.match(name) is not None


def _writer_alive(own: re.Match[str]) -> bool:
    """Whether the process that named this temporary file (`temp_name`, matched by
    `_OWN_TEMP`) still runs on this machine: then it may be writing it now. False for a name
    without a process id."""
    if own.group(1) is None or os.name != "posix":
        return False
    pid = int(own.group(1))
    if pid == os.getpid():
        return True  # another write of this process's (two runs into one folder)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    except (OverflowError, OSError):
        return False
    return True


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename.

    The file is created like any file the user writes (mode 0666 less the umask), not 0600
    as `tempfile.mkstemp` would; parent folders are created. `durable=False` skips the fsync,
    for files that can be made again (the report's thumbnails): a crash may then leave the
    name holding an empty file, never a torn one from another write.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def save_atomic(path: Path, data: bytes) -> None:
    """`write_atomic` in a worker thread, off the event loop."""
    await anyio.to_thread.run_sync(write_atomic, path, data)


def remove_own_temps(folder: Path, older_than: float = 0.0) -> int:
    """Delete the temporary files that interrupted `write_atomic`s left in `folder`; returns
    how many. Other files are never touched, nor those of a process still running here (its
    write may be in progress: two batches can share a folder). `older_than` (seconds): only
    those last written that long ago, when processes on other machines may be writing to the
    folder right now (Ray actors on a shared file system)."""
    removed = 0
    if folder.is_dir():
        now = time.time()
        for stray in folder.glob(f".*.{_MARKER}*.part"):
            own = _OWN_TEMP.match(stray.name)
            if own is None or _writer_alive(own):
                continue
            try:
                info = stray.stat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime >= older_than:
                stray.unlink(missing_ok=True)
                removed += 1
    return removed

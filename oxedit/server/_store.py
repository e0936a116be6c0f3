"""Durable state of a local server: its generations in SQLite, their results as files.

With a state folder, a `LocalServer` survives its process the way the real service does: a
client that resumes after Ctrl-C or `kill -9` finds every generation it was told about. Each
state change is one commit, made before anyone hears of the change (the enqueue answer, the
completion event), so no `kill -9` can lose a row a client knows. WAL mode with
`synchronous=NORMAL`: a commit survives the death of the process (not of the machine), at no
fsync per commit.

Folder layout: `generations.sqlite` (+ WAL files), `results/<id>.<format>`, and `server.lock`,
held with an exclusive OS lock while a server uses the folder, so a second server refuses to
start instead of interleaving writes (the OS drops the lock when the process dies).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from .._exceptions import ConfigurationError
from ._jobs import Generation
from ._schemas import MODELS

__all__ = ["StateStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    params BLOB NOT NULL,
    targets BLOB NOT NULL,
    status TEXT NOT NULL,
    error_message TEXT,
    failure_is_params INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    started_at INTEGER,
    completed_at INTEGER,
    completed_time REAL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""
_COLUMNS = (
    "id, model, params, targets, status, error_message, failure_is_params, enqueued_at, "
    "started_at, completed_at, completed_time"
)
_UPDATE = (
    "UPDATE generations SET status = ?, error_message = ?, failure_is_params = ?, "
    "started_at = ?, completed_at = ?, completed_time = ? WHERE id = ?"
)
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


class StateStore:
    """The state folder of one running server (locked until `close()`).

    Raises:
        ConfigurationError: another server (in this or another process) uses the folder, or
            it cannot be created.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._results = self.folder / "results"
        try:
            self._results.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot create the local server's state folder {str(self.folder)!r}: {exc}"
            ) from None
        self._lock: IO[bytes] | None = _lock(self.folder / "server.lock")
        try:
            self._db = sqlite3.connect(self.folder / "generations.sqlite", isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self.secret = self._secret()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()
            del self._db
        if self._lock is not None:
            self._lock.close()  # closing the file releases the OS lock
            self._lock = None

    def _secret(self) -> bytes:
        # Kept across runs: a presigned URL stays valid until it expires, restart or not.
        row = self._db.execute("SELECT value FROM meta WHERE key = 'url_secret'").fetchone()
        if row is not None:
            return bytes(row[0])
        secret = secrets.token_bytes(32)
        with self._transaction():
            self._db.execute("INSERT INTO meta VALUES ('url_secret', ?)", (secret,))
        return secret

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- writes: one commit per state change --------------------------------------------------

    def insert(self, gens: Iterable[Generation]) -> None:
        """Record newly created generations (one commit for one enqueue)."""
        with self._transaction():
            self._db.executemany(
                f"INSERT INTO generations ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        g.id,
                        g.model.id,
                        _encode(g.params),
                        _encode(g.targets),
                        *_mutable(g),
                    )
                    for g in gens
                ],
            )

    def update(self, gen: Generation) -> None:
        """Record `gen`'s new status; for a success, its result file first."""
        if gen.status == "succeeded" and gen.result is not None:
            path = self._result_path(gen)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(gen.result)
            os.replace(tmp, path)  # a crash leaves the old file or the new one, never half
        status, error, params_failure, _, started, completed, completed_time = _mutable(gen)
        with self._transaction():
            self._db.execute(
                _UPDATE,
                (status, error, params_failure, started, completed, completed_time, gen.id),
            )

    # -- reads ----------------------------------------------------------------------------------

    def load(self) -> list[Generation]:
        """Every recorded generation, in enqueue order (results stay on disk)."""
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM generations ORDER BY seq").fetchall()
        gens = []
        for row in rows:
            gen = Generation(row[0], MODELS[row[1]], _decode(row[2]), _decode(row[3]))
            gen.status, gen.error_message = row[4], row[5]
            gen.failure_is_params = bool(row[6])
            gen.enqueued_at, gen.started_at, gen.completed_at = row[7], row[8], row[9]
            gen.completed_time = row[10]
            gens.append(gen)
        return gens

    def read_result(self, gen: Generation) -> bytes | None:
        try:
            return self._result_path(gen).read_bytes()
        except FileNotFoundError:
            return None

    def _result_path(self, gen: Generation) -> Path:
        return self._results / gen.file_name


def _mutable(gen: Generation) -> tuple[Any, ...]:
    return (
        gen.status,
        gen.error_message,
        int(gen.failure_is_params),
        gen.enqueued_at,
        gen.started_at,
        gen.completed_at,
        gen.completed_time,
    )


def _lock(path: Path) -> IO[bytes]:
    """Open `path` and hold an exclusive, non-blocking OS lock on it; it records who holds it
    (pid and command), so that the next one can say."""
    file = open(path, "a+b")  # noqa: SIM115 - held open for the server's lifetime
    try:
        if sys.platform == "win32":
            import msvcrt

            msvcrt.locking(file.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        file.seek(0)
        holder = file.read(500).decode("utf-8", "replace").strip() or "unknown"
        file.close()
        raise ConfigurationError(
            f"the local server state folder {str(path.parent)!r} is in use by another running "
            f"server, process {holder}; stop that one or wait for it to end, or give this one "
            "another folder"
        ) from None
    with contextlib.suppress(OSError):
        command = " ".join(sys.orig_argv)[:200]
        file.seek(0)
        file.truncate()
        file.write(f"{os.getpid()} ({command})".encode())
        file.flush()
    return file

"""A durable record of a bulk run, in SQLite (standard library, one file, crash-safe).

Every item is written *before* its enqueue request is sent, its generation id as soon as it is
known, its outcome and output path when it ends. With WAL journaling each commit is one append
to the WAL file: it survives the process being killed (`kill -9`) the moment `commit()`
returns, at ~20 µs a commit, so no batching is needed. Power loss may lose the last commits;
that is the trade of `synchronous=NORMAL`.

States: `sending` (recorded, enqueue may be in flight) -> `enqueued` (id known) -> one of
`succeeded`, `failed`, `cancelled`, `error` (never enqueued: bad input or a refused request).

Money: `estimate` is what the item was expected to cost when it was sent, `cost` what the
history endpoint says it cost (decimal strings, USD). The spend of the batch so far is, over
the items that were sent, the cost where known, else the estimate (`spent()`): a later run
counts it against its cap. Journals written before these columns existed get them added.

An item with `num_generations` > 1 is one enqueue with several generations: `generation_id`
holds the first, `more_ids` the others, `outputs` every output path (JSON lists).

Keys: an item is keyed by what it is (`v2-` + a digest of `_requests.identity`, its image's
content, prompt, model, parameters and name, + which repetition), never by how its image path
was written, and its stored `request` holds the image's absolute path: a re-run from another
folder finds it. Rows of older journals, keyed by the path as written, are re-keyed when their
image can be read or their request is met again (`_bulk_resume.migrate_legacy`, `BulkRun`).
`names` holds the output file names (stems) the item reserved before it was sent: no other
item of the folder may take them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Final

from .. import _constants as C
from .._exceptions import ConfigurationError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one run at a time is then up to the user
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FINISHED",
    "Journal",
    "JournalEntry",
    "is_legacy",
    "item_key",
    "legacy_key",
    "peek",
]

FINISHED: Final = frozenset({"succeeded", "failed", "cancelled", "error"})

_KEY_PREFIX: Final = "v2-"


def item_key(identity: bytes, repetition: int) -> str:
    """The key of the `repetition`-th item (from 1) with this `_requests.identity`."""
    return f"{_KEY_PREFIX}{hashlib.sha256(identity).hexdigest()[:24]}-{repetition}"


def legacy_key(encoded: bytes, repetition: int) -> str:
    """The key older journals gave an item: its request as written (`EditRequest.encoded`)."""
    return f"{hashlib.sha256(encoded).hexdigest()[:24]}-{repetition}"


def is_legacy(key: str) -> bool:
    return not key.startswith(_KEY_PREFIX)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    key TEXT PRIMARY KEY,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    generation_id TEXT,
    sent_at REAL,
    error TEXT,
    output TEXT,
    updated_at REAL NOT NULL,
    estimate TEXT,
    cost TEXT,
    more_ids TEXT,
    outputs TEXT,
    names TEXT
);
CREATE INDEX IF NOT EXISTS items_generation ON items (generation_id);
"""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    key: str
    request: str
    state: str
    generation_id: str | None
    sent_at: float | None
    error: str | None
    output: str | None
    estimate: str | None = None
    cost: str | None = None
    more_ids: str | None = None
    outputs: str | None = None
    names: str | None = None

    @property
    def generation_ids(self) -> list[str]:
        """Every generation the item's enqueue created (one per generation asked for)."""
        if self.generation_id is None:
            return []
        return [self.generation_id, *_json_list(self.more_ids)]

    @property
    def output_paths(self) -> list[str]:
        """Every output file recorded for the item."""
        if self.outputs is not None:
            return _json_list(self.outputs)
        return [self.output] if self.output is not None else []

    @property
    def stems(self) -> list[str]:
        """The output file names (without extension) the item holds in its output folder:
        reserved before it was sent, or (journals from before reservations) its outputs'."""
        reserved = _json_list(self.names)
        return reserved or [Path(path).stem for path in self.output_paths]

    def will_send(self, retry_failed: bool) -> bool:
        """Whether a run would enqueue this item again, not skip or follow what an earlier
        run did (as `BulkRun._process` decides)."""
        if self.generation_id is not None and self.state in ("enqueued", "succeeded"):
            return False
        if self.state == "error" and self.generation_id is None:
            return True
        return retry_failed or self.state not in FINISHED

    @property
    def sent(self) -> bool:
        """Whether its enqueue was sent (and may have been billed)."""
        return self.generation_id is not None or self.state in ("sending", "enqueued")

    @property
    def spent(self) -> Decimal:
        """What this item cost the batch: its actual cost, else its estimate once sent."""
        amount = self.cost if self.cost is not None else self.estimate if self.sent else None
        try:
            return Decimal(amount) if amount is not None else Decimal(0)
        except InvalidOperation:
            return Decimal(0)


_FIELDS = (
    "key, request, state, generation_id, sent_at, error, output, estimate, cost, more_ids, "
    "outputs, names"
)


class Journal:
    """The journal of one batch. Use as a context manager.

    One run at a time: opening it takes an exclusive lock (`PATH.lock`, holding the owner's
    pid), because two runs sharing a journal would each send every item.

    Raises:
        ConfigurationError: another process holds the journal, or the file is not a journal.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(self.path.with_name(self.path.name + ".lock"), self.path)
        except OSError as exc:
            raise ConfigurationError(
                f"journal {str(self.path)!r} cannot be opened ({exc.strerror or exc}); use a "
                "journal path in a folder you can write to"
            ) from exc
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                _add_cost_columns(self._db)
                self._db.execute(f"SELECT {_FIELDS}, updated_at FROM items LIMIT 1")
            except BaseException:
                self._db.close()
                raise
        except sqlite3.DatabaseError as exc:
            self._lock.close()
            raise ConfigurationError(
                f"journal {str(self.path)!r} is not an oxedit journal or is damaged ({exc}); "
                "use another journal path, or move that file away to start the batch afresh"
            ) from exc
        except BaseException:
            self._lock.close()
            raise

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._lock.close()  # closing the file releases the lock

    def get(self, key: str) -> JournalEntry | None:
        row = self._db.execute(f"SELECT {_FIELDS} FROM items WHERE key = ?", (key,)).fetchone()
        return JournalEntry(*row) if row else None

    def entries(self) -> list[JournalEntry]:
        rows = self._db.execute(f"SELECT {_FIELDS} FROM items").fetchall()
        return [JournalEntry(*row) for row in rows]

    def spent(self) -> Decimal:
        """The batch's spend so far (see the module docstring)."""
        return sum((entry.spent for entry in self.entries()), Decimal(0))

    def claimed_ids(self) -> set[str]:
        """Every generation id this batch already owns."""
        rows = self._db.execute(
            "SELECT generation_id, more_ids FROM items WHERE generation_id IS NOT NULL"
        )
        return {gid for first, more in rows for gid in (first, *_json_list(more))}

    def sending(
        self,
        key: str,
        request: str,
        at: float | None = None,
        estimate: Decimal | None = None,
        names: list[str] | None = None,
    ) -> float:
        """Record that the item's enqueue is about to be sent (at Unix time `at`, default now:
        a crash recovery adopts only rows enqueued shortly after it), what it is expected to
        cost and the output names it reserves (each kept from the first attempt when None);
        returns the time."""
        now = time.time() if at is None else at
        self._db.execute(
            "INSERT INTO items (key, request, state, sent_at, updated_at, estimate, names) "
            "VALUES (?, ?, 'sending', ?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET state = 'sending', sent_at = excluded.sent_at, "
            "generation_id = NULL, more_ids = NULL, error = NULL, output = NULL, "
            "outputs = NULL, cost = NULL, names = COALESCE(excluded.names, names), "
            "estimate = COALESCE(excluded.estimate, estimate), updated_at = excluded.updated_at",
            (
                key,
                request,
                now,
                now,
                None if estimate is None else str(estimate),
                None if names is None else json.dumps(names),
            ),
        )
        return now

    def rekey(self, old: str, new: str, request: str) -> None:
        """Give the item `old` the key `new` (and its request as now stored): how rows of a
        journal keyed the old way (by the image path as written) join this run."""
        self._db.execute(
            "UPDATE items SET key = ?, request = ? WHERE key = ?", (new, request, old)
        )

    def costed(self, key: str, cost: Decimal) -> None:
        """Record what the item actually cost."""
        self._set(key, cost=str(cost))

    def enqueued(self, key: str, generation_id: str, *more_ids: str) -> None:
        more = json.dumps(list(more_ids)) if more_ids else None
        self._set(key, state="enqueued", generation_id=generation_id, more_ids=more)

    def finished(
        self,
        key: str,
        state: str,
        *,
        error: str | None = None,
        output: str | None = None,
        outputs: list[str] | None = None,
    ) -> None:
        """The item ended; `outputs` (several generations) replaces `output` when given."""
        assert state in FINISHED, state
        if outputs is not None:
            output = outputs[0] if outputs else None
        listed = json.dumps(outputs) if outputs is not None else None
        self._set(key, state=state, error=error, output=output, outputs=listed)

    def rejected(self, key: str, request: str, error: str) -> None:
        """An item that was never sent (bad input) or that the API refused: it cost nothing."""
        now = time.time()
        self._db.execute(
            "INSERT INTO items (key, request, state, error, updated_at) "
            "VALUES (?, ?, 'error', ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET state = 'error', error = excluded.error, "
            "estimate = NULL, cost = NULL, updated_at = excluded.updated_at",
            (key, request, error, now),
        )

    def absorb(self, entry: JournalEntry) -> None:
        """Take over an item another process's journal holds (`oxedit.ray`: an actor that
        died), as that journal has it: this journal then follows or resumes it."""
        self._db.execute(
            f"INSERT OR REPLACE INTO items ({_FIELDS}, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.key, entry.request, entry.state, entry.generation_id, entry.sent_at,
                entry.error, entry.output, entry.estimate, entry.cost, entry.more_ids,
                entry.outputs, entry.names, time.time(),
            ),
        )  # fmt: skip

    def forget(self, key: str) -> None:
        """Drop an item that was surely never sent, so it is sent as new."""
        self._db.execute("DELETE FROM items WHERE key = ?", (key,))

    def _set(self, key: str, **fields: str | None) -> None:
        names = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(
            f"UPDATE items SET {names}, updated_at = ? WHERE key = ?",
            (*fields.values(), time.time(), key),
        )


def _add_cost_columns(db: sqlite3.Connection) -> None:
    """Journals from before cost tracking lack these columns: add them (both start empty)."""
    have = {row[1] for row in db.execute("PRAGMA table_info(items)")}
    for column in ("estimate", "cost", "more_ids", "outputs", "names"):
        if have and column not in have:
            db.execute(f"ALTER TABLE items ADD COLUMN {column} TEXT")


def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _lock(lock_path: Path, journal: Path) -> IO[str]:
    """Hold an exclusive lock on `lock_path` (it records our pid) or say who holds it.

    Tried `C.JOURNAL_LOCK_ATTEMPTS` times, `C.JOURNAL_LOCK_RETRY` s apart: a report merging
    the journals (`lock_holder`) takes the lock for an instant, and a run starting in that
    instant must not take it for another run's."""
    f = lock_path.open("a+", encoding="utf-8")
    if fcntl is None:
        return f
    for attempt in range(C.JOURNAL_LOCK_ATTEMPTS):
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            if attempt + 1 < C.JOURNAL_LOCK_ATTEMPTS:
                time.sleep(C.JOURNAL_LOCK_RETRY)  # milliseconds, once in a blue moon
                continue
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise _in_use(journal, holder) from None
    with contextlib.suppress(OSError):
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
    return f


def _in_use(journal: Path, holder: str) -> ConfigurationError:
    return ConfigurationError(
        f"journal {str(journal)!r} is in use by process {holder} (another oxedit run of "
        "this batch); wait for it to end or stop it, then run again"
    )


def lock_holder(path: str | os.PathLike[str]) -> str | None:
    """The process holding a journal's lock (the pid it recorded), or None when no run holds
    it: probed with a shared lock taken and dropped at once, never held while the journal is
    read, so that a run starting meanwhile can take it."""
    journal = Path(path)
    lock_path = journal.with_name(journal.name + ".lock")
    if fcntl is None:
        return None
    try:
        f = lock_path.open("r", encoding="utf-8")
    except FileNotFoundError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return f.read().strip() or "unknown"
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None


def read_entries(path: str | os.PathLike[str]) -> list[JournalEntry]:
    """Every entry of a journal no run holds (`lock_holder`), read without its lock (a run
    may start meanwhile: it then holds it). A journal of an older version is opened, and so
    brought up to date, as a run would.

    Raises:
        ConfigurationError: a run holds the journal, or it is damaged.
    """
    journal = Path(path)
    holder = lock_holder(journal)
    if holder is not None:
        raise _in_use(journal, holder)
    try:
        return _snapshot(journal, None)
    except sqlite3.Error:
        with Journal(journal) as opened:  # older columns, or damaged: as a run opens it
            return opened.entries()


def peek(path: str | os.PathLike[str], keys: list[str] | None = None) -> list[JournalEntry]:
    """The rows of a journal another process may be writing (`keys` only, if given), read
    without its lock: a snapshot, as of the last commit (WAL readers never block writers).
    Empty when it cannot be read."""
    try:
        return _snapshot(Path(path), keys)
    except sqlite3.Error:
        return []


def _snapshot(path: Path, keys: list[str] | None) -> list[JournalEntry]:
    """The rows of a journal (`keys` only, if given), read-only and without its lock."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        if keys is None:
            rows = db.execute(f"SELECT {_FIELDS} FROM items").fetchall()
        else:
            rows = []
            for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
                chunk = keys[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows += db.execute(
                    f"SELECT {_FIELDS} FROM items WHERE key IN ({marks})", chunk
                ).fetchall()
        return [JournalEntry(*row) for row in rows]
    finally:
        db.close()

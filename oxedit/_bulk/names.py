"""Output file names of a batch's folder: each item's final names (its `-1`, `-2`, ...
suffixes included) are reserved before it is sent, against every name any item of the journal
holds (this run's, earlier runs', other manifests' sharing the folder) and every image file
already there that oxedit did not write. No item ever overwrites another's output.

Several processes may share one folder (`oxedit batch --shard i/N`, `oxedit.ray` actors), each
with a journal of its own that the others do not read: a name is also reserved in the folder
itself, as a file `.oxedit-names/STEM` holding the owner's key, created atomically (a hard
link, else `O_EXCL`: atomic on local file systems and NFSv3+). Whoever creates it first holds
the name; a racer sees the file and moves on to its next candidate."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from itertools import chain, count
from pathlib import Path
from typing import Final

from .journal import JournalEntry

__all__ = ["OUTPUT_SUFFIXES", "RESERVED_DIR", "OutputNames"]

# What a batch writes (see `_bulk.run`): files of these types block a name.
OUTPUT_SUFFIXES: Final = frozenset({".png", ".jpg", ".gif", ".webp"})

# The folder's name reservations, shared by every process writing to it (see the docstring).
RESERVED_DIR: Final = ".oxedit-names"


def _fold(stem: str) -> str:
    # Case-insensitive file systems (macOS, Windows) hold `A.png` and `a.png` as one file.
    return stem.casefold()


class OutputNames:
    """The names taken in one output folder, and who holds each."""

    def __init__(self, folder: Path, entries: Iterable[JournalEntry]) -> None:
        self.folder = folder
        self._reserved = folder / RESERVED_DIR
        self._owner: dict[str, str] = {}
        for entry in entries:
            for stem in entry.stems:
                self._owner.setdefault(_fold(stem), entry.key)
        # Names this journal held before reservations were kept in the folder (or whose file
        # was lost): reserved now, so that the other processes sharing the folder see them.
        try:
            listed = set(os.listdir(self._reserved))
        except OSError:
            listed = set()
        for stem, key in self._owner.items():
            if stem not in listed:
                self._reserve(stem, key)
        self._foreign: set[str] = set()
        try:
            with os.scandir(folder) as files:
                for file in files:
                    stem, suffix = os.path.splitext(file.name)
                    if suffix.lower() not in OUTPUT_SUFFIXES or not file.is_file():
                        continue
                    if _fold(stem) not in self._owner:
                        self._foreign.add(_fold(stem))
        except OSError:  # no folder yet: nothing in it
            pass

    def claim(self, key: str, base: str, generations: int, held: list[str]) -> list[Path]:
        """The item's output paths without extension (one per generation): `held` (the
        names it reserved in an earlier run) when it has them, else the first free of
        `base`, `base-TAG`, `base-TAG-2`, ... (TAG from the item's key), reserved now."""
        if held:
            stems = held
        else:
            stems = next(
                s
                for s in self._candidates(key, base, generations)
                if self._free(s, key) and self._reserve_all(s, key)
            )
        for stem in stems:
            self._owner[_fold(stem)] = key
        return [self.folder / stem for stem in stems]

    def _candidates(self, key: str, base: str, generations: int) -> Iterator[list[str]]:
        tag = key.removeprefix("v2-")[:8]
        names = chain((base, f"{base}-{tag}"), (f"{base}-{tag}-{i}" for i in count(2)))
        for name in names:
            yield [name] if generations == 1 else [f"{name}-{i}" for i in range(1, generations + 1)]

    def _free(self, stems: list[str], key: str) -> bool:
        return all(
            self._owner.get(_fold(stem), key) == key and _fold(stem) not in self._foreign
            for stem in stems
        )

    def _reserve_all(self, stems: list[str], key: str) -> bool:
        """Reserve every one of `stems` in the folder for `key`, or none of them."""
        made: list[str] = []
        for stem in stems:
            taken = self._reserve(_fold(stem), key)
            if taken is None:
                for undo in made:
                    (self._reserved / undo).unlink(missing_ok=True)
                return False
            if taken:
                made.append(_fold(stem))
        return True

    def _reserve(self, folded: str, key: str) -> bool | None:
        """Reserve `folded` for `key` in the folder: True if this call reserved it, False if
        `key` held it already, None if another key holds it (or it cannot be reserved)."""
        path = self._reserved / folded
        try:
            self._reserved.mkdir(parents=True, exist_ok=True)
            _create_holding(path, key)
        except FileExistsError:
            try:
                holder = path.read_text(encoding="utf-8")
            except OSError:
                return None
            return False if holder == key else None
        except OSError:  # an odd stem or a read-only folder: the journal's check stands alone
            return False
        return True


def _create_holding(path: Path, key: str) -> None:
    """Create `path` holding `key`, atomically: a file written aside, then hard-linked to
    `path` (which fails if it exists, even over NFS), so that no crash leaves it empty;
    `O_EXCL` where hard links are not supported. `FileExistsError` if `path` exists."""
    aside = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}")
    aside.write_text(key, encoding="utf-8")
    try:
        os.link(aside, path)
    except FileExistsError:
        raise
    except OSError:  # no hard links here
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, key.encode())
        finally:
            os.close(fd)
    finally:
        aside.unlink(missing_ok=True)

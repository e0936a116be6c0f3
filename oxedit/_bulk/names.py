"""Output file names of a batch's folder: each item's final names (its `-1`, `-2`, ...
suffixes included) are reserved before it is sent, against every name any item of the journal
holds (this run's, earlier runs', other manifests' sharing the folder) and every image file
already there that oxedit did not write. No item ever overwrites another's output."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from itertools import chain, count
from pathlib import Path
from typing import Final

from .journal import JournalEntry

__all__ = ["OUTPUT_SUFFIXES", "OutputNames"]

# What a batch writes (see `_bulk_finish`): files of these types block a name.
OUTPUT_SUFFIXES: Final = frozenset({".png", ".jpg", ".gif", ".webp"})


def _fold(stem: str) -> str:
    # Case-insensitive file systems (macOS, Windows) hold `A.png` and `a.png` as one file.
    return stem.casefold()


class OutputNames:
    """The names taken in one output folder, and who holds each."""

    def __init__(self, folder: Path, entries: Iterable[JournalEntry]) -> None:
        self.folder = folder
        self._owner: dict[str, str] = {}
        for entry in entries:
            for stem in entry.stems:
                self._owner.setdefault(_fold(stem), entry.key)
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
            stems = next(s for s in self._candidates(key, base, generations) if self._free(s, key))
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

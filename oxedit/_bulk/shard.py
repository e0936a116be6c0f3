"""Splitting one batch across processes or machines: `oxedit batch --shard i/N`.

An item belongs to shard `1 + int(SHA-256(key)) mod N`, its key being its journal key (what it
is: its image's content or normalised URL, prompt, model, parameters, name, and which
repetition of those it is; see `journal.item_key`). Every shard reads the whole manifest, so
repetitions are counted the same way in each, and the split depends on neither line order nor
machine: N processes started with `1/N` ... `N/N` cover every item exactly once. A row that
cannot be parsed has no key: it goes to shard `1 + (its line index mod N)`.

Shards may share one output folder: each keeps its own journal there (`journal_name`), names
its outputs through the folder's reservations (`names.OutputNames`), and `oxedit report`
merges every journal of the folder (`journals_in`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Final

from .._exceptions import InvalidRequestError

__all__ = ["DEFAULT_JOURNAL", "Shard", "journals_in"]

# The journal `oxedit batch` keeps in its output folder (one per shard when sharded).
DEFAULT_JOURNAL: Final = ".oxedit-journal.sqlite"
_SHARD_JOURNAL = re.compile(r"^\.oxedit-journal\.shard-(\d+)-of-(\d+)\.sqlite$")


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard `index` (from 1) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"i/N"` as a shard; `InvalidRequestError` naming the value otherwise."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if match is None:
            raise InvalidRequestError(
                f"--shard {text!r} is not of the form i/N (e.g. 1/4: the first of 4 shards)"
            )
        index, count = int(match[1]), int(match[2])
        if count < 1 or not 1 <= index <= count:
            raise InvalidRequestError(
                f"--shard {text!r}: i must be between 1 and N, and N at least 1 (e.g. 1/4)"
            )
        return cls(index, count)

    def owns(self, key: str) -> bool:
        """Whether the item with this journal key belongs to this shard."""
        digest = hashlib.sha256(key.encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1

    def owns_unkeyed(self, position: int) -> bool:
        """Whether a row without a key (it cannot be parsed) at input `position` is ours."""
        return position % self.count == self.index - 1

    @property
    def journal_name(self) -> str:
        """This shard's journal file name in the shared output folder."""
        if self.count == 1:
            return DEFAULT_JOURNAL
        return f".oxedit-journal.shard-{self.index}-of-{self.count}.sqlite"

    def share(self, total: Decimal | float | None) -> Decimal | float | None:
        """This shard's part of a batch-wide budget (a cost cap, a rate): an equal share."""
        if total is None:
            return None
        return total / self.count


def journals_in(folder: Path) -> list[Path]:
    """Every batch journal of an output folder: the unsharded one and each shard's, in
    shard order."""
    found = []
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return []
    for name in names:
        match = _SHARD_JOURNAL.match(name)
        if match:
            found.append(((int(match[2]), int(match[1])), folder / name))
    found.sort()
    plain = folder / DEFAULT_JOURNAL
    return ([plain] if plain.is_file() else []) + [path for _, path in found]

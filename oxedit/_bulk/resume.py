"""Resuming a batch after a crash: items its journal left `sending` are looked up on the
server before anything new is sent, so no new row can be mistaken for theirs. And journals
written before items were keyed by identity are re-keyed, so that they are resumed, not
billed again."""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Collection
from typing import TYPE_CHECKING, Any

import msgspec

from .._engine.job import Job
from .._exceptions import OxeditError
from .journal import Journal, is_legacy, item_key
from .requests import EditRequest, canonical, identity, is_local

if TYPE_CHECKING:
    from .._engine.tracker import Tracker

__all__ = ["migrate_legacy", "recover_unrecorded"]

log = logging.getLogger("oxedit")


async def recover_unrecorded(
    tracker: Tracker,
    journal: Journal,
    payload: Callable[[EditRequest], Awaitable[dict[str, Any]]],
    claimed: Collection[str] = (),
) -> dict[str, Job]:
    """Items a crashed run recorded as 'sending': adopt what their POST created, or mark
    them unsent. Returns the adopted generations by id. `claimed`: generations other
    journals own (never adopted), besides this journal's."""
    adopted_by_id: dict[str, Job] = {}
    stranded = [e for e in journal.entries() if e.state == "sending"]
    if not stranded:
        return adopted_by_id
    requests: list[tuple[dict[str, Any], float]] = []
    keys: list[tuple[str, int]] = []
    for entry in sorted(stranded, key=lambda e: e.sent_at or 0):
        try:
            request = msgspec.json.decode(entry.request, type=EditRequest)
            body = await payload(request)
        except (msgspec.DecodeError, OxeditError) as exc:
            journal.rejected(entry.key, entry.request, f"cannot be resumed: {exc}")
            continue
        # A POST for n generations creates n rows, each matching the request.
        n = body.get("num_generations", 1)
        requests.extend([(body, entry.sent_at or 0)] * n)
        keys.append((entry.key, n))
    adopted = await tracker.adopt_unrecorded(requests, journal.claimed_ids() | set(claimed))
    start = 0
    for key, n in keys:
        found = [p for p in adopted[start : start + n] if p is not None]
        start += n
        if not found:
            journal.forget(key)  # surely never created: it will be sent as new
        else:
            journal.enqueued(key, *(p.id for p in found))
            adopted_by_id.update((p.id, p) for p in found)
    log.info(
        "resumed %d item(s) caught mid-send: %d adopted, %d to send",
        len(keys),
        sum(g is not None for g in adopted),
        adopted.count(None),
    )
    return adopted_by_id


def migrate_legacy(journal: Journal) -> int:
    """Re-key the rows an older oxedit keyed by the image path as written, whose image can
    be read from here (a relative path is taken from the working folder, as that oxedit did;
    the content decides, so a path that now names another file only matches that file's
    item). Rows whose image cannot be read keep their key: `BulkRun` still matches them by
    the request as written. Returns how many were re-keyed."""
    legacy = [e for e in journal.entries() if is_legacy(e.key)]
    moved = 0
    for entry in sorted(legacy, key=lambda e: (e.sent_at or 0.0, e.key)):
        try:
            request = msgspec.json.decode(entry.request, type=EditRequest)
        except msgspec.DecodeError:
            continue
        if is_local(request.image) and not os.path.isfile(request.image):
            continue
        ident, repetition = identity(request), 1
        while journal.get(item_key(ident, repetition)) is not None:
            repetition += 1
        journal.rekey(entry.key, item_key(ident, repetition), canonical(request).encoded().decode())
        moved += 1
    if moved:
        log.info("journal %s: %d row(s) of an older oxedit re-keyed", journal.path, moved)
    return moved

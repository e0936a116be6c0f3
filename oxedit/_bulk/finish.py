"""The end of one bulk item: await its generation, read what it cost, download and save
the result, record the outcome in the journal."""

from __future__ import annotations

import asyncio
import errno
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from .._atomic import save_atomic
from .._engine.job import Job
from .._exceptions import GenerationCancelled, GenerationExpired, GenerationFailed, OxeditError
from .._resources.inputs import sniff_mime
from .requests import BulkResult, EditRequest, bulk_status

if TYPE_CHECKING:
    from .._models import ResultReader
    from .cost import Spending
    from .journal import Journal


class RunContext(NamedTuple):
    """What finishing an item needs of its `BulkRun`."""

    journal: Journal | None
    reader: ResultReader
    spending: Spending
    check_disk_full: Callable[[BaseException], None]


__all__ = ["describe", "finish", "unknown_outcome"]

_EXTENSIONS: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}


async def _outcome(job: Job) -> tuple[str, Any]:
    """How one generation ended: ("succeeded", generation), (status, error text), or
    ("unknown", the exception) when this client lost track of it."""
    try:
        return "succeeded", await job
    except GenerationFailed as exc:
        return "failed", exc.error
    except GenerationCancelled:
        return "cancelled", "the generation was cancelled"
    except GenerationExpired as exc:  # the API forgot it: nothing left to follow
        return "error", str(exc)
    except Exception as exc:
        return "unknown", exc


async def finish(
    run: RunContext,
    index: int,
    request: EditRequest,
    key: str,
    jobs: list[Job],
    stems: list[Path] | None,
    charged: Decimal | None,
) -> BulkResult:
    """Await the item's generations (one per `num_generations`), save each result to its
    reserved name in `stems` (one per generation, without extension), record the outcome;
    the item's result."""
    journal = run.journal
    ids = tuple(job.id for job in jobs)
    outcomes = await asyncio.gather(*(_outcome(job) for job in jobs))
    for job, (status, value) in zip(jobs, outcomes, strict=True):
        if status == "unknown":
            # Lost track of it (stream refused, client closed, an odd event...): its outcome
            # is unknown, not failed. The row stays 'enqueued': a re-run follows it, never
            # re-sends it.
            error = unknown_outcome(journal is not None, value, job.id)
            return BulkResult(
                index, request, "unknown", ids[0], error=error, estimated_cost=charged,
                generation_ids=ids,
            )  # fmt: skip
    billed = [job.id for job, (status, _) in zip(jobs, outcomes, strict=True) if status != "error"]
    cost = await _cost(run, key, billed, charged) if billed else None
    several = len(jobs) > 1
    state, problems, outputs, unsaved = "succeeded", [], [], None
    for number, (status, value) in enumerate(outcomes, 1):
        if status != "succeeded":
            state = status if state == "succeeded" else state
            problems.append(f"generation {number} of {len(jobs)}: {value}" if several else value)
        elif stems is not None:
            stem = stems[number - 1]
            try:
                data = await run.reader.read(value)
                output = stem.with_name(stem.name + _EXTENSIONS.get(sniff_mime(data) or "", ".png"))
                await save_atomic(output, data)
                outputs.append(output)
            except Exception as exc:  # an odd body, a full disk...: this item's error
                run.check_disk_full(exc)
                unsaved = unsaved or ("save" if isinstance(exc, OSError) else "download", exc)
    saved = [str(p) for p in outputs] if several else None
    first = str(outputs[0]) if outputs else None
    if state != "succeeded":
        error = "; ".join(problems)
        if journal is not None:
            journal.finished(key, state, error=error, output=first, outputs=saved)
        return BulkResult(
            index, request, bulk_status(state), ids[0], error=error,
            output=outputs[0] if outputs else None, outputs=tuple(outputs), generation_ids=ids,
            estimated_cost=charged, cost=cost,
        )  # fmt: skip
    if unsaved is not None:
        # Recorded as succeeded without (all) its outputs: a re-run downloads them again
        # (it never re-sends a succeeded generation).
        what, problem = unsaved
        if journal is not None:
            journal.finished(key, "succeeded", error=f"{what} failed: {problem}", outputs=saved)
        return BulkResult(
            index, request, "error", ids[0],
            error=f"generation succeeded but its {what} failed: {describe(problem)}; re-run to "
            "retry the download",
            outputs=tuple(outputs), generation_ids=ids, estimated_cost=charged, cost=cost,
        )  # fmt: skip
    if journal is not None:
        journal.finished(key, "succeeded", output=first, outputs=saved)
    return BulkResult(
        index, request, "succeeded", ids[0], output=outputs[0] if outputs else None,
        outputs=tuple(outputs), generation_ids=ids, estimated_cost=charged, cost=cost,
    )  # fmt: skip


async def _cost(
    run: RunContext, key: str, ids: list[str], charged: Decimal | None
) -> Decimal | None:
    """What the ended generations cost, from the history (None: not known); recorded, and
    it replaces the item's charge against the cap."""
    cost = await run.spending.actual(ids)
    if cost is not None:
        if run.journal is not None:
            run.journal.costed(key, cost)
        run.spending.settle(charged, cost)
    return cost


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` says the disk (or the user's quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return isinstance(exc, sqlite3.Error) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    )


def describe(exc: BaseException) -> str:
    """An exception as one line; the type is named when it is not one of ours."""
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, OxeditError) else f"{type(exc).__name__}: {text}"


def unknown_outcome(journaled: bool, exc: Exception, generation_id: str | None) -> str:
    """The error text of an item whose outcome is unknown, with what to do next."""
    if journaled:
        hint = "its outcome is unknown: re-run the same batch to follow it (not resent)"
    elif generation_id is not None:
        hint = f"its outcome is unknown: look it up with client.get({generation_id!r})"
    else:
        hint = "it may have been created: look at client.list() before sending it again"
    return f"{describe(exc)}; {hint}"

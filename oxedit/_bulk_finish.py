"""The end of one bulk item: await its generation, read what it cost, download and save
the result, record the outcome in the journal."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ._atomic import save_atomic
from ._exceptions import GenerationCancelled, GenerationExpired, GenerationFailed, OxeditError
from ._inputs import sniff_mime
from ._job import Job
from ._requests import BulkResult, EditRequest

if TYPE_CHECKING:
    from ._bulk import BulkRun

__all__ = ["describe", "finish", "unknown_outcome"]

_EXTENSIONS: Final = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
}


async def finish(
    run: BulkRun,
    index: int,
    request: EditRequest,
    key: str,
    job: Job,
    stem: Path | None,
    charged: Decimal | None,
) -> BulkResult:
    journal = run._journal
    try:
        generation = await job
    except GenerationFailed as exc:
        status, error = "failed", exc.error
    except GenerationCancelled:
        status, error = "cancelled", "the generation was cancelled"
    except GenerationExpired as exc:  # the API forgot it: nothing left to follow
        status, error = "error", str(exc)
    except Exception as exc:
        # Lost track of it (stream refused, client closed, an odd event...): its outcome
        # is unknown, not failed. The row stays 'enqueued': a re-run follows it, never
        # re-sends it.
        error = unknown_outcome(run._journal is not None, exc, job.id)
        return BulkResult(index, request, "unknown", job.id, error=error, estimated_cost=charged)
    else:
        cost = await _cost(run, key, job, charged)
        output = None
        if stem is not None:
            try:
                data = await run._client.read(generation)
                ext = _EXTENSIONS.get(sniff_mime(data) or "", ".png")
                output = stem.with_name(stem.name + ext)
                await save_atomic(output, data)
            except Exception as exc:  # an odd body, a full disk...: this item's error
                run._check_disk_full(exc)
                # Recorded as succeeded without an output: a re-run downloads it again
                # (it never re-sends a succeeded generation).
                what = "save" if isinstance(exc, OSError) else "download"
                if journal is not None:
                    journal.finished(key, "succeeded", error=f"{what} failed: {exc}")
                return BulkResult(
                    index,
                    request,
                    "error",
                    job.id,
                    error=f"generation succeeded but its {what} failed: "
                    f"{describe(exc)}; re-run to retry the download",
                    estimated_cost=charged,
                    cost=cost,
                )
        if journal is not None:
            journal.finished(key, "succeeded", output=str(output) if output else None)
        return BulkResult(
            index,
            request,
            "succeeded",
            job.id,
            output=output,
            estimated_cost=charged,
            cost=cost,
        )
    cost = None if status == "error" else await _cost(run, key, job, charged)
    if journal is not None:
        journal.finished(key, status, error=error)
    return BulkResult(
        index, request, status, job.id, error=error, estimated_cost=charged, cost=cost
    )


async def _cost(run: BulkRun, key: str, job: Job, charged: Decimal | None) -> Decimal | None:
    """What the ended generation cost, from the history (None: not known); recorded, and
    it replaces the item's charge against the cap."""
    cost = await run._spending.actual([job.id])
    if cost is not None:
        if run._journal is not None:
            run._journal.costed(key, cost)
        run._spending.settle(charged, cost)
    return cost


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

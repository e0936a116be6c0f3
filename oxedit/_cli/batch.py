"""`oxedit batch`: checks that concern the whole batch (made before anything is sent), the
run with its live progress, the summary and the JSON report.

Batch-wide mistakes (an unusable --out, no prompt at all, an unknown --model, a damaged or
busy journal, a bad key) raise `InvalidRequestError` / `ConfigurationError` before the first
request, so the command exits 2 having spent nothing. Per-item trouble is that item's result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from .._atomic import write_atomic
from .._bulk.cost import to_amount
from .._bulk.requests import BulkResult, EditRequest
from .._bulk.shard import DEFAULT_JOURNAL, Shard
from .._client import Client
from .._exceptions import ConfigurationError, InvalidRequestError, OxeditError
from .estimate_view import print_estimate
from .progress import BatchProgress, summary_table
from .report.build import journal_items, write_html_report, write_merged_report
from .sources import load_source
from .terminal import line

__all__ = ["run_batch"]

# The summary's counts: this run's outcomes, and "resumed" for items skipped as done earlier.
_COUNTED = ("succeeded", "resumed", "failed", "cancelled", "unknown", "error")
# What `_cli.main` says once the command is interrupted; the summary only marks it.
_INTERRUPTED = "interrupted"
_IN_FLIGHT = "in flight when the batch was interrupted; re-run the same command to follow it"


async def run_batch(
    args: argparse.Namespace,
    client: Callable[[], AbstractAsyncContextManager[Client]],
    err: Console,
) -> int:
    """Run the batch `args` describes with a client from `client()`; the exit code."""
    out_dir = Path(args.out)
    shard = Shard.parse(args.shard) if args.shard else None
    max_cost = to_amount(args.max_cost, "--max-cost")
    if shard is not None and max_cost is not None:
        max_cost = max_cost / shard.count  # an equal share: see --help
    unknown_cost = to_amount(args.unknown_cost, "--unknown-cost")
    if not args.dry_run:
        _check_out_dir(out_dir)
    defaults = {"prompt": args.prompt, "model": args.model, "aspect_ratio": args.aspect_ratio}
    where: list[str] = []  # each item's place in the source, to name it in errors
    items: list[Any] = load_source(args.source, defaults=defaults, where=where)
    if not items:
        raise InvalidRequestError(f"{args.source!r} holds no images or rows to edit")
    if args.dry_run:
        async with client() as api:
            if args.model:
                await _check_model(api, args.model)
            estimate = await api.estimate(items, unknown_cost=unknown_cost)
        return print_estimate(err, estimate)
    name = shard.journal_name if shard is not None else DEFAULT_JOURNAL
    journal = Path(args.journal) if args.journal else out_dir / name
    default_report = "report.json"
    if shard is not None and shard.count > 1:  # report.json is the merge of every shard's
        default_report = f"report.shard-{shard.index}-of-{shard.count}.json"
    report_path = Path(args.report) if args.report else out_dir / default_report
    results: list[BulkResult] = []
    async with client() as api:
        if args.model:
            await _check_model(api, args.model)
        items = await _check_row_models(api, items, where)
        run = api.map(
            items,
            concurrency=args.concurrency,
            journal=journal,
            output_dir=out_dir,
            retry_failed=args.retry_failed,
            max_cost=max_cost,
            unknown_cost=unknown_cost,
            shard=shard,
        )
        progress = BatchProgress(
            err,
            total=await run.share(items),
            pace=lambda: api.stats.enqueue_rate,
            uploads=lambda: api.upload_stats,
        )
        try:
            async with run:
                # Whole-batch refusals (the cap, a busy journal) come before the bar shows.
                await run.ready()
                with progress:
                    async for result in run:
                        results.append(result)
                        progress.add(result, run.in_flight)
                        if not result.ok and not result.resumed:
                            progress.print(_problem(result, where))
        except asyncio.CancelledError:
            # Interrupted: what finished is in the journal; what was in flight has an
            # outcome this run does not know. Say so in a (partial) report.
            for index, request in run.unreported():
                if not isinstance(request, EditRequest):  # a bad row: never sent
                    request = EditRequest(image="", prompt="")
                unknown = BulkResult(index, request, "unknown", error=_IN_FLIGHT)
                results.append(unknown)
                progress.count(unknown)
            _finish(err, report_path, results, run.keys, journal, progress, out_dir, _INTERRUPTED)
            _page(err, out_dir, journal, report_path)
            raise
    stopped = run.stopped
    reported = _finish(
        err, report_path, results, run.keys, journal, progress, out_dir, stopped, run.stopped_at
    )
    if shard is not None and shard.count > 1 and not args.journal and not args.report:
        _merged(err, out_dir)
    else:
        _page(err, out_dir, journal, report_path)
    ok = reported and stopped is None and all(r.ok for r in results)
    return 0 if ok else 1


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InvalidRequestError(f"--out {str(out)!r} is not a folder; name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequestError(
            f"--out {str(out)!r} cannot be created ({exc.strerror or exc}); name a folder "
            "you can write to"
        ) from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise InvalidRequestError(
            f"--out {str(out)!r} is not writable; name a folder you can write to"
        )


async def _check_model(client: Client, model: str) -> None:
    if not await client.has_model(model):  # one fetch, reused by every row's check
        raise InvalidRequestError(
            f"--model {model!r} is not a model the API knows; `oxedit models` lists them"
        )


async def _check_row_models(client: Client, items: list[Any], where: list[str]) -> list[Any]:
    """Rows naming a model the API does not know become errors before anything is sent."""
    models = {i.model for i in items if isinstance(i, EditRequest)}
    unknown = set()
    for model in models:
        if not await client.has_model(model):
            unknown.add(model)
    return [
        InvalidRequestError(
            f"{where[i]}: unknown model {item.model!r}; `oxedit models` lists the known ones"
        )
        if isinstance(item, EditRequest) and item.model in unknown
        else item
        for i, item in enumerate(items)
    ]


def _problem(result: BulkResult, where: list[str]) -> str:
    """One line naming the item (its manifest line, or its file) and what went wrong."""
    error = result.error or ""
    place = where[result.index] if result.index < len(where) else result.request.image
    if error.startswith(place.partition(" (")[0]) or place in error:  # named already
        return f"{result.status}: {error}"
    return f"{result.status}: {place}: {error}"


def _finish(
    err: Console,
    path: Path,
    results: list[BulkResult],
    keys: dict[int, str],
    journal: Path,
    progress: BatchProgress,
    out_dir: Path,
    stopped: str | None,
    stopped_at: int | None = None,
) -> bool:
    """Write the report and print the summary; False if the report could not be written.

    Both describe every item of the journal: this run's, and those of earlier runs or other
    manifests sharing it (`earlier`), so that the costs cover the whole batch and the JSON
    report lists what the page shows."""
    try:
        earlier = journal_items(journal, set(keys.values()))
    except OxeditError as exc:  # a damaged journal: the report still has this run's items
        line(err, f"error: the journal could not be read for the report: {exc}", style="red")
        earlier = []
    costs = totals(results, earlier)
    try:
        write_report(path, results, keys, earlier, progress, stopped, stopped_at)
    except OSError as exc:
        line(err, f"error: the report {path} could not be written: {exc}", style="red")
        written = False
    else:
        written = True
    interrupted = stopped == _INTERRUPTED
    err.print(
        summary_table(
            progress,
            out_dir,
            path,
            interrupted=stopped,
            costs=costs,
            earlier=len(earlier),
        )
    )
    if stopped is not None and not interrupted:
        line(err, f"stopped early: {stopped}", style="yellow")
    return written


def _page(err: Console, out_dir: Path, journal: Path, report: Path) -> None:
    """The HTML report beside the JSON one, from the journal (none without a journal)."""
    if not journal.is_file():
        return
    try:
        page = write_html_report(out_dir, journal=journal, report_json=report)
    except (OxeditError, OSError) as exc:
        line(err, f"error: the report page could not be written: {exc}", style="red")
    else:
        line(err, f"report page: {page}")


def _merged(err: Console, out_dir: Path) -> None:
    """The folder's report.json and page, merging every shard's journal, if no other shard
    is running: the last shard to finish writes them. (Each shard closes its journal before
    it looks at the others', so of two ending at once at least one sees the other closed.)"""
    try:
        report, page = write_merged_report(out_dir)
    except ConfigurationError:  # another shard holds its journal: it will merge
        where = out_dir / "report.json"
        line(err, f"other shards are still running: the last to finish writes {where}")
    except (OxeditError, OSError) as exc:
        line(err, f"error: the merged report could not be written: {exc}", style="red")
    else:
        line(err, f"merged report: {report}")
        line(err, f"report page: {page}")


def totals(
    results: list[BulkResult], earlier: Sequence[dict[str, Any]] = ()
) -> tuple[Decimal | None, Decimal | None]:
    """The estimated and the actual cost of the items (this run's results and the journal's
    `earlier` items), each None when no item has one."""
    estimates = [r.estimated_cost for r in results if r.estimated_cost is not None]
    costs = [r.cost for r in results if r.cost is not None]
    for item in earlier:
        estimates += [Decimal(item["estimated_cost"])] if item.get("estimated_cost") else []
        costs += [Decimal(item["cost"])] if item.get("cost") else []
    return (
        sum(estimates, Decimal(0)) if estimates else None,
        sum(costs, Decimal(0)) if costs else None,
    )


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def write_report(
    path: Path,
    results: list[BulkResult],
    keys: dict[int, str],
    earlier: list[dict[str, Any]],
    progress: BatchProgress,
    stopped: str | None,
    stopped_at: int | None = None,
) -> None:
    """The JSON report: what this run did, item by item (partial when `stopped`), then the
    journal's items of earlier runs (`earlier`: index null). The summary's counts and
    `total` are this run's; `earlier_items` counts the others; the costs cover every item.
    Amounts are decimal strings in USD, null when unknown."""
    rate = progress.rate
    estimated, cost = totals(results, earlier)
    report = {
        "summary": {
            **{key: progress.counts[key] for key in _COUNTED},
            "total": len(results),
            "earlier_items": len(earlier),
            "wall_seconds": round(progress.elapsed, 3),
            "items_per_second": None if rate is None else round(rate, 3),
            "interrupted": stopped == _INTERRUPTED,
            "stopped_early": stopped,
            "stopped_at": stopped_at,
            "estimated_cost": _text(estimated),
            "cost": _text(cost),
            "cost_unknown": sum(r.generation_id is not None and r.cost is None for r in results)
            + sum(bool(i["generation_ids"]) and i["cost"] is None for i in earlier),
        },
        "items": [
            {
                "index": r.index,
                "key": keys.get(r.index),
                "image": r.request.image,
                "prompt": r.request.prompt,
                "model": r.request.model,
                "params": r.request.params,
                "status": r.status,
                "generation_id": r.generation_id,
                "output": str(r.output) if r.output else None,
                "generation_ids": list(r.generation_ids),
                "outputs": [str(p) for p in r.outputs],
                "error": r.error,
                "resumed": r.resumed,
                "earlier": False,
                "estimated_cost": _text(r.estimated_cost),
                "cost": _text(r.cost),
            }
            for r in sorted(results, key=lambda r: r.index)
        ]
        + earlier,
    }
    write_atomic(path, (json.dumps(report, indent=1) + "\n").encode())

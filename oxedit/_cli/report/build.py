"""The HTML report of a batch (`report.html`): one card per item, input and output side by side.

Built from what a batch leaves in its output folder, so it can be rebuilt at any time (after a
resume, after a run that was killed): the journal (every item that was sent or refused, its
generation ids, outcome, output files, cost and timing), the images themselves, and the JSON
report of the last run when there is one (its summary, each item's position in the input, and
the rows that were never sent because they were malformed).

The journal is the truth about an item: the JSON report may be older (a run killed with
`kill -9` writes none). Thumbnails are made by `_report_thumbs`, the page by `_report_page`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import msgspec

from ..._atomic import write_atomic
from ..._bulk.journal import FINISHED, JournalEntry, read_entries
from ..._bulk.requests import EditRequest, default_name
from ..._bulk.shard import DEFAULT_JOURNAL, journals_in
from ..._exceptions import InvalidRequestError
from .page import STATUSES, render
from .thumbs import Source, Thumbnailer, data_uri_source

__all__ = [
    "JOURNAL_NAME",
    "html_path_for",
    "is_sharded",
    "journal_items",
    "write_html_report",
    "write_merged_report",
]

# The journal `oxedit batch` keeps in its output folder by default (see `_cli_batch`).
JOURNAL_NAME: Final = DEFAULT_JOURNAL
_REQUEST = msgspec.json.Decoder(EditRequest)


@dataclass(slots=True)
class _Item:
    """One card: what the page shows of an item."""

    index: int | None
    image: str
    prompt: str
    model: str
    params: dict[str, Any]
    status: str
    name: str | None = None
    generation_ids: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float | None = None
    cost: str | None = None
    estimated_cost: str | None = None
    resumed: bool = False
    sent_at: float | None = None
    key: str | None = None


def html_path_for(report_json: Path) -> Path:
    """Where the page of a JSON report goes: beside it, `report.json` -> `report.html`."""
    return report_json.with_suffix(".html")


def write_html_report(
    out_dir: Path,
    *,
    journal: Path | None = None,
    report_json: Path | None = None,
    html: Path | None = None,
) -> Path:
    """Build the page of the batch whose output folder is `out_dir`; returns its path.

    Args:
        out_dir: The batch's `--out` folder (thumbnails go to `out_dir/.oxedit-thumbs/`).
        journal: The batch's journal (default `out_dir/.oxedit-journal.sqlite`).
        report_json: The last run's JSON report (default `out_dir/report.json`); optional.
        html: Where to write the page (default: beside `report_json`).

    Raises:
        InvalidRequestError: there is no journal at `journal`.
        ConfigurationError: the journal is damaged, or a batch is using it right now.
        OSError: the page or a thumbnail could not be written.
    """
    journal = journal if journal is not None else out_dir / JOURNAL_NAME
    report_json = report_json if report_json is not None else out_dir / "report.json"
    html = html if html is not None else html_path_for(report_json)
    if not journal.is_file():
        raise InvalidRequestError(
            f"{str(out_dir)!r} holds no oxedit journal ({journal.name} not found); name the "
            "--out folder of an `oxedit batch` run (or its journal with --journal)"
        )
    entries, ended = _read_journals([journal])
    summary, reported = _read_json_report(report_json)
    items = _merge(entries, ended, reported)
    page = _page_data(items, summary, out_dir, html.parent)
    write_atomic(html, render(page).encode())
    return html


def is_sharded(out_dir: Path) -> bool:
    """Whether `out_dir` holds the journals of a sharded batch (`--shard i/N`)."""
    return any(path.name != JOURNAL_NAME for path in journals_in(out_dir))


def write_merged_report(out_dir: Path) -> tuple[Path, Path]:
    """One `report.json` and one `report.html` for every journal of `out_dir` (each shard's,
    and the unsharded one if any); returns their paths.

    The journals give every item; each shard's `report.shard-i-of-N.json` its items' input
    positions and the rows that never reached a journal (malformed). The summary counts
    every item; `wall_seconds` is the longest shard's, `items_per_second` the shards' sum.

    Raises:
        InvalidRequestError: `out_dir` holds no journal.
        ConfigurationError: a journal is damaged, or a shard is still running.
    """
    journals = journals_in(out_dir)
    if not journals:
        raise InvalidRequestError(
            f"{str(out_dir)!r} holds no oxedit journal; name the --out folder of an "
            "`oxedit batch` run"
        )
    entries, ended = _read_journals(journals)
    shards, reported = [], []
    for path in sorted(out_dir.glob(_SHARD_REPORTS)):
        summary, records = _read_json_report(path)
        if summary:
            shards.append({"report": path.name, **summary})
        reported += records
    items = _merge(entries, ended, reported)
    walls = [s["wall_seconds"] for s in shards if _number(s.get("wall_seconds"))]
    rates = [s["items_per_second"] for s in shards if _number(s.get("items_per_second"))]
    counts: dict[str, int] = {}
    for item in items:
        counts[item.status] = counts.get(item.status, 0) + 1
    summary = {
        **counts,
        "total": len(items),
        "journals": [path.name for path in journals],
        "shards": shards,
        "wall_seconds": max(walls) if walls else None,
        "items_per_second": round(sum(rates), 3) if rates else None,
        "estimated_cost": _total(item.estimated_cost for item in items),
        "cost": _total(item.cost for item in items),
        "cost_unknown": sum(1 for i in items if i.generation_ids and i.cost is None),
    }
    report = {"summary": summary, "items": [_record(item) for item in items]}
    report_json = out_dir / "report.json"
    write_atomic(report_json, (json.dumps(report, indent=1) + "\n").encode())
    html = html_path_for(report_json)
    page = _page_data(items, summary, out_dir, html.parent)
    write_atomic(html, render(page).encode())
    return report_json, html


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Each shard's own report (see `_cli.batch`).
_SHARD_REPORTS: Final = "report.shard-*-of-*.json"


def _read_journals(journals: list[Path]) -> tuple[list[JournalEntry], dict[str, float]]:
    """The entries of every journal, one per key (a key in two journals, as when a folder
    was run unsharded and then sharded, is the copy furthest along), and when each ended."""
    best: dict[str, tuple[tuple[bool, bool, float], JournalEntry]] = {}
    ended: dict[str, float] = {}
    for journal in journals:
        entries = read_entries(journal)  # refuses a journal a running batch holds
        times = _ended_at(journal)
        for entry in entries:
            at = times.get(entry.key, 0.0)
            rank = (entry.state in FINISHED, entry.generation_id is not None, at)
            if entry.key not in best or rank > best[entry.key][0]:
                best[entry.key] = (rank, entry)
                ended[entry.key] = at
    return [entry for _, entry in best.values()], ended


def _record(item: _Item) -> dict[str, Any]:
    """An item as the JSON report lists it."""
    return {
        "index": item.index,
        "key": item.key,
        "image": item.image,
        "prompt": item.prompt,
        "model": item.model,
        "params": item.params,
        "status": item.status,
        "generation_id": item.generation_ids[0] if item.generation_ids else None,
        "output": item.outputs[0] if item.outputs else None,
        "generation_ids": item.generation_ids,
        "outputs": item.outputs,
        "error": item.error,
        "resumed": item.resumed,
        "earlier": item.index is None,
        "estimated_cost": item.estimated_cost,
        "cost": item.cost,
    }


def _ended_at(journal: Path) -> dict[str, float]:
    """When each item's row last changed (its end, for a finished item); read-only, because
    the journal's own reader does not expose it. Empty if it cannot be read."""
    try:
        db = sqlite3.connect(f"{journal.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        return {key: at for key, at in db.execute("SELECT key, updated_at FROM items")}
    except sqlite3.Error:
        return {}
    finally:
        db.close()


def _read_json_report(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The summary and items of a JSON report; empty when there is none (or it is damaged:
    the journal still gives every item that was sent)."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        summary, items = report["summary"], report["items"]
        if isinstance(summary, dict) and isinstance(items, list):
            return summary, [item for item in items if isinstance(item, dict)]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {}, []


def _identity(image: Any, prompt: Any, model: Any, params: Any) -> str:
    """What matches a JSON report's item to its journal row (the report has no row key)."""
    return json.dumps([image, prompt, model, params], sort_keys=True, default=str)


def _merge(
    entries: list[JournalEntry], ended: dict[str, float], reported: list[dict[str, Any]]
) -> list[_Item]:
    """One item per journal row, in input order where the JSON report knows it, then the
    report's items that never reached the journal (malformed rows, refused names)."""
    by_key: dict[str, dict[str, Any]] = {}
    by_identity: defaultdict[str, deque[dict[str, Any]]] = defaultdict(deque)
    for record in sorted(reported, key=lambda r: _int(r.get("index"))):
        key = record.get("key")
        if isinstance(key, str):  # the journal row it describes
            by_key[key] = record
            continue
        ident = _identity(  # a report of an older oxedit: matched by its request
            record.get("image"), record.get("prompt"), record.get("model"), record.get("params")
        )
        by_identity[ident].append(record)
    items = []
    for entry in sorted(entries, key=lambda e: (e.sent_at or 0.0, e.key)):
        request = _request_of(entry)
        match = by_key.pop(entry.key, None)
        if match is None:
            ident = _identity(request.image, request.prompt, request.model, request.params)
            match = by_identity[ident].popleft() if by_identity[ident] else None
        if match is not None and match.get("index") is None:
            match = None  # the report's copy of this very row (an item of an earlier run)
        items.append(_from_entry(entry, request, ended.get(entry.key), match))
    for queue in (*by_identity.values(), by_key.values()):
        items.extend(_from_record(record) for record in queue if record.get("index") is not None)
    items.sort(key=lambda item: (item.index is None, _int(item.index), item.sent_at or 0.0))
    return items


def _request_of(entry: JournalEntry) -> EditRequest:
    try:
        return _REQUEST.decode(entry.request)
    except msgspec.DecodeError:  # ValidationError is one too
        return EditRequest(image="", prompt="(unreadable journal row)")


def journal_items(journal: Path, exclude: set[str]) -> list[dict[str, Any]]:
    """The items of `journal` whose keys are not in `exclude` (those of earlier runs, other
    manifests sharing the folder), as the JSON report lists items, in the order they were
    sent; `index` null and `earlier` true. Empty when there is no journal."""
    if not journal.is_file():
        return []
    entries = read_entries(journal)
    ended = _ended_at(journal)
    records = []
    for entry in sorted(entries, key=lambda e: (e.sent_at or 0.0, e.key)):
        if entry.key in exclude:
            continue
        item = _from_entry(entry, _request_of(entry), ended.get(entry.key), None)
        # `index` None: `_record` marks it an earlier run's (`earlier`, not `resumed`).
        records.append({**_record(item), "key": entry.key})
    return records


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 1 << 62


def _status(entry: JournalEntry) -> str:
    if entry.state == "succeeded":
        # Succeeded but its download or save failed: the item's error (a re-run fetches it).
        return "error" if entry.error else "succeeded"
    return entry.state if entry.state in STATUSES else "unknown"  # sending / enqueued


def _from_entry(
    entry: JournalEntry, request: EditRequest, ended: float | None, record: dict[str, Any] | None
) -> _Item:
    status = _status(entry)
    error = entry.error
    if record is not None and record.get("status") == status and record.get("error"):
        error = str(record["error"])  # this run's wording, with what to do next
    if status == "unknown" and not error:
        error = "sent; its outcome is not known yet: re-run the same batch to follow it"
    finished = entry.state not in ("sending", "enqueued")
    seconds = (
        ended - entry.sent_at
        if finished and ended is not None and entry.sent_at is not None
        else None
    )
    return _Item(
        index=record.get("index") if record is not None else None,
        image=request.image,
        prompt=request.prompt,
        model=request.model,
        params=request.params,
        status=status,
        name=request.name,
        generation_ids=entry.generation_ids,
        outputs=entry.output_paths,
        error=error,
        seconds=seconds if seconds is None or seconds >= 0 else None,
        cost=entry.cost,
        # What it was expected to cost, once sent: a refused item cost nothing.
        estimated_cost=entry.estimate if entry.sent else None,
        resumed=bool(record.get("resumed")) if record is not None else False,
        sent_at=entry.sent_at,
        key=entry.key,
    )


def _from_record(record: dict[str, Any]) -> _Item:
    params = record.get("params")
    return _Item(
        index=record.get("index") if isinstance(record.get("index"), int) else None,
        image=str(record.get("image") or ""),
        prompt=str(record.get("prompt") or ""),
        model=str(record.get("model") or ""),
        params=params if isinstance(params, dict) else {},
        status=str(record.get("status") or "error"),
        generation_ids=[str(g) for g in record.get("generation_ids") or []],
        outputs=[str(p) for p in record.get("outputs") or []],
        error=str(record["error"]) if record.get("error") else None,
        cost=record.get("cost"),
        estimated_cost=record.get("estimated_cost"),
        resumed=bool(record.get("resumed")),
        key=record.get("key") if isinstance(record.get("key"), str) else None,
    )


# -- the page's data ----------------------------------------------------------------------------


def _href(target: Path, base: Path) -> str:
    """A URL for `target` relative to the page's folder (percent-encoded: a file name may hold
    `#`, `?` or `%`), or a file: URI when there is no relative path (another drive)."""
    try:
        relative = os.path.relpath(target, base)
    except ValueError:
        return target.resolve().as_uri()
    return quote(Path(relative).as_posix(), safe="/")


def _local(path: str) -> Path | None:
    file = Path(path)
    try:
        return file if file.is_file() else None
    except OSError:  # a name too long, a NUL...
        return None


def _page_data(
    items: list[_Item], summary: dict[str, Any], out_dir: Path, page_dir: Path
) -> dict[str, Any]:
    """What `_report_page.render` shows: the run's summary and one card per item."""
    thumbs = Thumbnailer(out_dir)
    sources: list[Source] = []
    for item in items:
        if not item.image.startswith(("http://", "https://")):
            source = _input_source(item.image)
            if source is not None:
                sources.append(source)
        sources.extend(path for p in item.outputs if (path := _local(p)) is not None)
    made = thumbs.make_all(sources)
    thumbs.prune()

    def picture(source: Source | None, full: Path | None, missing: str) -> dict[str, Any]:
        thumb = made.get(source) if source is not None else None
        if thumb is None:
            return {"x": missing if source is None else "not an image Pillow can read"}
        return {"t": _href(thumb, page_dir), "h": _href(full, page_dir) if full else None}

    cards = []
    for item in items:
        if item.image.startswith(("http://", "https://")):
            before: dict[str, Any] = {"t": item.image, "h": item.image, "w": 1}
        else:
            source = _input_source(item.image)
            full = source if isinstance(source, Path) else None
            before = picture(source, full, "input not found" if item.image else "no input")
        after = [picture(p, p, "output file missing") for p in map(_local, item.outputs) if p]
        after += [{"x": "output file missing"}] * (len(item.outputs) - len(after))
        if not after:
            after = [{"x": "no output" if item.status != "succeeded" else "not saved"}]
        name = item.name or (Path(item.outputs[0]).name if item.outputs else None)
        cards.append(
            {
                "i": item.index,
                "n": name or (default_name(item.image) if item.image else f"item {item.index}"),
                "s": item.status,
                "p": item.prompt,
                "m": item.model,
                "a": ", ".join(f"{k}={v}" for k, v in sorted(item.params.items())),
                "g": item.generation_ids,
                "e": item.error,
                "t": None if item.seconds is None else round(item.seconds, 2),
                "c": item.cost,
                "r": item.resumed,
                "in": before,
                "out": after,
                "src": item.image if not item.image.startswith("data:") else "(data URI)",
            }
        )
    return {"summary": _summary(items, summary, out_dir), "items": cards}


def _input_source(image: str) -> Source | None:
    if image.startswith("data:"):
        return data_uri_source(image)
    return _local(image) if image else None


def _summary(items: list[_Item], run: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    counts = {status: 0 for status in STATUSES}
    for item in items:
        counts[item.status] = counts.get(item.status, 0) + 1
    return {
        "out": str(out_dir),
        "counts": counts,
        "total": len(items),
        "wall_seconds": run.get("wall_seconds"),
        "items_per_second": run.get("items_per_second"),
        "stopped": run.get("stopped_early"),
        "estimated_cost": _total(item.estimated_cost for item in items),
        "cost": _total(item.cost for item in items),
        "cost_unknown": sum(1 for i in items if i.generation_ids and i.cost is None),
        "built": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def _total(amounts: Any) -> str | None:
    """The sum of decimal strings (None: no amount is known)."""
    known = []
    for amount in amounts:
        try:
            known.append(Decimal(amount))
        except (InvalidOperation, TypeError, ValueError):
            continue
    return str(sum(known, Decimal(0))) if known else None

"""The `oxedit` command line.

With no `OXEN_API_KEY` / `OXEN_BASE_URL` (and no key from the `oxen` CLI), commands run
against the local Oxen server, started in-process, and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from . import _constants as C
from ._cli_serve import add_serve_arguments
from ._cli_serve import serve as serve_command
from ._client import Client
from ._config import _key_from_oxen_cli, resolve_base_url
from ._exceptions import InvalidRequestError, NotFoundError, OxeditError
from ._inputs import ASPECT_RATIOS
from ._progress import BatchProgress, summary_table
from ._requests import BulkResult, EditRequest
from ._sources import load_source
from ._version import __version__

__all__ = ["main"]

err = Console(stderr=True, highlight=False)
out = Console(highlight=False)


def _configured() -> bool:
    if os.environ.get("OXEN_API_KEY") or os.environ.get("OXEN_BASE_URL"):
        return True
    try:
        return _key_from_oxen_cli(resolve_base_url(None)) is not None
    except OxeditError:
        return True  # a broken config is reported by the Client itself


@asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[Client]:
    if _configured():
        async with Client() as client:
            yield client
        return
    from ._cli_serve import embedded_state_dir
    from .testing import Faults, LocalServer

    # Real jobs take seconds; the embedded server imitates that so progress means something.
    faults = Faults(latency=(args.local_latency[0], args.local_latency[1]))
    state = embedded_state_dir(args)  # a batch's server outlives a kill, like the real one
    async with LocalServer(workers=args.local_workers, faults=faults, state_dir=state) as server:
        err.print(
            f"[yellow]No OXEN_API_KEY or OXEN_BASE_URL set: using the local Oxen server at "
            f"{server.url} (real edits, no credits spent). Set OXEN_API_KEY to use "
            "hub.oxen.ai.[/]"
        )
        async with Client(api_key=server.api_key, base_url=server.url) as client:
            yield client


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {"aspect_ratio": args.aspect_ratio} if args.aspect_ratio else {}


# -- commands ----------------------------------------------------------------------------------


async def _edit(args: argparse.Namespace) -> int:
    output = Path(args.output or f"{Path(args.image).stem}-edited.png")
    async with _client(args) as client:
        with err.status("editing..."):
            job = await client.submit(
                prompt=args.prompt, image=args.image, model=args.model, **_params(args)
            )
            generation = await job
            await generation.save(output)
    out.print(f"saved {output} (generation {generation.id})")
    return 0


async def _batch(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    defaults = {"prompt": args.prompt, "model": args.model, "aspect_ratio": args.aspect_ratio}
    items = load_source(args.source, defaults=defaults)
    if not items:
        raise InvalidRequestError(f"{args.source!r} holds no images or rows to edit")
    journal = Path(args.journal) if args.journal else out_dir / ".oxedit-journal.sqlite"
    report_path = Path(args.report) if args.report else out_dir / "report.json"
    results: list[BulkResult] = []
    started = time.perf_counter()
    async with _client(args) as client:
        items = await _check_models(client, items)
        progress = BatchProgress(err, total=len(items))
        with progress:
            run = client.map(
                items,
                concurrency=args.concurrency,
                journal=journal,
                output_dir=out_dir,
                retry_failed=args.retry_failed,
            )
            async with run:
                async for result in run:
                    results.append(result)
                    progress.add(result, run.in_flight)
                    if not result.ok and not result.resumed:
                        progress.print(_problem(result))
    wall = time.perf_counter() - started
    _write_report(report_path, results, progress.counts, wall)
    err.print(summary_table(progress.counts, wall, out_dir, report_path))
    return 0 if all(r.ok for r in results) else 1


def _problem(result: BulkResult) -> str:
    """One line naming the item and what went wrong."""
    image, error = result.request.image, result.error or ""
    where = f"{image}: " if image and image not in error else ""
    return f"{result.status}: {where}{error}"


async def _check_models(client: Client, items: list[Any]) -> list[Any]:
    """Rows naming a model the API does not know become errors before anything is sent."""
    models = {i.model for i in items if isinstance(i, EditRequest)}
    unknown = set()
    for model in models:
        try:
            await client.model(model)
        except NotFoundError:
            unknown.add(model)
    return [
        InvalidRequestError(
            f"{item.image}: unknown model {item.model!r}; `oxedit models` lists the known ones"
        )
        if isinstance(item, EditRequest) and item.model in unknown
        else item
        for item in items
    ]


def _write_report(path: Path, results: list[BulkResult], counts: Any, wall: float) -> None:
    report = {
        "summary": {**dict(counts), "total": len(results), "wall_seconds": round(wall, 3)},
        "items": [
            {
                "index": r.index,
                "image": r.request.image,
                "prompt": r.request.prompt,
                "model": r.request.model,
                "params": r.request.params,
                "status": r.status,
                "generation_id": r.generation_id,
                "output": str(r.output) if r.output else None,
                "error": r.error,
                "resumed": r.resumed,
            }
            for r in sorted(results, key=lambda r: r.index)
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        generation = await client.get(args.id)
    table = Table(show_header=False)
    for field in generation.__struct_fields__:
        value = getattr(generation, field)
        if field.endswith("_at") and value is not None:
            value = f"{value:.0f} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(value))} UTC)"
        table.add_row(field, "" if value is None else str(value))
    out.print(table)
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        generation = await client.cancel(args.id)
    out.print(f"{generation.id}: {generation.status}")
    return 0


async def _models(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        if args.id:
            model = await client.model(args.id)
            schema = model.schema
            required = set(schema.get("required", []))
            table = Table(title=f"{model.id} parameters", title_justify="left")
            for column in ("parameter", "type", "required", "default", "allowed", "description"):
                table.add_column(column)
            for name, prop in schema.get("properties", {}).items():
                allowed = ", ".join(map(str, prop["enum"])) if "enum" in prop else _range(prop)
                table.add_row(
                    name,
                    str(prop.get("type", "")),
                    "yes" if name in required else "",
                    "" if prop.get("default") is None else str(prop["default"]),
                    allowed,
                    str(prop.get("description", "")),
                )
            out.print(table)
            return 0
        models = await client.models()
    table = Table(title="models", title_justify="left")
    for column in ("id", "name", "input", "output"):
        table.add_column(column)
    for m in models:
        caps = m.capabilities
        table.add_row(
            m.id,
            m.display_name or "",
            ", ".join(caps.get("input", [])),
            ", ".join(caps.get("output", [])),
        )
    out.print(table)
    return 0


def _range(prop: dict[str, Any]) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is None and high is None:
        return str(prop.get("format", ""))
    return f"{'' if low is None else low}..{'' if high is None else high}"


# -- parsing -----------------------------------------------------------------------------------


def _aspect_ratio(value: str) -> str:
    if value not in ASPECT_RATIOS:
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {', '.join(ASPECT_RATIOS)}")
    return value


def _latency(value: str) -> tuple[float, float]:
    try:
        low, _, high = value.partition(",")
        return float(low), float(high or low)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not LOW,HIGH seconds") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oxedit",
        description="Edit images with Oxen.ai models. Without OXEN_API_KEY/OXEN_BASE_URL, "
        "runs against a local Oxen server.",
    )
    parser.add_argument("--version", action="version", version=f"oxedit {__version__}")
    # Settings of the embedded local server (used only when no API is configured).
    parser.add_argument("--local-workers", type=int, default=8, help=argparse.SUPPRESS)
    parser.add_argument(
        "--local-latency", type=_latency, default=(0.2, 1.0), help=argparse.SUPPRESS
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    edit = sub.add_parser("edit", help="edit one image and save the result")
    edit.add_argument("image", help="image file or URL")
    edit.add_argument("prompt", help="the edit instruction")
    edit.add_argument("-o", "--output", help="where to save (default: IMAGE-edited.png)")
    edit.add_argument("--model", default=C.DEFAULT_MODEL)
    edit.add_argument("--aspect-ratio", type=_aspect_ratio)
    edit.set_defaults(run=_edit)

    batch = sub.add_parser("batch", help="edit a folder of images or a JSONL/CSV manifest")
    batch.add_argument("source", help="a folder of images, or a .jsonl / .csv manifest")
    batch.add_argument("--prompt", help="prompt for rows (or folder images) that carry none")
    batch.add_argument("--out", required=True, help="output folder")
    batch.add_argument(
        "--concurrency",
        type=int,
        default=C.DEFAULT_BULK_CONCURRENCY,
        help=f"generations in flight (default {C.DEFAULT_BULK_CONCURRENCY})",
    )
    batch.add_argument("--model", help=f"model for rows that name none ({C.DEFAULT_MODEL})")
    batch.add_argument(
        "--aspect-ratio", type=_aspect_ratio, help="aspect ratio for rows that give none"
    )
    batch.add_argument("--journal", help="journal file (default: OUT/.oxedit-journal.sqlite)")
    batch.add_argument("--report", help="report file (default: OUT/report.json)")
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-send items that failed in an earlier run (may bill again)",
    )
    batch.set_defaults(run=_batch)

    status = sub.add_parser("status", help="show a generation")
    status.add_argument("id")
    status.set_defaults(run=_status)

    cancel = sub.add_parser("cancel", help="cancel a queued or running generation")
    cancel.add_argument("id")
    cancel.set_defaults(run=_cancel)

    models = sub.add_parser("models", help="list models, or show one model's parameters")
    models.add_argument("id", nargs="?")
    models.set_defaults(run=_models)

    serve = sub.add_parser("serve", help="run the local Oxen server until interrupted")
    add_serve_arguments(serve)
    serve.set_defaults(run=serve_command, sync=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        err.print(f"error: --concurrency {args.concurrency} must be at least 1")
        return 2
    try:
        if getattr(args, "sync", False):
            return int(args.run(args))
        return int(asyncio.run(args.run(args)))
    except OxeditError as exc:
        err.print(f"[red]error:[/] {exc}", markup=True)
        return 2
    except KeyboardInterrupt:
        err.print("interrupted; re-run the same command to resume where it stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())

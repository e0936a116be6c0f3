"""The `oxedit` command line.

With no `OXEN_API_KEY` / `OXEN_BASE_URL` (and no key from the `oxen` CLI), commands run
against the local Oxen server, started in-process, and say so.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
from PIL import Image
from rich.table import Table
from rich.text import Text

from .. import _constants as C
from .._atomic import save_atomic
from .._bulk.shard import Shard
from .._client import Client
from .._config import Limits, key_from_oxen_cli, resolve_base_url
from .._exceptions import (
    APIStatusError,
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    OxeditError,
    PermissionDeniedError,
)
from .._models import TERMINAL_STATUSES
from .._version import __version__
from .batch import run_batch
from .doctor import add_doctor_arguments, run_doctor
from .findings import hub_profile
from .serve import add_serve_arguments
from .serve import serve as serve_command
from .terminal import cell, line, make_console

__all__ = ["main"]

# Made again by every `main()`, so that they follow the streams of the moment (a terminal or
# not); see `_terminal.make_console`.
err = make_console(stderr=True)
out = make_console(stderr=False)

# Where `oxedit edit` saves without `-o` (the README's and .gitignore's folder for results).
_EDITED: Final = "edited"

# What `oxedit edit -o FILE` can write, by FILE's extension (converted with Pillow if needed).
_OUTPUT_FORMATS: Final = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".gif": "GIF",
}


def _configured() -> bool:
    if os.environ.get("OXEN_API_KEY") or os.environ.get("OXEN_BASE_URL"):
        return True
    try:
        return key_from_oxen_cli(resolve_base_url(None)) is not None
    except OxeditError:
        return True  # a broken config is reported by the Client itself


@asynccontextmanager
async def _client(args: argparse.Namespace) -> AsyncIterator[Client]:
    upload_repo = getattr(args, "upload_to", None)
    public = getattr(args, "upload_public", False)
    limits = _limits(args)
    if _configured():
        # doctor checks the assumptions, not its findings; other commands use them
        hub = None if args.command == "doctor" else hub_profile(resolve_base_url(None))
        # Model schemas are kept on disk a few minutes: short commands need not refetch.
        async with Client(
            upload_repo=upload_repo,
            upload_repo_public=public,
            hub=hub,
            cache_schemas=True,
            limits=limits,
        ) as client:
            yield client
        return
    from ..server import Faults, LocalServer
    from .serve import embedded_state_dir

    # Real jobs take seconds; the embedded server imitates that so progress means something.
    faults = Faults(latency=(args.local_latency[0], args.local_latency[1]))
    # A batch's server outlives a kill, like the real one (a dry run sends nothing to keep).
    state = None if getattr(args, "dry_run", False) else embedded_state_dir(args)
    async with LocalServer(workers=args.local_workers, faults=faults, state_dir=state) as server:
        err.print(
            f"[yellow]No OXEN_API_KEY or OXEN_BASE_URL set: using the local Oxen server at "
            f"{server.url} (real edits, no credits spent). Set OXEN_API_KEY to use "
            "hub.oxen.ai.[/]"
        )
        async with Client(
            api_key=server.api_key,
            base_url=server.url,
            upload_repo=upload_repo,
            upload_repo_public=public,
            limits=limits,
        ) as client:
            yield client


def _limits(args: argparse.Namespace) -> Limits | None:
    """`--max-rate` (a shard's share of it with `--shard`) as the client's limits."""
    rate = getattr(args, "max_rate", None)
    if rate is None:
        return None
    if not rate > 0 or rate == float("inf"):
        raise InvalidRequestError(
            f"--max-rate {rate!r} must be a positive number of enqueues per second (e.g. 20)"
        )
    shard = getattr(args, "shard", None)
    count = Shard.parse(shard).count if shard else 1
    return Limits(max_rate=rate / count)


def _params(args: argparse.Namespace) -> dict[str, Any]:
    return {"aspect_ratio": args.aspect_ratio} if args.aspect_ratio else {}


# -- commands ----------------------------------------------------------------------------------


async def _edit(args: argparse.Namespace) -> int:
    output = Path(args.output or Path(_EDITED) / f"{_stem(args.image)}.png")
    image_format = _OUTPUT_FORMATS.get(output.suffix.lower())
    if image_format is None:  # refused before anything is sent (or billed)
        raise InvalidRequestError(
            f"-o {str(output)!r}: cannot write a {output.suffix or 'extensionless'!r} file; "
            f"end the name with one of {', '.join(_OUTPUT_FORMATS)}"
        )
    async with _client(args) as client:
        with err.status("editing..."):
            job = await client.submit(
                prompt=args.prompt, image=args.image, model=args.model, **_params(args)
            )
            generation = await job
            data = await client.read(generation)
            data = await anyio.to_thread.run_sync(_convert, data, image_format)
            output.parent.mkdir(parents=True, exist_ok=True)
            await save_atomic(output, data)
    line(out, f"saved {output} (generation {generation.id})")
    return 0


def _stem(image: str) -> str:
    """The output name of an image path or URL (a data URI has none worth keeping)."""
    stem = Path(urlsplit(image).path if "://" in image else image).stem
    return stem if stem and not image.startswith("data:") else "image"


def _convert(data: bytes, image_format: str) -> bytes:
    """`data` as an `image_format` file (as is when it already is one)."""
    with Image.open(io.BytesIO(data)) as opened:
        if opened.format == image_format:
            return data
        image: Image.Image = opened
        if image_format == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")  # JPEG has no alpha or palette
        buffer = io.BytesIO()
        image.save(buffer, image_format)
    return buffer.getvalue()


async def _batch(args: argparse.Namespace) -> int:
    return await run_batch(args, lambda: _client(args), err)


def _report(args: argparse.Namespace) -> int:
    # Only this command needs them at import time.
    from .report.build import is_sharded, write_html_report, write_merged_report

    folder = Path(args.dir)
    if args.journal is None and is_sharded(folder):  # every shard's journal, merged
        report, page = write_merged_report(folder)
        line(out, f"wrote {report}")
    else:
        page = write_html_report(folder, journal=Path(args.journal) if args.journal else None)
    line(out, f"wrote {page}")
    if args.open:
        import webbrowser

        webbrowser.open(page.resolve().as_uri())
    return 0


async def _doctor(args: argparse.Namespace) -> int:
    return await run_doctor(args, lambda: _client(args), out, err)


async def _status(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        generation = await client.get(args.id)
    table = Table(show_header=False)
    for field in (f.name for f in dataclasses.fields(generation)):
        value = getattr(generation, field)
        if field.endswith("_at") and value is not None:
            value = f"{value:.0f} ({time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(value))} UTC)"
        table.add_row(field, cell(value))
    out.print(table)
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        before = await client.get(args.id)
        # DELETE affects only active rows: asking first tells "cancelled now" from "had
        # already finished", which the answer to the DELETE alone cannot.
        generation = before if before.status in TERMINAL_STATUSES else await client.cancel(args.id)
    if before.status == "cancelled":
        line(out, f"{generation.id}: already cancelled; nothing to do")
        return 0
    if generation.status != "cancelled":  # finished before (or while) we asked
        line(
            err,
            f"{generation.id}: nothing was cancelled: it had already finished "
            f"({generation.status})",
            style="yellow",
        )
        return 1
    line(out, f"{generation.id}: cancelled")
    return 0


async def _models(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        if args.id:
            model = await client.model(args.id)
            schema = model.schema
            required = set(schema.get("required", []))
            table = Table(title=Text(f"{model.id} parameters"), title_justify="left")
            for column in ("parameter", "type", "required", "default", "allowed", "description"):
                table.add_column(column)
            for name, prop in schema.get("properties", {}).items():
                allowed = ", ".join(map(str, prop["enum"])) if "enum" in prop else _range(prop)
                table.add_row(
                    cell(name),
                    cell(prop.get("type", "")),
                    "yes" if name in required else "",
                    cell(prop.get("default")),
                    cell(allowed),
                    cell(prop.get("description", "")),
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
            cell(m.id),
            cell(m.display_name),
            cell(", ".join(caps.get("input", []))),
            cell(", ".join(caps.get("output", []))),
        )
    out.print(table)
    return 0


def _range(prop: dict[str, Any]) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    if low is None and high is None:
        return str(prop.get("format", ""))
    return f"{'' if low is None else low}..{'' if high is None else high}"


# -- parsing -----------------------------------------------------------------------------------


# Each model takes its own ratios (qwen-image-edit 7, flux-kontext-dev 12 with
# `match_input_image`): a value is checked against the chosen model's schema before anything
# is sent, and the error lists that model's values.
_ASPECT_HELP = "the model's aspect ratio, e.g. 1:1 (`oxedit models MODEL` lists its values)"


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
    edit.add_argument(
        "-o", "--output", help=f"where to save (default: {_EDITED}/IMAGE.png, created if missing)"
    )
    edit.add_argument("--model", default=C.DEFAULT_MODEL)
    edit.add_argument("--aspect-ratio", metavar="RATIO", help=_ASPECT_HELP)
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
        "--aspect-ratio", metavar="RATIO", help=_ASPECT_HELP + "; for rows that give none"
    )
    batch.add_argument("--journal", help="journal file (default: OUT/.oxedit-journal.sqlite)")
    batch.add_argument(
        "--upload-to",
        metavar="NAMESPACE/REPO",
        help="upload local inputs to this Oxen repository once each and send their URLs "
        "(default: OXEN_UPLOAD_REPO; else inline data URIs)",
    )
    batch.add_argument(
        "--upload-public",
        action="store_true",
        help="create the --upload-to repository public (default: private)",
    )
    batch.add_argument("--report", help="report file (default: OUT/report.json)")
    batch.add_argument(
        "--retry-failed",
        action="store_true",
        help="re-send items that failed in an earlier run (may bill again)",
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="check every row, print the estimated cost, send nothing",
    )
    batch.add_argument(
        "--max-cost",
        metavar="USD",
        help="the most the batch may spend (earlier runs count); with --shard i/N each shard "
        "may spend USD/N (its own journal's spend counts against it)",
    )
    batch.add_argument(
        "--shard",
        metavar="i/N",
        help="run only shard i of N (1 <= i <= N): an item belongs to shard 1 + (SHA-256 of "
        "its journal key, i.e. of its image content or URL, prompt, model, parameters, name and "
        "repetition) mod N, so N processes or machines given 1/N .. N/N cover every item once. "
        "Shards may share one --out: each keeps OUT/.oxedit-journal.shard-i-of-N.sqlite and "
        "OUT/report.shard-i-of-N.json; the last to finish (or `oxedit report OUT`) writes "
        "the merged report.json and report.html",
    )
    batch.add_argument(
        "--max-rate",
        type=float,
        metavar="PER_SECOND",
        help="enqueues per second at most for the whole batch; with --shard i/N each shard "
        "paces at PER_SECOND/N. Default: no cap; each process learns its share of the "
        "account's limit from the 429s it gets (it halves its pace on each, then grows back)",
    )
    batch.add_argument(
        "--unknown-cost", metavar="USD", help="price assumed per generation of unpriced models"
    )
    batch.set_defaults(run=_batch)

    report = sub.add_parser(
        "report", help="rebuild DIR/report.html (the contact sheet) from a batch's journal"
    )
    report.add_argument("dir", metavar="DIR", help="the --out folder of an `oxedit batch` run")
    report.add_argument(
        "--journal",
        help="journal file (default: DIR/.oxedit-journal.sqlite; with shard journals in DIR, "
        "every journal there, merged into one page and one report.json)",
    )
    report.add_argument("--open", action="store_true", help="open the page in the browser")
    report.set_defaults(run=_report, sync=True)

    status = sub.add_parser("status", help="show a generation")
    status.add_argument("id")
    status.set_defaults(run=_status)

    cancel = sub.add_parser(
        "cancel",
        help="cancel a queued or running generation",
        description="Cancel a queued or running generation. Exit 0 when it is cancelled (now "
        "or before), 1 when nothing was cancelled because it had already succeeded or failed "
        "(or the API refused), 2 on a usage or key mistake.",
    )
    cancel.add_argument("id")
    cancel.set_defaults(run=_cancel)

    models = sub.add_parser("models", help="list models, or show one model's parameters")
    models.add_argument("id", nargs="?")
    models.set_defaults(run=_models)

    doctor = sub.add_parser("doctor", help="check that the hub behaves as oxedit expects")
    add_doctor_arguments(doctor)
    doctor.set_defaults(run=_doctor)

    serve = sub.add_parser("serve", help="run the local Oxen server until interrupted")
    add_serve_arguments(serve)
    serve.set_defaults(run=serve_command, sync=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code: 0 all done, 1 some items did not succeed
    or the API said no, 2 a usage or configuration mistake, 130 interrupted."""
    global err, out
    err, out = make_console(stderr=True), make_console(stderr=False)
    args = _parser().parse_args(argv)
    if getattr(args, "concurrency", 1) < 1:
        line(err, f"error: --concurrency {args.concurrency} must be at least 1", style="red")
        return 2
    try:
        if getattr(args, "sync", False):
            return int(args.run(args))
        return asyncio.run(_run(args))
    except OxeditError as exc:
        line(err, f"error: {_explain(exc)}", style="red")
        return _exit_code(exc)
    except (KeyboardInterrupt, asyncio.CancelledError):
        line(err, "interrupted; re-run the same command to resume where it stopped")
        return 130


async def _run(args: argparse.Namespace) -> int:
    """The command, with SIGTERM handled like Ctrl-C: both cancel it, so that it cleans up
    (a batch writes its partial report) and `main` exits 130. SIGINT explicitly too: a process
    started in the background by a script inherits SIGINT ignored, and then Python would not
    react to it at all."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    handled: list[signal.Signals] = []
    if task is not None and threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, task.cancel)
                handled.append(signum)
            except (NotImplementedError, RuntimeError):  # no loop signal handlers (Windows)
                pass
    try:
        return int(await args.run(args))
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


def _explain(exc: OxeditError) -> str:
    """What to print for an error that ends a command: most say it all themselves; a refused
    key is about the key, not about whichever request met the refusal first."""
    if isinstance(exc, AuthenticationError):
        return (
            f"the API at {_base_url()} refused the API key ({_said(exc)}); set a valid key in "
            "OXEN_API_KEY (or with `oxen config --auth HOST KEY`)"
        )
    return str(exc)


def _base_url() -> str:
    try:
        return resolve_base_url(None)
    except OxeditError:
        return "OXEN_BASE_URL"


def _said(exc: APIStatusError) -> str:
    return f"HTTP {exc.status_code}: {exc.message}" if exc.message else f"HTTP {exc.status_code}"


def _exit_code(exc: OxeditError) -> int:
    usage = (ConfigurationError, InvalidRequestError, AuthenticationError, PermissionDeniedError)
    return 2 if isinstance(exc, usage) else 1


if __name__ == "__main__":
    sys.exit(main())

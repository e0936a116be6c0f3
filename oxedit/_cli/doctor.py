"""`oxedit doctor`: the command around `doctor_checks.Doctor`: flags, the spending prompt, the
table (or `--json`), and remembering what the client can use (`findings`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from decimal import Decimal

import anyio
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import _constants as C
from .._bulk.cost import money
from .._client import Client
from .._resources.upload import parse_repo
from .doctor_checks import DIFFERS, LABELS, OK, UNKNOWN, Doctor, Options, Report
from .findings import save_findings
from .terminal import cell, line

__all__ = ["add_doctor_arguments", "run_doctor"]

_STYLES = {OK: "green", DIFFERS: "bold red", UNKNOWN: "yellow"}


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds > 0")
    return seconds


def _repo(value: str) -> str:
    try:
        parse_repo(value)
    except ValueError as exc:  # InvalidRequestError is one
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `oxedit doctor`."""
    parser.add_argument(
        "--spend",
        action="store_true",
        help="also run one generation of the cheapest per-image model (billed; its estimated "
        "cost is shown and confirmed first)",
    )
    parser.add_argument("--yes", action="store_true", help="spend without asking")
    parser.add_argument(
        "--upload-to",
        metavar="NAMESPACE/REPO",
        type=_repo,
        help="also check the repository routes there (uploads oxedit's small probe image once)",
    )
    parser.add_argument(
        "--keepalive-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=C.DOCTOR_KEEPALIVE_TIMEOUT,
        help=f"how long to wait for a keep-alive on the idle event stream (default "
        f"{C.DOCTOR_KEEPALIVE_TIMEOUT:g}: the documented 15 s plus slack)",
    )
    parser.add_argument(
        "--generation-timeout",
        metavar="SECONDS",
        type=_seconds,
        default=C.DOCTOR_GENERATION_TIMEOUT,
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


async def run_doctor(
    args: argparse.Namespace,
    client: Callable[[], AbstractAsyncContextManager[Client]],
    out: Console,
    err: Console,
) -> int:
    """Run the checks; 0 when everything matches, 1 when something differs, 2 on usage."""
    if args.spend and not args.yes and not sys.stdin.isatty():
        line(err, "error: --spend asks before spending; pass --yes to spend without asking",
             style="red")  # fmt: skip
        return 2
    options = Options(
        keepalive_timeout=args.keepalive_timeout,
        generation_timeout=args.generation_timeout,
        upload_to=args.upload_to,
        spend=args.spend,
    )

    async def confirm(model: str, price: Decimal) -> bool:
        line(err, f"--spend: one generation of {model}, estimated {money(price)}")
        if args.yes:
            return True
        err.print(Text("Spend it? [y/N] "), end="")
        answer: str = await anyio.to_thread.run_sync(sys.stdin.readline)
        return answer.strip().lower() in ("y", "yes")

    async with client() as opened:
        if not args.json:
            line(err, f"checking {opened.base_url} ...")
        report = await Doctor(opened, options).run(confirm)
    saved = save_findings(report.base_url, report.learned) if report.learned else None
    if args.json:
        # Plain text: rich would re-wrap long strings on a terminal, breaking the JSON.
        line(out, json.dumps(report.to_json(), indent=2))
    else:
        _print(report, out)
        if saved is not None:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(report.learned.items()))
            line(out, f"remembered for oxedit commands on {report.base_url}: {shown}")
    return report.exit_code


def _print(report: Report, out: Console) -> None:
    table = Table(title=f"oxedit doctor: {report.base_url}", title_justify="left")
    for column in ("check", "oxedit assumes", "the server did", "verdict", "oxedit does"):
        table.add_column(column)
    for check in report.checks:
        table.add_row(
            cell(check.check),
            cell(check.assumes),
            cell(check.observed),
            Text(LABELS[check.verdict], style=_STYLES[check.verdict]),
            cell(check.remedy),
        )
    out.print(table)
    counts = {v: sum(c.verdict == v for c in report.checks) for v in LABELS}
    line(
        out,
        f"{counts[OK]} OK, {counts[DIFFERS]} differ, {counts[UNKNOWN]} could not tell",
        style="red" if counts[DIFFERS] else None,
    )

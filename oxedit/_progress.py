"""The CLI's live progress bar and end-of-run summary (rich)."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ._requests import BulkResult

__all__ = ["BatchProgress", "summary_table"]


class _Counts(ProgressColumn):
    def render(self, task: Task) -> Text:
        fields = task.fields
        return Text.from_markup(
            f"[green]{fields['ok']} done[/] [red]{fields['failed']} failed[/] "
            f"[cyan]{fields['in_flight']} in flight[/]"
        )


class _Rate(ProgressColumn):
    """Items per second over the whole run (rich's own speed is a short moving window)."""

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time or task.elapsed
        if not elapsed or not task.completed:
            return Text("-/s", style="magenta")
        return Text(f"{task.completed / elapsed:.1f}/s", style="magenta")


class BatchProgress:
    """done / failed / in flight / rate / ETA, refreshed a few times a second."""

    def __init__(self, console: Console, total: int) -> None:
        self.counts: Counter[str] = Counter()
        self.started = time.perf_counter()
        self._progress = Progress(
            BarColumn(bar_width=20),
            TaskProgressColumn(),
            _Counts(),
            _Rate(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._task = self._progress.add_task("batch", total=total, ok=0, failed=0, in_flight=0)

    def __enter__(self) -> BatchProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(None, None, None)

    def add(self, result: BulkResult, in_flight: int) -> None:
        key = "resumed" if result.resumed and result.ok else result.status
        self.counts[key] += 1
        ok = self.counts["succeeded"] + self.counts["resumed"]
        failed = sum(v for k, v in self.counts.items() if k not in ("succeeded", "resumed"))
        self._progress.update(self._task, advance=1, ok=ok, failed=failed, in_flight=in_flight)

    def in_flight(self, count: int) -> None:
        self._progress.update(self._task, in_flight=count)

    def print(self, message: str) -> None:
        self._progress.console.print(message, highlight=False, markup=False)


def summary_table(counts: Counter[str], wall: float, out: Path, report: Path) -> Table:
    total = sum(counts.values())
    table = Table(title="oxedit batch", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("succeeded", str(counts["succeeded"]))
    table.add_row("already done (resumed)", str(counts["resumed"]))
    table.add_row("failed", str(counts["failed"]))
    table.add_row("cancelled", str(counts["cancelled"]))
    table.add_row("errors (not sent / not saved)", str(counts["error"]))
    table.add_row("total", str(total))
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("rate", f"{total / wall:.1f} items/s" if wall > 0 else "-")
    table.add_row("images in", str(out))
    table.add_row("report", str(report))
    return table

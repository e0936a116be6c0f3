"""The CLI's live progress bar and end-of-run summary (rich)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
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

from .._bulk.cost import money
from .._bulk.requests import BulkResult
from .._resources.upload import UploadStats
from .terminal import cell

__all__ = ["BatchProgress", "summary_table"]


# The outcomes as the bar and the summary both name them (`BulkResult.status` -> words);
# "succeeded" on the bar counts the items skipped as done earlier too.
OUTCOMES = (
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("unknown", "outcome unknown"),
    ("error", "errors"),
)


class _Counts(ProgressColumn):
    def render(self, task: Task) -> Text:
        fields = task.fields
        text = Text(f"{fields['ok']} succeeded", style="green")
        for status, words in OUTCOMES:
            if fields[status]:
                text.append(f" {fields[status]} {words}", style="red")
        text.append(f" {fields['in_flight']} in flight", style="cyan")
        return text


class _Rate(ProgressColumn):
    """Items this run finished per second since it started: the summary's own figure (rich's
    speed is a short moving window, and counts items skipped as done earlier)."""

    def __init__(self, progress: BatchProgress) -> None:
        super().__init__()
        self._batch = progress

    def render(self, task: Task) -> Text:
        return Text(self._batch.rate_text(), style="magenta")


class BatchProgress:
    """done / failed / in flight / rate / ETA, refreshed a few times a second.

    `counts` holds this run's outcomes by status, and under "resumed" the items skipped
    because an earlier run already finished them. Those take no time, so the rate (shown
    live and in the summary, from the same numbers) counts only the others.
    """

    def __init__(
        self,
        console: Console,
        total: int,
        *,
        clock: Callable[[], float] = time.perf_counter,
        pace: Callable[[], float | None] | None = None,
        uploads: Callable[[], UploadStats | None] | None = None,
    ) -> None:
        self.counts: Counter[str] = Counter()
        self._pace = pace  # the client's adaptive enqueue rate, shown once it paces
        self._uploads = uploads  # the client's input uploads (with `upload_repo`)
        self._clock = clock
        self.started = clock()
        self._ended: float | None = None
        self._worked = 0  # items this run finished itself (not skipped)
        self._progress = Progress(
            BarColumn(bar_width=20),
            TaskProgressColumn(),
            _Counts(),
            _Rate(self),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            refresh_per_second=4,
            get_time=clock,
        )
        self._task = self._progress.add_task(
            "batch", total=total, ok=0, in_flight=0, failed=0, cancelled=0, unknown=0, error=0
        )

    def __enter__(self) -> BatchProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ended = self._clock()
        self._progress.__exit__(None, None, None)

    @property
    def elapsed(self) -> float:
        """Seconds since the bar started (frozen when it stops)."""
        return (self._ended if self._ended is not None else self._clock()) - self.started

    @property
    def rate(self) -> float | None:
        """Items finished by this run per second, or None before the first."""
        elapsed = self.elapsed
        return self._worked / elapsed if self._worked and elapsed > 0 else None

    def rate_text(self) -> str:
        rate = self.rate
        text = "-/s" if rate is None else f"{rate:.1f}/s"
        pace = self._pace() if self._pace is not None else None
        if pace is not None:
            text = f"{text} (enqueues paced at {pace:.0f}/s)"
        uploads = self._uploads() if self._uploads is not None else None
        if uploads is not None and (uploads.uploaded or uploads.skipped or uploads.in_progress):
            text += f" inputs: {uploads.uploaded} uploaded, {uploads.skipped} already there" + (
                f", {uploads.in_progress} uploading" if uploads.in_progress else ""
            )
        return text

    def add(self, result: BulkResult, in_flight: int) -> None:
        self.count(result)
        self._progress.update(self._task, in_flight=in_flight)

    def count(self, result: BulkResult) -> None:
        """Count an item's outcome (shown on the bar, summed up by the summary)."""
        key = "resumed" if result.resumed and result.ok else result.status
        self.counts[key] += 1
        self._worked += not result.resumed
        ok = self.counts["succeeded"] + self.counts["resumed"]
        counts = self.counts
        self._progress.update(
            self._task,
            advance=1,
            ok=ok,
            failed=counts["failed"],
            cancelled=counts["cancelled"],
            unknown=counts["unknown"],
            error=counts["error"],
        )

    def in_flight(self, count: int) -> None:
        self._progress.update(self._task, in_flight=count)

    def print(self, message: str) -> None:
        self._progress.console.print(Text(message), soft_wrap=True)


def summary_table(
    progress: BatchProgress,
    out: Path,
    report: Path,
    *,
    interrupted: str | None,
    costs: tuple[Decimal | None, Decimal | None] = (None, None),
    earlier: int = 0,
) -> Table:
    """The end-of-run summary; `interrupted` says why the run stopped early, if it did
    ("interrupted" when it was: the command says what to do once, itself); `earlier`
    counts the journal's items of earlier runs, which the costs cover too."""
    counts = progress.counts
    rate = progress.rate
    title = "oxedit batch" if interrupted is None else f"oxedit batch ({_why(interrupted)})"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("succeeded (this run)", str(counts["succeeded"]))
    table.add_row("already done earlier (skipped)", str(counts["resumed"]))
    words = dict(OUTCOMES)
    table.add_row(words["failed"], str(counts["failed"]))
    table.add_row(words["cancelled"], str(counts["cancelled"]))
    table.add_row(f"{words['unknown']} (re-run to follow)", str(counts["unknown"]))
    table.add_row(f"{words['error']} (not sent / not saved)", str(counts["error"]))
    table.add_row("total", str(sum(counts.values())))
    if earlier:
        table.add_row("items of earlier runs (in the report)", str(earlier))
    table.add_row("wall time", f"{progress.elapsed:.1f} s")
    table.add_row("rate", "-" if rate is None else f"{rate:.1f} items/s")
    table.add_row("estimated cost", money(costs[0]))
    table.add_row("actual cost (history)", money(costs[1]))
    table.add_row("images in", cell(out))
    table.add_row("report", cell(report))
    if interrupted is not None and interrupted != "interrupted":
        table.add_row("stopped early", cell(interrupted))
    return table


def _why(stopped: str) -> str:
    return "interrupted" if stopped == "interrupted" else "stopped early"

"""`oxedit batch --dry-run`: the rows' problems, then what the batch would send and cost."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .._bulk.cost import Estimate, money
from .terminal import cell, line, make_console

__all__ = ["print_estimate"]


def print_estimate(err: Console, estimate: Estimate) -> int:
    """Print the errors on `err` and the estimate on stdout; the exit code (1: a bad row)."""
    for _, message in estimate.errors:
        line(err, f"error: {message}", style="red")
    table = Table(title="oxedit batch --dry-run (nothing sent)", title_justify="left")
    for column in ("model", "items", "generations", "per generation", "cost"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in estimate.models.values():
        price = model.unit_cost
        if price is None and estimate.unknown_cost is not None:
            shown = f"{money(estimate.unknown_cost)} (assumed)"
        else:
            shown = money(price)
        table.add_row(
            cell(model.model),
            str(model.items),
            str(model.generations),
            shown,
            money(model.cost) if price is not None else "unknown",
        )
    total = estimate.cost
    table.add_row(
        "total",
        str(estimate.items),
        str(estimate.generations),
        "",
        money(total) if total is not None else f"{money(estimate.known_cost)} + unknown",
    )
    out = make_console(stderr=False)
    out.print(table)
    if estimate.unknown:
        line(
            out,
            f"unknown pricing: {', '.join(estimate.unknown)} (no per-image price); "
            "--unknown-cost USD assumes a price per generation",
        )
    if estimate.errors:
        line(out, f"{len(estimate.errors)} row(s) would not be sent (see the errors above)")
    return 1 if estimate.errors else 0

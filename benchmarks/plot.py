"""Plot `end_to_end` results: completion-to-wake delay and client CPU against N, per strategy.

Takes one or more JSON files written by `python -m benchmarks.end_to_end --json PATH` (e.g. the
default run and a separate 50,000-job run) and merges them; where two files have the same
strategy and N, the later file wins.

Run: `python -m benchmarks.plot benchmarks/results/end_to_end.json
[benchmarks/results/end_to_end_50k.json] -o benchmarks/results/end_to_end.png`
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

STYLE = {
    "oxedit": ("tab:blue", "o"),
    "raw": ("tab:green", "s"),
    "raw-connector": ("tab:olive", "D"),
    "poll-5s": ("tab:red", "v"),
    "poll-0.5s": ("tab:orange", "^"),
    "sse-per-job": ("tab:purple", "x"),
}


def merge(outs: list[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    by_strategy: dict[str, dict[int, dict[str, Any]]] = {}
    for out in outs:
        for row in out["results"]:
            if row.get("skipped"):
                continue
            by_strategy.setdefault(row["strategy"], {})[row["n"]] = row
    return by_strategy


def plot_end_to_end(outs: list[dict[str, Any]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    data = merge(outs)
    fig, (ax_delay, ax_cpu) = plt.subplots(1, 2, figsize=(12, 6))
    for strategy, rows in data.items():
        color, marker = STYLE.get(strategy, ("black", "."))
        ns = sorted(rows)
        ax_delay.plot(
            ns,
            [rows[n]["delay_p99_ms"] for n in ns],
            color=color,
            marker=marker,
            label=f"{strategy} p99",
        )
        ax_delay.plot(
            ns,
            [rows[n]["delay_p50_ms"] for n in ns],
            color=color,
            marker=marker,
            linestyle=":",
            alpha=0.6,
            label=f"{strategy} p50",
        )
        ax_cpu.plot(
            ns, [rows[n]["cpu_per_1k"] for n in ns], color=color, marker=marker, label=strategy
        )
    ax_delay.axhline(50, color="grey", linestyle="--", linewidth=0.8)
    ax_delay.annotate(
        "target p99 50 ms",
        (0.02, 50),
        xycoords=("axes fraction", "data"),
        fontsize=8,
        color="grey",
        va="bottom",
    )
    latency = outs[0].get("latency", "?")
    ax_delay.set(
        xscale="log",
        yscale="log",
        xlabel="jobs submitted at once (N)",
        ylabel="completion-to-wake delay (ms)",
        title=f"Completion to wake (server latency {latency})",
    )
    # Log scale: the one-stream-per-job baseline costs 20x the others.
    ax_cpu.set(
        xscale="log",
        yscale="log",
        xlabel="jobs submitted at once (N)",
        ylabel="client CPU seconds per 1,000 jobs",
        title="Client CPU per 1,000 jobs",
    )
    ax_delay.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    ax_cpu.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    all_ns = sorted({n for rows in data.values() for n in rows})
    for ax in (ax_delay, ax_cpu):
        ax.grid(True, which="both", alpha=0.3)
        ax.set_xticks(all_ns, [f"{n:,}" for n in all_ns])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    machine = outs[0].get("machine", {})
    fig.suptitle(
        f"oxedit end to end, local server in another process; {machine.get('nproc', '?')} cores "
        f"{machine.get('cpu', '')}, Python {machine.get('python', '?')}, "
        f"aiohttp {machine.get('aiohttp', '?')}; medians of repeats",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="JSON files written by end_to_end --json")
    parser.add_argument("-o", "--output", default="benchmarks/results/end_to_end.png")
    args = parser.parse_args()
    outs = [json.loads(Path(p).read_text()) for p in args.inputs]
    plot_end_to_end(outs, args.output)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

"""Shared helpers of the benchmarks: CPU/memory probes, tables, JSON output, medians."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class GcMonitor:
    """Counts and times this process's garbage collections, through `gc.callbacks`.

    `with GcMonitor() as gcm: ...`, then `gcm.summary()`: collections per generation, their
    total pause (wall seconds) and CPU (this thread's CPU seconds, which other processes
    competing for the cores do not inflate), the longest pause (ms), and when each full
    collection ran (Unix time, start and end: `gc_full_windows`, to tell which awaited jobs it
    held up). The callback costs a few clock reads per collection.
    """

    def __init__(self) -> None:
        self.counts = [0, 0, 0]
        self.pause = [0.0, 0.0, 0.0]
        self.cpu = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self.full: list[tuple[float, float]] = []
        self._started = (0.0, 0.0)
        self._unix = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            if info["generation"] == 2:
                self._unix = time.time()
            return
        wall, cpu = time.perf_counter() - self._started[0], time.thread_time() - self._started[1]
        generation = info["generation"]
        if generation == 2:
            self.full.append((self._unix, time.time()))
        self.counts[generation] += 1
        self.pause[generation] += wall
        self.cpu[generation] += cpu
        self.longest = max(self.longest, wall)

    def __enter__(self) -> GcMonitor:
        import gc

        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        gc.callbacks.remove(self._callback)

    def summary(self) -> dict[str, Any]:
        return {
            "gc_collections": list(self.counts),
            "gc_gen2": self.counts[2],
            "gc_pause_s": sum(self.pause),
            "gc_gen2_pause_s": self.pause[2],
            "gc_cpu_s": sum(self.cpu),
            "gc_max_pause_ms": self.longest * 1000,
            "gc_full_windows": list(self.full),
        }


class Stopwatch:
    def __enter__(self) -> Stopwatch:
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float]) -> str:
    """The noise of repeated runs: (max - min) / median, as a percentage."""
    if len(values) < 2:
        return "n/a"
    m = statistics.median(values)
    return f"±{(max(values) - min(values)) / m * 50:.0f}%" if m else "n/a"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            if value == 0:
                return "0"
            if abs(value) >= 100:
                return f"{value:,.0f}"
            if abs(value) >= 1:
                return f"{value:.2f}"
            return f"{value:.3g}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in cells:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) + " |")
    sys.stdout.flush()


def write_json(path: str | None, data: Any) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2) + "\n")
        print(f"\nwrote {path}")


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by the nearest-rank method; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least 1
    return float(ordered[int(rank) - 1])


def tiny_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (10, 120, 230)) -> bytes:
    """A valid one-colour PNG, built without Pillow so that client processes need not import it
    (8x8: 75 bytes, so the server's edit and the request body stay small)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height, 9))
        + chunk(b"IEND", b"")
    )


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import platform

    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = {}
    for name in ("aiohttp", "msgspec", "oxedit"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            versions[name] = "missing"
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "oxedit"], capture_output=True, text=True
        ).stdout.strip()
        if dirty:
            commit += " (oxedit/ has uncommitted changes)"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "commit": commit,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **versions,
    }


async def run_in_child(
    target: Any, args: tuple[Any, ...], *, limit_s: float, sample_every: float = 0.2
) -> tuple[Any, int]:
    """Run `target(conn, *args)` in a fresh (spawned) process and return what it sent on
    `conn` as `("ok", value)`, with the peak number of TCP connections the child held (sampled
    from here, so the sampling costs the child nothing).

    The child sends `("error", traceback_text)` on failure; that, a crash, or no answer within
    `limit_s` raises `RuntimeError`.
    """
    import asyncio
    import multiprocessing

    import psutil

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=target, args=(child, *args))
    proc.start()
    child.close()
    ps = psutil.Process(proc.pid)
    peak = 0
    deadline = time.monotonic() + limit_s
    try:
        while not parent.poll():
            if not proc.is_alive() and not parent.poll():
                raise RuntimeError(f"the benchmark child died (exit code {proc.exitcode})")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the benchmark child gave no result within {limit_s:g} s")
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                peak = max(peak, len(ps.net_connections(kind="tcp")))
            await asyncio.sleep(sample_every)
        status, value = parent.recv()
    finally:
        proc.join(10.0)
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
    if status != "ok":
        raise RuntimeError(f"the benchmark child failed:\n{value}")
    return value, peak

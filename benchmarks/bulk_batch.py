"""A whole `oxedit batch` run, as a user runs it: N images in a folder, edited and saved.

The local server runs as `oxedit serve` in one process, the batch as `oxedit batch` in
another (the command a user types); reported: wall time, items/s, the batch process's CPU
and peak memory, and what the server saw (generations created, enqueue requests).
Then the same command again, to measure a resume that has nothing left to do.

Run: `python -m benchmarks.bulk_batch [--n 10000] [--concurrency 256] [--json PATH]`

`--show-output` lets the first run's progress and summary through (the README's capture is
`python -m benchmarks.bulk_batch --n 1500 --broken --show-output`), and `--broken` adds one
file that is not an image, to show a per-item error.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks._common import print_table, write_json

API_KEY = "bench-key"


def make_images(folder: Path, n: int, *, broken: bool = False) -> None:
    folder.mkdir(parents=True)
    if broken:
        (folder / "broken.png").write_bytes(b"nope, not an image")
    for i in range(n):
        buffer = io.BytesIO()
        Image.new("RGB", (16, 12), (i % 256, (i // 256) % 256, (i // 65536) % 256)).save(
            buffer, "PNG"
        )
        (folder / f"img{i:05d}.png").write_bytes(buffer.getvalue())


def start_server(workers: int) -> tuple[subprocess.Popen[str], str]:
    code = (
        "from oxedit.testing import run_server, Faults;"
        f"run_server('127.0.0.1', 0, {API_KEY!r}, workers={workers},"
        " faults=Faults(latency=(0.5, 1.5), seed=1))"
    )
    server = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert server.stdout is not None
    first = server.stdout.readline()  # "oxedit local server: <url>"
    return server, first.rsplit(" ", 1)[1].strip()


def run_batch(
    images: Path, out: Path, url: str, concurrency: int, *, show: bool = False
) -> dict[str, float]:
    env = {**os.environ, "OXEN_BASE_URL": url, "OXEN_API_KEY": API_KEY}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    code = subprocess.run(
        [
            sys.executable,
            "-m",
            "oxedit",
            "batch",
            str(images),
            "--prompt",
            "mirror it",
            "--out",
            str(out),
            "--concurrency",
            str(concurrency),
        ],
        env=env,
        stdout=None if show else subprocess.DEVNULL,
        stderr=None if show else subprocess.DEVNULL,
        check=False,
    ).returncode
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "exit_code": code,
        "wall_s": wall,
        "cpu_s": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "peak_rss_mb": after.ru_maxrss / 1024,  # the largest child so far (KiB on Linux)
    }


def server_counts(url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{url}/api/ai/queue?status=succeeded", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request) as resp:
        import json

        return {"succeeded_rows": json.load(resp)["count"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--workers",
        type=int,
        default=1024,
        help="server workers: with 0.5-1.5 s jobs, the concurrency bound rules",
    )
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--show-output", action="store_true", help="show the first run's progress and summary"
    )
    parser.add_argument("--broken", action="store_true", help="add one file that is no image")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images, out = Path(tmp) / "in", Path(tmp) / "out"
        make_images(images, args.n, broken=args.broken)
        server, url = start_server(args.workers)
        try:
            first = run_batch(images, out, url, args.concurrency, show=args.show_output)
            second = run_batch(images, out, url, args.concurrency)
            counts = server_counts(url)
        finally:
            server.terminate()
            server.wait()
        saved = len(list(out.glob("*.png")))
    rows = []
    for name, run in (("first run", first), ("re-run (all done)", second)):
        rows.append(
            [
                name,
                args.n,
                run["exit_code"],
                run["wall_s"],
                args.n / run["wall_s"],
                run["cpu_s"],
                run["peak_rss_mb"],
            ]
        )
    print_table(
        f"oxedit batch: {args.n:,} images, concurrency {args.concurrency}, server jobs take "
        "0.5-1.5 s",
        ["run", "items", "exit", "wall s", "items/s", "batch CPU s", "peak RSS MB"],
        rows,
    )
    print(
        f"\nserver rows succeeded: {counts['succeeded_rows']:,} (items: {args.n:,}); "
        f"images saved: {saved:,}"
    )
    write_json(
        args.json,
        {
            "n": args.n,
            "concurrency": args.concurrency,
            "first": first,
            "rerun": second,
            "server": counts,
            "saved": saved,
        },
    )


if __name__ == "__main__":
    main()

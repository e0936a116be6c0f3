"""How fast a 10,000-item batch report opens: DOMContentLoaded in headless Chromium.

Builds a synthetic run of N items (default 10,000) in a temporary folder: small input and
output PNGs, and a journal as `oxedit batch` leaves it (90% succeeded, 4% failed, 3%
cancelled, 3% refused before sending), then `report.html` with `oxedit report`'s code, and
opens it from `file://` in the system's Chromium (`/usr/bin/chromium`, driven by Python
Playwright) three times, each in a fresh browser context (nothing cached). Reported: the
build time, the page's size, the thumbnails' mean size, and DOMContentLoaded (the navigation
entry's `domContentLoadedEventEnd`), median of the three.

Run: `python -m benchmarks.report_load [--n 10000] [--json PATH]`

`--screenshot PATH` instead runs the README's sample batch (`oxedit batch
examples/manifest.jsonl` against the embedded local server) and saves a screenshot of its page:
that is `docs/report.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from benchmarks._common import machine, print_table, write_json
from oxedit._bulk.journal import Journal
from oxedit._bulk.requests import EditRequest
from oxedit._cli.report.build import write_html_report
from oxedit._cli.report.thumbs import THUMBS_DIR

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
# Headless and quiet: no GPU, no QUIC, no first-run, sync, update or other background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """The system's headless Chromium, driven by Playwright (never `playwright install`)."""
    from playwright.async_api import async_playwright

    # Chromium puts a Unix socket in its TMPDIR, and a socket path over 107 bytes is fatal:
    # a deep TMPDIR (CI's, say) gets a short one of its own for the browser.
    short = "/tmp" if os.access("/tmp", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="oxr-", dir=short) as tmp:
        async with async_playwright() as driver:
            browser = await driver.chromium.launch(
                executable_path=str(CHROMIUM),
                args=CHROMIUM_ARGS,
                env={**os.environ, "TMPDIR": tmp},
            )
            try:
                yield browser
            finally:
                await browser.close()


def _png(i: int, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (i * 7 % 256, i * 13 % 256, 160)).save(buffer, "PNG")
    return buffer.getvalue()


def synthetic_run(out: Path, n: int) -> None:
    """A run of `n` items as `oxedit batch --out OUT` leaves it: inputs, outputs, journal."""
    inputs = out.parent / "in"
    inputs.mkdir(parents=True)
    out.mkdir(parents=True)
    with Journal(out / ".oxedit-journal.sqlite") as journal:
        for i in range(n):
            image = inputs / f"img{i:05d}.png"
            image.write_bytes(_png(i, (64, 48)))
            request = EditRequest(image=str(image), prompt=f"Make picture {i} black and white")
            key = f"{i:024x}-1"
            journal.sending(key, request.encoded().decode(), at=time.time() - 5)
            kind = i % 100
            if kind < 3:
                journal.rejected(key, request.encoded().decode(), "aspect_ratio='5:1' refused")
                continue
            journal.enqueued(key, f"gen-{i:08d}")
            if kind < 7:
                journal.finished(key, "failed", error="Inference backend error: out of memory")
            elif kind < 10:
                journal.finished(key, "cancelled", error="the generation was cancelled")
            else:
                output = out / f"img{i:05d}.png"
                output.write_bytes(_png(i + 1, (64, 48)))
                journal.costed(key, Decimal("0.03"))
                journal.finished(key, "succeeded", output=str(output))


async def dom_content_loaded(uri: str, repeats: int) -> list[float]:
    """Milliseconds from navigation start to the end of DOMContentLoaded, one load per fresh
    browser context (nothing cached)."""
    loads = []
    async with chromium() as browser:
        for _ in range(repeats):
            context = await browser.new_context(viewport={"width": 1400, "height": 1000})
            try:
                page = await context.new_page()
                await page.goto(uri, wait_until="domcontentloaded")
                entry = await page.evaluate(
                    "performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd"
                )
                loads.append(float(entry))
            finally:
                await context.close()
    return loads


def measure(n: int, repeats: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        started = time.perf_counter()
        synthetic_run(out, n)
        made = time.perf_counter()
        page = write_html_report(out)
        built = time.perf_counter()
        write_html_report(out)  # again: the thumbnails are reused
        rebuilt = time.perf_counter()
        thumbs = [p.stat().st_size for p in (out / THUMBS_DIR).iterdir()]
        loads = asyncio.run(dom_content_loaded(page.resolve().as_uri(), repeats))
        return {
            "n": n,
            "run_seconds": made - started,
            "build_seconds": built - made,
            "rebuild_seconds": rebuilt - built,
            "page_bytes": page.stat().st_size,
            "thumbnails": len(thumbs),
            "thumbnail_mean_bytes": statistics.mean(thumbs) if thumbs else 0,
            "dom_content_loaded_ms": loads,
            "dom_content_loaded_median_ms": statistics.median(loads),
        }


async def _shoot(uri: str, target: str) -> None:
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(uri, wait_until="load")
        await page.wait_for_function("Array.from(document.images).every(i => i.complete)")
        await page.screenshot(path=target, full_page=True)
        await context.close()


def screenshot(target: Path) -> None:
    """The README's sample batch, run from a copy of `examples/` (so the page shows the
    paths a user sees), then a picture of its page, in 256 colours (a smaller file)."""
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(EXAMPLES, Path(tmp) / "examples")
        env = {k: v for k, v in os.environ.items() if k not in ("OXEN_API_KEY", "OXEN_BASE_URL")}
        env["OXEN_CONFIG_DIR"] = tmp  # no key from the `oxen` CLI: the embedded server
        command = [sys.executable, "-m", "oxedit", "batch", "examples/manifest.jsonl"]
        subprocess.run(
            [*command, "--out", "edited"], cwd=tmp, env=env, check=True, capture_output=True
        )
        shot = Path(tmp) / "shot.png"
        asyncio.run(_shoot((Path(tmp) / "edited" / "report.html").as_uri(), str(shot)))
        with Image.open(shot) as image:
            image.convert("RGB").quantize(256).save(target, optimize=True)
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--screenshot", type=Path, help="save the sample batch's page here")
    args = parser.parse_args()
    if args.screenshot:
        screenshot(args.screenshot)
        return
    result = measure(args.n)
    print_table(
        f"report.html of {args.n:,} items, headless Chromium (median of 3 fresh loads)",
        ["items", "build s", "rebuild s", "page MB", "thumb KB", "DOMContentLoaded ms"],
        [
            [
                args.n,
                result["build_seconds"],
                result["rebuild_seconds"],
                result["page_bytes"] / 1e6,
                result["thumbnail_mean_bytes"] / 1e3,
                result["dom_content_loaded_median_ms"],
            ]
        ],
    )
    write_json(args.json, {**result, "machine": machine()})


if __name__ == "__main__":
    main()

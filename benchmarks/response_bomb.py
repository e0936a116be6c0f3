"""Client peak RSS when a JSON route answers with a gzip bomb (issue 20, item 6).

A loopback aiohttp server (this process) answers every request with the same gzip body: about
0.6 MB that inflates to `--inflated-mb` MB of zeros (620 by default, the issue's size). For
each route, a fresh client process with the default settings calls it once and reports what it
raised, how many requests reached the server, and its own peak RSS (`ru_maxrss`). Before the
cap, `GET /api/ai/models/{id}` took the client to 1.9 GB and was retried 5 times.

Run: `python -m benchmarks.response_bomb [--inflated-mb 620] [--json PATH]`
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing.connection
import socket
import sys
import time
import traceback
import zlib
from typing import Any

from aiohttp import web

from benchmarks._common import machine, peak_rss_bytes, print_table, run_in_child, write_json

ROUTES = {
    "GET /api/ai/models/{id}": "model",
    "GET /api/ai/queue/{id}": "get",
    "GET /api/ai/queue (a list)": "list",
}


def bomb(inflated_mb: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1024 * 1024)
    return b"".join(packer.compress(zeros) for _ in range(inflated_mb)) + packer.flush()


def child(conn: multiprocessing.connection.Connection, url: str, call: str) -> None:
    try:
        conn.send(("ok", asyncio.run(_call(url, call))))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


async def _call(url: str, call: str) -> dict[str, Any]:
    import oxedit

    started = time.perf_counter()
    outcome = "returned"
    async with oxedit.Client(api_key="k", base_url=url) as client:
        try:
            if call == "model":
                await client.model("qwen-image-edit")
            elif call == "get":
                await client.get("g1")
            else:
                await client.list()
        except Exception as exc:  # what a caller sees is the point
            outcome = type(exc).__name__
    return {
        "outcome": outcome,
        "seconds": time.perf_counter() - started,
        "peak_rss_mb": peak_rss_bytes() / 1e6,
    }


async def run(inflated_mb: int, routes: dict[str, str] = ROUTES) -> list[dict[str, Any]]:
    body = bomb(inflated_mb)
    hits: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        return web.Response(body=body, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    results = []
    try:
        for route, call in routes.items():
            hits.clear()
            value, _ = await run_in_child(child, (url, call), limit_s=300)
            results.append(
                {"route": route, "gzip_mb": len(body) / 1e6, "requests": len(hits), **value}
            )
    finally:
        await runner.cleanup()
        sock.close()
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inflated-mb", type=int, default=620)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.inflated_mb))
    print_table(
        f"gzip bomb inflating to {args.inflated_mb} MB, default Limits",
        ["route", "gzip MB", "raised", "requests", "seconds", "client peak RSS MB"],
        [
            [r["route"], r["gzip_mb"], r["outcome"], r["requests"], r["seconds"], r["peak_rss_mb"]]
            for r in results
        ],
    )
    write_json(args.json, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main(sys.argv[1:])

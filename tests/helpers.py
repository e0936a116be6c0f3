"""Small helpers shared by the client tests."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from aiohttp import web
from PIL import Image

import oxedit
from oxedit.testing import LocalServer

# Fast reconciliation, so tests with lost events or silent cancellations finish quickly.
FAST = oxedit.ReconcilePolicy(
    stale_after=0.3, interval=0.1, lost_response_grace=0.05, lost_response_window=0.3
)
FAST_RETRY = oxedit.RetryPolicy(max_retries=8, initial=0.01, maximum=0.05, retry_after_max=0.05)


def png(color: tuple[int, int, int] = (200, 30, 30), size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def client_for(server: LocalServer, **kwargs: Any) -> oxedit.Client:
    return oxedit.Client(api_key=server.api_key, base_url=server.url, **kwargs)


async def run_process(*argv: str, env: dict[str, str], cwd: Path | None = None) -> tuple[int, str]:
    """Run a command to its end (killed after 60 s); its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(60):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode()


async def eventually(predicate: Callable[[], bool], *, within: float = 30.0) -> None:
    """Wait until `predicate()` holds (checked every few ms), for state that has no awaitable
    of its own (a server's counters, a client's stats); fails after `within` seconds."""
    async with asyncio.timeout(within):
        while not predicate():  # noqa: ASYNC110 - these counters have no event to await
            await asyncio.sleep(0.005)


async def cli(*argv: str) -> int:
    """Run the `oxedit` command in-process; `main()` runs its own event loop, so it gets a
    thread while the test's server runs in this one."""
    from oxedit._cli.main import main

    return await anyio.to_thread.run_sync(main, list(argv))


async def run_all(run: oxedit.BulkRun) -> list[oxedit.BulkResult]:
    """Every result of a bulk run, in input order."""
    async with run:
        return sorted([result async for result in run], key=lambda r: r.index)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A plain HTTP server on its own loopback socket answering every request with
    `handler`; yields its URL. Handlers still running at the end are cancelled."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    try:
        await web.SockSite(runner, sock).start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


async def interrupt(
    process: asyncio.subprocess.Process, ready: Callable[[], bool], signum: int
) -> bytes:
    """Once `ready()` (polled: another process's state has no awaitable), send `signum`;
    the process's stderr once it exits. It is killed if anything fails meanwhile."""
    try:
        await eventually(ready, within=60)
        process.send_signal(signum)
        async with asyncio.timeout(60):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return stderr

"""Ctrl-C in a script blocked in a `SyncClient` call: a real process, a real SIGINT.

The child prints "ready" once its main thread is blocked inside the call (a watcher thread
sees the call's frame on the main thread's stack), so the signal lands in the call, not
before it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from oxedit.testing import Faults, LocalServer

from .helpers import eventually, interrupt

pytestmark = pytest.mark.anyio

NIGHT = Path(__file__).parent.parent / "examples" / "images" / "night.jpg"

PRELUDE = textwrap.dedent(
    """
    import sys, threading, time
    import oxedit

    def announce_when_blocked_in(function):
        main = threading.main_thread().ident

        def watch():
            while True:
                frame = sys._current_frames().get(main)
                while frame is not None:
                    if frame.f_code.co_name == function and "_sync" in frame.f_code.co_filename:
                        print("ready", flush=True)
                        return
                    frame = frame.f_back
                time.sleep(0.001)  # another thread's stack: nothing to await

        threading.Thread(target=watch, daemon=True).start()

    url, key, image = sys.argv[1:4]
    """
)

RESULT = PRELUDE + textwrap.dedent(
    """
    with oxedit.SyncClient(api_key=key, base_url=url, trust_env=False) as client:
        job = client.submit(prompt="Invert it", image=image)
        print("job", job.id, flush=True)
        announce_when_blocked_in("result")
        job.result()
    """
)

MAP = PRELUDE + textwrap.dedent(
    """
    requests = [{"image": image, "prompt": f"Invert it {i}"} for i in range(8)]
    with oxedit.SyncClient(api_key=key, base_url=url, trust_env=False) as client:
        announce_when_blocked_in("_next")
        for result in client.map(requests, concurrency=3):
            print(result.status, flush=True)
    """
)


async def run_until_interrupted(
    script: str, server: LocalServer, ready: int | None = None
) -> tuple[list[str], str]:
    """Run `script`, wait for its "ready" line (and for `ready` generations on the server),
    send SIGINT; its stdout lines and stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, server.url, server.api_key, str(NIGHT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not lines or lines[-1] != "ready":
                line = await process.stdout.readline()
                assert line, "the script ended before it was ready"
                lines.append(line.decode().strip())
    finally:
        if process.returncode is None and (not lines or lines[-1] != "ready"):
            process.kill()
            await process.wait()
    if ready is not None:
        await eventually(lambda: len(server.generations()) == ready)
    stderr = await interrupt(process, lambda: True, signal.SIGINT)
    rest = await process.stdout.read()
    lines += rest.decode().split()
    return lines, stderr.decode()


async def test_ctrl_c_in_result_interrupts_and_cancels_the_job() -> None:
    async with LocalServer(faults=Faults(latency=600.0)) as server:
        lines, stderr = await run_until_interrupted(RESULT, server)
        (row,) = server.generations()
        assert f"job {row['generation_id']}" in lines
        # It ended long before the generation would have (600 s), and cancelled it.
        assert row["status"] == "cancelled"
    assert "KeyboardInterrupt" in stderr
    assert "Unclosed" not in stderr and "Task was destroyed" not in stderr


async def test_ctrl_c_in_a_batch_stops_it_and_cancels_what_it_sent() -> None:
    async with LocalServer(faults=Faults(latency=600.0)) as server:
        _, stderr = await run_until_interrupted(MAP, server, ready=3)
        rows = server.generations()
        assert len(rows) == 3  # the rest were never sent
        assert {row["status"] for row in rows} == {"cancelled"}
    assert "KeyboardInterrupt" in stderr
    assert "Unclosed" not in stderr and "Task was destroyed" not in stderr


async def test_closing_right_after_a_cancelled_submit_still_cancels_what_it_created() -> None:
    # The root of "Ctrl-C, then the script exits": a submit cancelled with its POST on the
    # wire leaves a search for what it created; closing the client at once must let that search
    # finish (within `Timeouts.total`), not cancel it and leave the generation running.
    faults = Faults(latency=30.0, event_before_response_rate=1.0)
    async with LocalServer(faults=faults) as server:
        async with server.client() as client:
            submit = asyncio.create_task(client.submit(prompt="p", image=str(NIGHT)))
            await eventually(lambda: server.stats.generations_created == 1)
            submit.cancel()
            with pytest.raises(asyncio.CancelledError):
                await submit
        (row,) = server.generations()
        assert row["status"] == "cancelled"

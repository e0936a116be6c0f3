"""`oxedit serve` with fault flags and `--state`, and the CLI's embedded server resuming a
batch killed with SIGKILL. Real processes, real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from oxedit._cli.main import _parser
from oxedit._cli.serve import embedded_state_dir, faults_from_args, is_loopback
from oxedit.testing import DEFAULT_API_KEY, LocalServer

from ..helpers import eventually, png, run_process
from ._helpers import EventReader, edit_body, enqueue, get_row

pytestmark = pytest.mark.anyio

OXEDIT = (sys.executable, "-m", "oxedit")


@asynccontextmanager
async def serving(*flags: str) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    """`oxedit serve --port 0 FLAGS` in a subprocess; its URL and a session for it. Stopped
    with SIGINT (Ctrl-C), which must end it cleanly with status 0."""
    proc = await asyncio.create_subprocess_exec(
        *OXEDIT, "serve", "--port", "0", *flags, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        first = (await proc.stdout.readline()).decode()
        assert first.startswith("oxedit local server: http://"), first
        url = first.rsplit(" ", 1)[1].strip()
        headers = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
        async with aiohttp.ClientSession(base_url=url, headers=headers) as http:
            yield url, http
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await proc.communicate()
        assert proc.returncode == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_serve_fault_flags_take_effect() -> None:
    flags = ("--failure-rate", "1", "--rate-limit-rate", "1", "--retry-after", "3")
    async with (
        serving(*flags, "--seed", "5", "--workers", "2") as (_, http),
        http.post("/api/ai/queue", json=edit_body()) as resp,
    ):
        assert resp.status == 429 and resp.headers["Retry-After"] == "3"


async def test_serve_failure_rate_latency_and_stream_cuts() -> None:
    flags = ("--failure-rate", "1", "--latency", "0.01,0.02", "--cut-streams-after", "1")
    async with serving(*flags) as (_, http), http.get("/api/events") as resp:
        events = EventReader(resp)
        (gen_id,) = await enqueue(http, edit_body())
        event = await events.completion()
        assert event["generation_id"] == gen_id and event["status"] == "failed"
        assert await events.frame() == b""  # cut after one event


async def test_serve_drop_event_rate_and_state_survive_a_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    async with serving("--state", state, "--drop-event-rate", "1") as (_, http):
        (gen_id,) = await enqueue(http, edit_body())
    async with serving("--state", state) as (_, http):
        assert (await get_row(http, gen_id))["generation_id"] == gen_id  # kept across runs
    assert (tmp_path / "state" / "generations.sqlite").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--failure-rate", "1.5", "--failure-rate '1.5' is out of range"),
        ("--drop-event-rate", "often", "--drop-event-rate 'often' is not a number"),
        ("--latency", "2,1", "--latency '2,1' has HIGH below LOW"),
        ("--latency", "inf", "--latency 'inf' is out of range"),
        ("--cut-streams-after", "0", "--cut-streams-after '0' is out of range"),
        ("--workers", "0", "--workers '0' is out of range"),
        ("--port", "http", "--port 'http' is not a whole number"),
        ("--port", "70000", "--port '70000' is out of range"),
    ],
)
async def test_serve_bad_values_exit_2_with_one_line(flag: str, value: str, message: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *OXEDIT,
        "serve",
        flag,
        value,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2 and out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_faults_from_args_keeps_defaults_for_flags_not_given() -> None:
    args = _parser().parse_args(["serve", "--latency", "0.5", "--seed", "3"])
    faults = faults_from_args(args)
    assert faults.latency == (0.5, 0.5) and faults.seed == 3
    assert faults.failure_rate == 0.0 and faults.cut_stream_after_events is None


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["batch", "in", "--out", "o"], Path("o") / ".oxedit-local-server"),
        (["batch", "in", "--out", "o", "--journal", "j/x.sqlite"], Path("j/.oxedit-local-server")),
        (["edit", "a.png", "p"], None),
        (["status", "abc"], None),
        (["models"], None),
    ],
)
def test_embedded_state_dir_is_beside_the_journal(argv: list[str], expected: Path | None) -> None:
    assert embedded_state_dir(_parser().parse_args(argv)) == expected


@pytest.mark.slow
async def test_embedded_batch_killed_with_sigkill_resumes_on_the_rerun(tmp_path: Path) -> None:
    n = 40
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    for i in range(n):
        (images / f"p{i:02d}.png").write_bytes(png((i * 6, 90, 160)))
    # No OXEN_API_KEY / OXEN_BASE_URL (the conftest removed them): the embedded server.
    env = dict(os.environ)
    command = [
        *OXEDIT,
        "--local-latency",
        "0.1,0.3",
        "batch",
        str(images),
        "--prompt",
        "posterize",
        "--out",
        str(out),
        "--concurrency",
        "4",
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        # A count, not a time: polled, because another process's folder cannot be awaited.
        await eventually(lambda: len(list(out.glob("*.png"))) >= n * 3 // 10, within=60)
        proc.send_signal(signal.SIGKILL)
        assert await proc.wait() == -signal.SIGKILL
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    done_before = len(list(out.glob("*.png")))
    assert done_before < n  # killed mid-run

    code, output = await run_process(*command, env=env)
    assert code == 0, output[-3000:]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(f"p{i:02d}.png" for i in range(n))
    async with LocalServer(state_dir=out / ".oxedit-local-server") as server:
        rows = server.generations()
    assert len(rows) == n  # one generation per item across both runs
    assert {row["status"] for row in rows} == {"succeeded"}


@pytest.mark.parametrize(
    ("host", "flags"),
    [("0.0.0.0", ()), ("192.0.2.7", ()), ("::", ("--api-key", DEFAULT_API_KEY))],
)
async def test_serve_refuses_a_non_loopback_host_without_its_own_key(
    host: str, flags: tuple[str, ...]
) -> None:
    # The default key is published in the README: a server open to the network with it would
    # let anyone run edits, whose workers fetch any URL named (internal addresses included).
    proc = await asyncio.create_subprocess_exec(
        *OXEDIT, "serve", "--host", host, "--port", "0", *flags,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 2 and out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1 and f"--host {host!r}" in lines[0] and "--api-key" in lines[0]


async def test_serve_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = await asyncio.create_subprocess_exec(
            *OXEDIT, "serve", "--port", port,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    assert proc.returncode == 2 and out == b""
    lines = err.decode().splitlines()
    assert len(lines) == 1, lines
    assert f"port {port}" in lines[0] and "--port" in lines[0] and "in use" in lines[0]


def test_loopback_hosts_need_no_key() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "", "::", "10.0.0.1", "myhost"):
        assert not is_loopback(host), host

"""The hot parts alone, each against the alternatives considered.

1. SSE decoding, pure: oxedit's chunk decoder (`feed_data`, what the listener calls: runs of
   completion frames in the usual shape cut apart in C; and `feed`, its line parser alone) vs
   httpx-sse's line decoder (fed the lines its own `SSELineDecoder` makes), events/s on one
   in-memory stream in 16 KiB chunks (cut mid-frame, a keep-alive every 50 events).
2. SSE over a real loopback socket, whole stacks: aiohttp + oxedit's decoder (what oxedit
   ships) vs httpx + httpx-sse `aiter_sse()` vs aiohttp `readline()` + httpx-sse's decoder;
   client CPU to receive and decode N events, server in another process.
3. Event JSON decoding: a msgspec Struct decoder vs `json.loads` + dict lookups.
4. Enqueue requests/s: `POST /api/ai/queue` through oxedit's transport vs the same aiohttp
   used raw, against the local server in another process.

Run: `python -m benchmarks.hot_paths [--events 100000] [--repeat 3] [--json out.json]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import time
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks._common import Stopwatch, cpu_seconds, median, print_table, spread, write_json
from oxedit._http.sse import SSEDecoder
from oxedit._models import event_decoder

EVENT = (
    b"event: media_generation_completed\n"
    b'data: {"generation_id":"bb8f5eb7-361e-4e13-ab73-67457bc8057e","status":"succeeded",'
    b'"media_type":"image","model":"qwen-image-edit",'
    b'"url":"https://hub.oxen.ai/api/repos/ox/x/file/main/bb8f5eb7.png?sig=abcdef0123456789"}\n\n'
)
KEEPALIVE = b": keep-alive\n\n"
COMPLETED = "media_generation_completed"


def make_stream(n: int) -> bytes:
    return (EVENT * 50 + KEEPALIVE) * (n // 50)


def chunks_of(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# -- 1. pure decoding ------------------------------------------------------------------------


def decode_oxedit(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    return sum(len(decoder.feed_data(c, COMPLETED)) for c in chunks)


def decode_oxedit_lines(chunks: list[bytes]) -> int:
    decoder = SSEDecoder()
    return sum(1 for c in chunks for e in decoder.feed(c) if e.event == COMPLETED)


def decode_httpx_sse(chunks: list[bytes]) -> int:
    from httpx_sse._decoders import SSEDecoder as HxDecoder
    from httpx_sse._decoders import SSELineDecoder

    lines, decoder, n = SSELineDecoder(), HxDecoder(), 0
    for chunk in chunks:
        for line in lines.decode(chunk.decode("utf-8")):
            if decoder.decode(line) is not None:
                n += 1
    return n


# -- 2. whole stacks over a socket -----------------------------------------------------------


def _serve(port: int, n: int) -> None:
    from aiohttp import web

    payload = make_stream(n)

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        for piece in chunks_of(payload, 64 * 1024):
            await resp.write(piece)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/events", events)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def stack_oxedit(url: str) -> int:
    import aiohttp

    n = 0
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        decoder = SSEDecoder()
        async for chunk in resp.content.iter_any():
            for data in decoder.feed_data(chunk, COMPLETED):
                event_decoder.decode(data)
                n += 1
    return n


async def stack_httpx_sse(url: str) -> int:
    import httpx
    from httpx_sse import aconnect_sse

    n = 0
    async with (
        httpx.AsyncClient(timeout=None) as client,
        aconnect_sse(client, "GET", url) as source,
    ):
        async for event in source.aiter_sse():
            if event.event == "media_generation_completed":
                event_decoder.decode(event.data)
                n += 1
    return n


async def stack_aiohttp_lines_httpx_decoder(url: str) -> int:
    import aiohttp
    from httpx_sse._decoders import SSEDecoder as HxDecoder

    n = 0
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        decoder = HxDecoder()
        while line := await resp.content.readline():
            event = decoder.decode(line.decode("utf-8").rstrip("\r\n"))
            if event is not None and event.event == "media_generation_completed":
                event_decoder.decode(event.data)
                n += 1
    return n


async def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError("benchmark server did not start")


def bench_stacks(n: int, repeat: int) -> list[dict[str, Any]]:
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port, n))
    server.start()
    stacks: dict[str, Callable[[str], Any]] = {
        "aiohttp + oxedit SSEDecoder (shipped)": stack_oxedit,
        "httpx + httpx-sse aiter_sse": stack_httpx_sse,
        "aiohttp readline + httpx-sse decoder": stack_aiohttp_lines_httpx_decoder,
    }
    results: dict[str, list[float]] = {name: [] for name in stacks}
    try:
        asyncio.run(wait_listening(port))
        for _ in range(repeat):
            for name, stack in stacks.items():
                cpu0 = cpu_seconds()
                got = asyncio.run(stack(f"http://127.0.0.1:{port}/events"))
                results[name].append(cpu_seconds() - cpu0)
                assert got == n // 50 * 50, (name, got)
    finally:
        server.terminate()
        server.join()
    base = median(results["aiohttp + oxedit SSEDecoder (shipped)"])
    return [
        {
            "stack": name,
            "cpu_s": median(v),
            "noise": spread(v),
            "ratio": median(v) / base,
            "events_per_cpu_s": n / median(v),
        }
        for name, v in results.items()
    ]


# -- 3. JSON ---------------------------------------------------------------------------------


def bench_json(n: int, repeat: int) -> list[dict[str, Any]]:
    payload = EVENT.split(b"data: ", 1)[1].rstrip(b"\n")

    def with_msgspec() -> None:
        for _ in range(n):
            e = event_decoder.decode(payload)
            _ = (e.generation_id, e.status, e.url)

    def with_json() -> None:
        for _ in range(n):
            d = json.loads(payload)
            _ = (d["generation_id"], d["status"], d.get("url"))

    def with_msgspec_dict() -> None:
        decode = msgspec.json.Decoder().decode
        for _ in range(n):
            d = decode(payload)
            _ = (d["generation_id"], d["status"], d.get("url"))

    return compare_cpu(
        [
            ("msgspec Struct (shipped)", with_msgspec),
            ("msgspec dict", with_msgspec_dict),
            ("json.loads", with_json),
        ],
        repeat,
        events=lambda _: n,
    )


def bench_decoders(n: int, repeat: int) -> list[dict[str, Any]]:
    chunks = chunks_of(make_stream(n), 16 * 1024)
    return compare_cpu(
        [
            ("oxedit SSEDecoder.feed_data (shipped)", lambda: decode_oxedit(chunks)),
            ("oxedit SSEDecoder.feed (its line parser)", lambda: decode_oxedit_lines(chunks)),
            ("httpx-sse SSELineDecoder + SSEDecoder", lambda: decode_httpx_sse(chunks)),
        ],
        repeat,
        events=lambda count: count,
    )


def compare_cpu(
    variants: list[tuple[str, Callable[[], Any]]],
    repeat: int,
    *,
    events: Callable[[Any], int],
) -> list[dict[str, Any]]:
    """Median CPU of each variant over `repeat` runs, and its ratio to the first (shipped)
    one; `events(result)` is how many events one run handled."""
    rows = []
    for name, fn in variants:
        times = []
        for _ in range(repeat):
            with Stopwatch() as sw:
                result = fn()
            times.append(sw.cpu)
        count = events(result)
        rows.append(
            {
                "decoder": name,
                "events": count,
                "cpu_s": median(times),
                "noise": spread(times),
                "events_per_s": count / median(times),
            }
        )
    base = rows[0]["cpu_s"]
    for row in rows:
        row["ratio"] = row["cpu_s"] / base
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--enqueues", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    out: dict[str, Any] = {"events": args.events, "repeat": args.repeat}

    out["sse_pure"] = rows = bench_decoders(args.events, args.repeat)
    print_table(
        f"1. SSE decoding in memory, {args.events:,} events (median of {args.repeat})",
        ["decoder", "CPU s", "events/s", "x shipped", "noise"],
        [[r["decoder"], r["cpu_s"], r["events_per_s"], r["ratio"], r["noise"]] for r in rows],
    )

    out["sse_stacks"] = rows = bench_stacks(args.events, args.repeat)
    print_table(
        f"2. SSE over loopback + msgspec decode, {args.events:,} events, client CPU",
        ["stack", "CPU s", "events/CPU s", "x shipped", "noise"],
        [[r["stack"], r["cpu_s"], r["events_per_cpu_s"], r["ratio"], r["noise"]] for r in rows],
    )

    out["json"] = rows = bench_json(args.events, args.repeat)
    print_table(
        f"3. Event JSON decoding, {args.events:,} events",
        ["decoder", "CPU s", "events/s", "x shipped", "noise"],
        [[r["decoder"], r["cpu_s"], r["events_per_s"], r["ratio"], r["noise"]] for r in rows],
    )

    try:
        from benchmarks._enqueue_rate import bench_enqueue
    except ImportError:
        pass
    else:
        out["enqueue"] = rows = bench_enqueue(args.enqueues, args.repeat)
        print_table(
            f"4. Enqueue, {args.enqueues:,} POSTs 1,000 at a time, local server process",
            ["client", "req/s", "client CPU s", "x raw CPU", "noise"],
            [[r["client"], r["req_per_s"], r["cpu_s"], r["ratio"], r["noise"]] for r in rows],
        )
    write_json(args.json, out)


if __name__ == "__main__":
    main()

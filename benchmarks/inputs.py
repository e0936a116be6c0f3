"""Photo-size inputs: data URIs vs `upload_repo`, with the event stream cut twice mid-run.

N edits (`client.map`, its default concurrency of 256) over D distinct photo-like PNGs of ~1.4 MB
each (a blurred scene under noise, generated from a seed and cached in the temp folder), while
the local server, in its own process, cuts every event stream when a third and when two thirds of
the jobs have finished (`LocalServer.drop_event_streams()`). Two strategies, each in a fresh
client process against a fresh server process:

- `data-uri`: the default: every enqueue body carries its image inline, and the API echoes it
  in every row it returns;
- `upload-repo`: `Client(upload_repo="ox/inputs")`: each distinct image is uploaded once to the
  server's repository file API, and the jobs send its URL.

Measured in the client process:

- bytes sent and received **at the socket level** (every byte the client's TCP sockets wrote
  or read: request and response headers, bodies, the uploads and the event stream; results are
  not downloaded, so downloads are excluded), next to `ClientStats.bytes_sent/received` (API
  bodies only);
- wall time (the whole `map`, uploads included), client CPU, peak RSS (`ru_maxrss`);
- reconciled jobs (ids passed to the listener's reconciliation, a job counted each time), and
  the bytes received by the reconciliation's requests (`GET /api/ai/queue`, `GET
  /api/ai/queue/{id}`: body + headers as received) per reconciled job.

Targets with `upload_repo`: bytes sent within 1.1x of the distinct images' total size, and
bytes received per reconciled job under 2 KB.

The model is `qwen-image-edit-plus` with `output_format="jpg"`: the local server's PNG encoder
spends ~0.26 s per 1024x768 output, JPEG ~0.04 s, and the server shares the 2 cores with the
client. Its rows echo `input_image` as an array, like every multi-image model.

    python -m benchmarks.inputs [--n 1000] [--distinct 100] [--repeat 1] \
        [--json benchmarks/results/inputs.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import multiprocessing.connection
import random
import socket
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from ._common import machine, print_table, spread, write_json

STRATEGIES = ("data-uri", "upload-repo")
UPLOAD_REPO = "ox/inputs"
MODEL = "qwen-image-edit-plus"
SIZE = (1024, 768)  # 4:3, so the server pads nothing
NOISE = 0.065  # share of noise blended in: ~1.4 MB per PNG at 1024x768
DEFAULT_CONCURRENCY = 256  # `client.map`'s default
TARGET_SENT_RATIO = 1.1
TARGET_RECONCILE_BYTES = 2048
_RECONCILE_PATH = "/api/ai/queue"
_HISTORY_PATH = "/api/ai/generations/"


# -- the images ---------------------------------------------------------------------------------


def photo(seed: int, size: tuple[int, int] = SIZE, noise: float = NOISE) -> bytes:
    """A deterministic photo-like PNG: a coloured gradient with blurred shapes, under a veil of
    noise (what keeps a real photo from compressing well)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageOps

    rng = random.Random(seed)
    w, h = size

    def colour() -> tuple[int, int, int]:
        return (rng.randrange(256), rng.randrange(256), rng.randrange(256))

    scene = ImageOps.colorize(Image.linear_gradient("L").resize(size), colour(), colour())
    draw = ImageDraw.Draw(scene)
    for _ in range(12):
        x, y, r = rng.randrange(w), rng.randrange(h), rng.randrange(20, 200)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour())
    scene = scene.filter(ImageFilter.GaussianBlur(6))
    veil = Image.frombytes("RGB", size, rng.randbytes(w * h * 3))
    buf = io.BytesIO()
    Image.blend(scene, veil, noise).save(buf, "PNG")
    return buf.getvalue()


def images(distinct: int, folder: Path | None = None) -> list[Path]:
    """`distinct` photos, generated once and cached (by their parameters) in `folder`, by
    default the temp folder."""
    tag = hashlib.sha256(repr((SIZE, NOISE, 1)).encode()).hexdigest()[:12]
    folder = folder or Path(tempfile.gettempdir()) / f"oxedit-bench-inputs-{tag}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(distinct):
        path = folder / f"photo-{i:04d}.png"
        if not path.exists():
            partial = path.with_suffix(".tmp")
            partial.write_bytes(photo(i))
            partial.replace(path)
        paths.append(path)
    return paths


# -- the server process -------------------------------------------------------------------------


def _server_child(
    conn: multiprocessing.connection.Connection,
    latency: tuple[float, float],
    workers: int,
    cut_at: list[int],
) -> None:
    """A `LocalServer` that cuts every event stream once as many generations as each of
    `cut_at` have finished; answers `"stats"`, stops on `"stop"`."""
    from oxedit.testing import Faults, LocalServer

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        cuts: list[dict[str, float]] = []
        faults = Faults(latency=latency, seed=1)
        async with LocalServer(api_key="bench-key", faults=faults, workers=workers) as server:
            stats = server.stats

            def count(*statuses: str) -> int:
                rows = server._api.generations.values()  # type: ignore[union-attr]
                return sum(gen.status in statuses for gen in rows)

            async def cutter() -> None:
                todo = list(cut_at)
                while todo:
                    await asyncio.sleep(0.05)
                    if count("succeeded", "failed", "cancelled") >= todo[0]:
                        todo.pop(0)
                        active = count("queued", "processing")
                        await server.drop_event_streams()
                        cuts.append({"at": time.time(), "active": active})

            task = asyncio.create_task(cutter())

            def on_message() -> None:
                try:
                    message = conn.recv()
                except EOFError:
                    message = "stop"
                if message == "stats":
                    conn.send(
                        {
                            "requests_by_route": dict(stats.requests_by_route),
                            "response_bytes_by_route": dict(stats.response_bytes_by_route),
                            "generations_created": stats.generations_created,
                            "events_sent": stats.events_sent,
                            "event_connections": stats.event_connections,
                            "files_uploaded": stats.files_uploaded,
                            "repos_created": stats.repos_created,
                            "cuts": list(cuts),
                        }
                    )
                elif message == "stop":
                    loop.remove_reader(conn.fileno())
                    stop.set()

            loop.add_reader(conn.fileno(), on_message)
            conn.send((server.url, server.api_key))
            await stop.wait()
            task.cancel()
        conn.send("stopped")

    asyncio.run(serve())


class _Server:
    def __init__(self, latency: tuple[float, float], workers: int, cut_at: list[int]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_server_child, args=(child, latency, workers, cut_at), name="oxedit-bench-server"
        )
        self._proc.start()
        child.close()
        if not self._conn.poll(30.0):
            self.stop()
            raise RuntimeError("the local server did not start within 30 s")
        self.url, self.api_key = self._conn.recv()

    def stats(self) -> dict[str, Any]:
        self._conn.send("stats")
        if not self._conn.poll(60.0):
            raise RuntimeError("the local server did not answer a stats request")
        stats: dict[str, Any] = self._conn.recv()
        return stats

    def stop(self) -> None:
        try:
            self._conn.send("stop")
            if self._conn.poll(30.0):
                self._conn.recv()
        except (BrokenPipeError, EOFError, OSError):
            pass
        self._proc.join(30.0)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._conn.close()


# -- the client process -------------------------------------------------------------------------


class _Wire:
    """Bytes the process's TCP sockets sent and received (headers, bodies, the event stream)."""

    sent = 0
    received = 0

    @classmethod
    def install(cls) -> None:
        """Count at `socket.socket`: asyncio's transports call these methods for every write
        and read. Only in the benchmark's own child process."""
        base = socket.socket.__mro__[1]  # `_socket.socket`, the C methods

        def send(self: socket.socket, data: Any, *args: Any) -> int:
            n: int = base.send(self, data, *args)
            cls.sent += n
            return n

        def sendall(self: socket.socket, data: Any, *args: Any) -> None:
            base.sendall(self, data, *args)
            cls.sent += memoryview(data).nbytes

        def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
            n: int = base.sendmsg(self, buffers, *args)
            cls.sent += n
            return n

        def recv(self: socket.socket, size: int, *args: Any) -> bytes:
            data: bytes = base.recv(self, size, *args)
            cls.received += len(data)
            return data

        def recv_into(self: socket.socket, buffer: Any, *args: Any) -> int:
            n: int = base.recv_into(self, buffer, *args)
            cls.received += n
            return n

        for name, fn in (
            ("send", send),
            ("sendall", sendall),
            ("sendmsg", sendmsg),
            ("recv", recv),
            ("recv_into", recv_into),
        ):
            setattr(socket.socket, name, fn)


class _Reconciled:
    """What the listener's reconciliation did: ids checked, and bytes its requests received."""

    calls = 0
    ids = 0
    responses = 0
    bytes = 0
    body_bytes = 0
    history_bytes = 0  # `GET /api/ai/generations/{id}`: each item's cost, read as it ends

    @classmethod
    def install(cls) -> None:
        from oxedit import _listener, _transport

        reconcile = _listener.Listener.reconcile
        request = _transport.Transport.request

        async def counted_reconcile(self: Any, ids: set[str]) -> None:
            cls.calls += 1
            cls.ids += len(ids)
            await reconcile(self, ids)

        async def counted_request(self: Any, method: str, path: str, **kwargs: Any) -> Any:
            resp = await request(self, method, path, **kwargs)
            # As received: the status line, each header line, the blank line, the body.
            head = len(f"HTTP/1.1 {resp.status} OK\r\n\r\n") + sum(
                len(k) + len(v) + 4 for k, v in resp.headers.items()
            )
            if method == "GET" and path.startswith(_HISTORY_PATH):
                cls.history_bytes += head + len(resp.body)
            if method == "GET" and path.startswith(_RECONCILE_PATH):
                cls.responses += 1
                cls.bytes += head + len(resp.body)
                cls.body_bytes += len(resp.body)
            return resp

        _listener.Listener.reconcile = counted_reconcile  # type: ignore[method-assign]
        _transport.Transport.request = counted_request  # type: ignore[method-assign]


async def run_client(
    url: str,
    api_key: str,
    paths: list[str],
    n: int,
    strategy: str,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> dict[str, Any]:
    """N edits over `paths` (job i uses image i mod len(paths)) through `client.map`; the
    measurements of the client side."""
    import oxedit
    from oxedit._inputs import LargeInlineImageWarning

    from ._common import cpu_seconds

    upload_repo = UPLOAD_REPO if strategy == "upload-repo" else None
    requests = [
        oxedit.EditRequest(
            image=paths[i % len(paths)],
            prompt=f"mirror it, take {i // len(paths) + 1}",
            model=MODEL,
            params={"aspect_ratio": "4:3", "output_format": "jpg"},
        )
        for i in range(n)
    ]
    statuses: dict[str, int] = {}
    first_error = None
    sent0, received0, cpu0 = _Wire.sent, _Wire.received, cpu_seconds()
    with warnings.catch_warnings(record=True) as caught:
        # As a user sees it: the default filter (once per place of warning).
        warnings.simplefilter("default", LargeInlineImageWarning)
        started = time.perf_counter()
        async with oxedit.Client(api_key=api_key, base_url=url, upload_repo=upload_repo) as client:
            async with client.map(requests, concurrency=concurrency) as run:
                async for result in run:
                    statuses[result.status] = statuses.get(result.status, 0) + 1
                    if result.status != "succeeded" and first_error is None:
                        first_error = str(result.error)
            wall = time.perf_counter() - started
            stats = client.stats
            uploads = client.upload_stats
    return {
        "strategy": strategy,
        "wall_s": wall,
        "cpu_s": cpu_seconds() - cpu0,
        "statuses": statuses,
        "first_error": first_error,
        "wire_sent": _Wire.sent - sent0,
        "wire_received": _Wire.received - received0,
        "api_body_sent": stats.bytes_sent,
        "api_body_received": stats.bytes_received,
        "requests": dict(stats.requests),
        "poll_requests": stats.poll_requests,
        "event_connections": stats.event_connections,
        "events": stats.events,
        "reconcile_calls": _Reconciled.calls,
        "reconciled_jobs": _Reconciled.ids,
        "reconcile_responses": _Reconciled.responses,
        "reconcile_bytes": _Reconciled.bytes,
        "reconcile_body_bytes": _Reconciled.body_bytes,
        "history_bytes": _Reconciled.history_bytes,
        "uploaded": uploads.uploaded if uploads else 0,
        "upload_skipped": uploads.skipped if uploads else 0,
        "bytes_uploaded": uploads.bytes_uploaded if uploads else 0,
        "large_inline_warnings": sum(
            issubclass(w.category, LargeInlineImageWarning) for w in caught
        ),
    }


def _client_child(
    conn: Any, url: str, api_key: str, paths: list[str], n: int, kind: str, concurrency: int
) -> None:
    try:
        _Wire.install()
        _Reconciled.install()
        result = asyncio.run(run_client(url, api_key, paths, n, kind, concurrency))
        from ._common import peak_rss_bytes

        result["peak_rss_mb"] = peak_rss_bytes() / 1e6
        conn.send(("ok", result))
    except BaseException:
        conn.send(("error", traceback.format_exc()))


# -- one run, and the table ---------------------------------------------------------------------


async def run_once(
    strategy: str,
    paths: list[Path],
    n: int,
    *,
    cuts: int = 2,
    concurrency: int = DEFAULT_CONCURRENCY,
    latency: tuple[float, float] = (1.0, 2.0),
    limit_s: float = 900.0,
) -> dict[str, Any]:
    """One strategy in a fresh client process against a fresh server process."""
    from ._common import run_in_child

    cut_at = [n * (k + 1) // (cuts + 1) for k in range(cuts)]
    server = _Server(latency, workers=max(n, 1), cut_at=cut_at)
    try:
        result, _ = await run_in_child(
            _client_child,
            (server.url, server.api_key, [str(p) for p in paths], n, strategy, concurrency),
            limit_s=limit_s,
        )
        served = server.stats()
    finally:
        server.stop()
    distinct = len({str(p) for p in paths[: min(n, len(paths))]})
    distinct_bytes = sum(p.stat().st_size for p in paths[:distinct])
    reconciled = result["reconciled_jobs"]
    return {
        **result,
        "n": n,
        "distinct": distinct,
        "distinct_bytes": distinct_bytes,
        "sent_ratio": result["wire_sent"] / distinct_bytes,
        "reconcile_bytes_per_job": result["reconcile_bytes"] / reconciled if reconciled else 0.0,
        "cuts": len(served["cuts"]),
        "server": served,
    }


_PER_RUN = (
    "wall_s",
    "cpu_s",
    "peak_rss_mb",
    "wire_sent",
    "wire_received",
    "reconciled_jobs",
    "reconcile_bytes_per_job",
    "history_bytes",
)


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median wall time, whole (its numbers belong together: how many jobs a cut
    caught pending varies from run to run), with every run's key numbers and the noise of
    wall time."""
    out = dict(sorted(rows, key=lambda r: float(r["wall_s"]))[len(rows) // 2])
    out["noise_wall"] = spread([r["wall_s"] for r in rows])
    out["runs"] = len(rows)
    out["repeats"] = [{k: r[k] for k in _PER_RUN} for r in rows]
    return out


def targets(rows: list[dict[str, Any]]) -> dict[str, bool]:
    """Whether every run met each target."""
    return {
        "sent_within_1.1x": all(r["sent_ratio"] <= TARGET_SENT_RATIO for r in rows),
        "reconcile_under_2kb": all(
            0 < r["reconcile_bytes_per_job"] < TARGET_RECONCILE_BYTES for r in rows
        ),
    }


COLUMNS = [
    "strategy",
    "wall s",
    "noise wall",
    "sent MB",
    "sent / distinct",
    "received MB",
    "of which reconciling / history MB",
    "API bodies sent/recv MB",
    "peak RSS MB",
    "CPU s",
    "reconciled jobs",
    "recv B / reconciled job",
    "pending at cuts",
    "succeeded",
]


def table_row(row: dict[str, Any]) -> list[Any]:
    return [
        row["strategy"],
        round(row["wall_s"], 1),
        row["noise_wall"],
        round(row["wire_sent"] / 1e6, 1),
        f"{row['sent_ratio']:.3f}x",
        round(row["wire_received"] / 1e6, 1),
        f"{row['reconcile_bytes'] / 1e6:.1f} / {row['history_bytes'] / 1e6:.1f}",
        f"{row['api_body_sent'] / 1e6:.1f} / {row['api_body_received'] / 1e6:.1f}",
        round(row["peak_rss_mb"]),
        round(row["cpu_s"], 1),
        int(row["reconciled_jobs"]),
        round(row["reconcile_bytes_per_job"]),
        " / ".join(str(c["active"]) for c in row["server"]["cuts"]),
        f"{row['statuses'].get('succeeded', 0)} / {row['n']}",
    ]


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    paths = images(args.distinct)
    rows = []
    for strategy in args.strategies:
        runs = []
        for _ in range(args.repeat):
            runs.append(
                await run_once(
                    strategy, paths, args.n, cuts=args.cuts, concurrency=args.concurrency
                )
            )
            print(f"{strategy}: {runs[-1]['wall_s']:.1f} s", flush=True)
        row = aggregate(runs)
        row["targets"] = targets(runs) if strategy == "upload-repo" else {}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="jobs (default 1000)")
    parser.add_argument("--distinct", type=int, default=100, help="distinct images (100)")
    parser.add_argument("--cuts", type=int, default=2, help="event stream cuts (2)")
    parser.add_argument(
        "--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="client.map's (256)"
    )
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    rows = asyncio.run(main_async(args))
    print_table(
        f"inputs: {args.n} jobs over {args.distinct} distinct ~1.4 MB PNGs, "
        f"{args.cuts} stream cuts",
        COLUMNS,
        [table_row(r) for r in rows],
    )
    for row in rows:
        ranges = ", ".join(
            f"{k} {min(r[k] for r in row['repeats']):,.0f}-{max(r[k] for r in row['repeats']):,.0f}"
            for k in ("wall_s", "peak_rss_mb", "reconciled_jobs", "reconcile_bytes_per_job")
        )
        print(f"{row['strategy']}, {row['runs']} run(s): {ranges}")
        if row["targets"]:
            print(f"{row['strategy']} targets (every run): {row['targets']}")
    if args.json:
        write_json(
            args.json,
            {
                "machine": machine(),
                "n": args.n,
                "distinct": args.distinct,
                "cuts": args.cuts,
                "concurrency": args.concurrency,
                "model": MODEL,
                "results": rows,
            },
        )


if __name__ == "__main__":
    main()

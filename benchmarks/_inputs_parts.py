"""The parts of `inputs` that are not the run itself: the photos, the server process (which cuts
the event streams) and the client process's byte counters.

`_server_child` is the server process's entry point, importable at module level for
`multiprocessing`'s spawn.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import multiprocessing.connection
import random
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

SIZE = (1024, 768)  # 4:3, so the server pads nothing
NOISE = 0.065  # share of noise blended in: ~1.4 MB per PNG at 1024x768
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


# -- the client process's counters --------------------------------------------------------------


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
        from oxedit._engine import reconciler as _reconciler
        from oxedit._http import transport as _transport

        reconcile = _reconciler.Reconciler.reconcile
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

        _reconciler.Reconciler.reconcile = counted_reconcile  # type: ignore[method-assign]
        _transport.Transport.request = counted_request  # type: ignore[method-assign]

"""A `LocalServer` in its own process, so that its CPU never counts as the client's.

The child is started with the `spawn` method (a fresh interpreter, nothing inherited from the
benchmark) and talks to the parent over a pipe: it sends its URL and API key once it listens,
answers `"stats"` with its request counters, and stops cleanly on `"stop"` (event streams
ended, in-flight requests finished, workers stopped).

Example:
    ```python
    with ServerProcess(latency=("uniform", 1.0, 3.0), workers=10_000) as server:
        ...  # server.url, server.api_key
        print(server.stats()["requests_by_route"])
    ```
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
from types import TracebackType
from typing import Any, Self

import psutil

__all__ = ["LatencySpec", "ServerProcess", "describe_latency"]

#: A latency distribution that survives pickling (a lambda would not):
#: seconds, `("uniform", low, high)`, or `("lognormal", mu, sigma)` (of the underlying normal).
LatencySpec = float | tuple[str, float, float]

_START_TIMEOUT = 30.0


def describe_latency(spec: LatencySpec) -> str:
    if isinstance(spec, int | float):
        return f"fixed {spec:g} s"
    kind, a, b = spec
    if kind == "uniform":
        return f"uniform {a:g}-{b:g} s"
    return f"lognormal(mu={a:g}, sigma={b:g}) s"


def _faults_latency(spec: LatencySpec) -> Any:
    if isinstance(spec, int | float):
        return float(spec)
    kind, a, b = spec
    if kind == "uniform":
        return (float(a), float(b))
    if kind == "lognormal":
        return lambda rng: rng.lognormvariate(a, b)
    raise ValueError(f"unknown latency distribution {kind!r}")


def _child(conn: multiprocessing.connection.Connection, latency: LatencySpec, workers: int) -> None:
    from oxedit.testing import Faults, LocalServer

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        faults = Faults(latency=_faults_latency(latency), stamp_events=True, seed=1)
        async with LocalServer(api_key="bench-key", faults=faults, workers=workers) as server:

            def on_message() -> None:
                try:
                    message = conn.recv()
                except EOFError:  # the parent died: stop rather than linger
                    message = "stop"
                if message == "stats":
                    s = server.stats
                    conn.send(
                        {
                            "requests_by_route": dict(s.requests_by_route),
                            "generations_created": s.generations_created,
                            "events_sent": s.events_sent,
                            "event_connections": s.event_connections,
                            "open_event_streams": s.open_event_streams,
                        }
                    )
                elif message == "stop":
                    loop.remove_reader(conn.fileno())
                    stop.set()

            loop.add_reader(conn.fileno(), on_message)
            conn.send((server.url, server.api_key))
            await stop.wait()
        conn.send("stopped")

    asyncio.run(serve())


class ServerProcess:
    """Start a `LocalServer` (with `Faults(stamp_events=True)`) in a child process.

    Args:
        latency: Job latency distribution (see `LatencySpec`).
        workers: The server's concurrent generations; the rest wait `queued`.
    """

    def __init__(self, *, latency: LatencySpec = 0.0, workers: int = 10_000) -> None:
        self.latency = latency
        self.workers = workers
        self.url = ""
        self.api_key = ""
        self._conn: multiprocessing.connection.Connection | None = None
        self._proc: Any = None
        self._ps: psutil.Process | None = None

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_child, args=(child, self.latency, self.workers), name="oxedit-bench-server"
        )
        self._proc.start()
        child.close()
        self._conn = parent
        if not parent.poll(_START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the local server did not start within {_START_TIMEOUT:g} s")
        self.url, self.api_key = parent.recv()
        self._ps = psutil.Process(self._proc.pid)

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far."""
        assert self._ps is not None
        times = self._ps.cpu_times()
        return float(times.user + times.system)

    def stats(self) -> dict[str, Any]:
        """The server's counters (`ServerStats`) as a dict."""
        assert self._conn is not None
        self._conn.send("stats")
        if not self._conn.poll(_START_TIMEOUT):
            raise RuntimeError("the local server did not answer a stats request")
        stats: dict[str, Any] = self._conn.recv()
        return stats

    def stop(self) -> None:
        """Stop cleanly; kill the process if it does not stop within a few seconds."""
        conn, proc, self._conn = self._conn, self._proc, None
        if proc is None:
            return
        try:
            if conn is not None:
                try:
                    conn.send("stop")
                    if conn.poll(10.0):
                        conn.recv()
                except (BrokenPipeError, EOFError, OSError):
                    pass
            proc.join(10.0)
            if proc.is_alive():
                proc.terminate()
                proc.join(5.0)
            if proc.is_alive():
                proc.kill()
                proc.join()
        finally:
            if conn is not None:
                conn.close()
            self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""`LocalServer`: an Oxen-compatible inference API on local sockets, and `run_server`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from aiohttp import web

from .._config import ReconcilePolicy
from ._api import Api
from ._constants import DEFAULT_WORKERS
from ._faults import Faults
from ._files import ResultsHost
from ._repos import METADATA_ROUTES, Repos
from ._stats import ServerStats
from ._store import StateStore

if TYPE_CHECKING:
    import oxedit

__all__ = ["DEFAULT_API_KEY", "FAST_RECONCILE", "LocalServer", "run_server"]

#: Reconciliation settings for tests against a local server: jobs are checked from 0.5 s of
#: age, and at most 1 s apart, so a lost event or a silent cancellation settles in ~1-2 s; a
#: lost enqueue is looked for during 1 s (the local server commits at once unless
#: `Faults.commit_delay` says otherwise).
FAST_RECONCILE = ReconcilePolicy(
    stale_floor=0.5,
    stale_after=1.0,
    interval=1.0,
    lost_response_grace=0.1,
    lost_response_window=1.0,
)

#: The API key of a server started without one.
DEFAULT_API_KEY = "oxen-test-key"

# In-flight requests get this long to finish when the server stops; event streams are ended
# first, so only slow edits (latency faults) ever use it.
_SHUTDOWN_TIMEOUT = 2.0


class LocalServer:
    """An Oxen-compatible inference API with real (simple) image edits, for tests and demos.

    Serves the `/api` routes on `url` and result files on a second socket with a different
    host name (`files_url`), like the real service's presigned storage links (or on the API
    host itself: `results_on_api_host`). Every generation
    runs a deterministic Pillow edit chosen by the prompt (see `oxedit.server._edits`).

    Example:
        ```python
        async with LocalServer(faults=Faults(failure_rate=0.2, seed=1)) as server:
            async with Client(api_key=server.api_key, base_url=server.url) as client:
                ...
            await server.wait_idle()
            assert server.stats.generations_created == 10
        ```

    Args:
        api_key: The key clients must send as `Authorization: Bearer <key>`
            (default `"oxen-test-key"`).
        faults: Fault settings, read live: change fields on `server.faults` at any time.
        workers: Generations processed concurrently; the rest wait `queued`.
        host: Interface to listen on.
        port: API port (0: any free port).
        file_port: Result-file port (0: any free port).
        state_dir: A folder that keeps the generations and their result files across runs
            (created if missing). A server started on it again serves every earlier row, and
            runs again, once, the ones the earlier process left queued or processing. One
            server at a time: a second one on the same folder fails to start with
            `oxedit.ConfigurationError`. None: all state is in memory, gone at `stop()`.
        results_on_api_host: Where result URLs point. False: the file host (`files_url`),
            which needs no key. True: the API's own origin (as the docs' hub.oxen.ai result
            URLs are [doc]), served there behind the Bearer key like every `/api` route
            [guess]. `"redirect"`: the API's origin too, answering (with the key) a 302 to the
            file host's URL for the file [guess]. (`oxedit doctor --spend` checks both.)
        metadata_routes: Which of the repository metadata routes to serve: `"meta"`
            (oxen-server's, which the official `oxenai` client calls), `"metadata"` (the docs'
            page), or both (the default): a client of the hub must work with either.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        faults: Faults | None = None,
        workers: int = DEFAULT_WORKERS,
        host: str = "127.0.0.1",
        port: int = 0,
        file_port: int = 0,
        state_dir: str | os.PathLike[str] | None = None,
        results_on_api_host: ResultsHost = False,
        metadata_routes: Iterable[str] = METADATA_ROUTES,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if not (isinstance(results_on_api_host, bool) or results_on_api_host == "redirect"):
            raise ValueError(
                "results_on_api_host must be False, True or 'redirect', "
                f"got {results_on_api_host!r}"
            )
        self._results_on_api_host = results_on_api_host
        self._metadata_routes = tuple(metadata_routes)
        if not self._metadata_routes or set(self._metadata_routes) - set(METADATA_ROUTES):
            raise ValueError(
                f"metadata_routes must be one or both of {METADATA_ROUTES}, got {metadata_routes!r}"
            )
        self._repos: Repos | None = None
        self._api_key = api_key or DEFAULT_API_KEY
        self._faults = faults if faults is not None else Faults()
        self._stats = ServerStats()
        self._workers = workers
        self._host = host
        self._ports = (port, file_port)
        self._state_dir = state_dir
        self._store: StateStore | None = None
        self._api: Api | None = None
        self._runners: list[web.AppRunner] = []
        self._url = ""
        self._files_url = ""
        self._state = "unopened"

    # -- public surface ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """API base URL, e.g. `"http://127.0.0.1:54321"`."""
        self._require_running()
        return self._url

    @property
    def files_url(self) -> str:
        """Base URL of the result-file host, e.g. `"http://localhost:54322"`."""
        self._require_running()
        return self._files_url

    @property
    def api_key(self) -> str:
        return self._api_key

    @property
    def faults(self) -> Faults:
        """The live fault settings."""
        return self._faults

    @property
    def stats(self) -> ServerStats:
        return self._stats

    def generation(self, generation_id: str) -> dict[str, Any]:
        """The row `GET /api/ai/queue/{id}` would return (the server's truth).

        Raises:
            KeyError: no such generation.
        """
        api = self._require_running()
        gen = api.generations.get(generation_id)
        if gen is None:
            raise KeyError(f"no generation {generation_id!r} on this server")
        return api.row(gen)

    def kill_and_retry(self, generation_id: str) -> str:
        """Cancel an active generation and re-create it as a new row with `retried_from_id`
        (the spec's kill & retry, v0.257.0); returns the new row's id. No event is sent for
        the cancelled one; the new one runs and sends its own."""
        api = self._require_running()
        gen = api.generations.get(generation_id)
        if gen is None:
            raise KeyError(f"no generation {generation_id!r} on this server")
        return api.kill_and_retry(gen).id

    def backdate(self, seconds: float) -> None:
        """Move every row's timestamps `seconds` into the past, as if the account's history
        were that much older (tests of what a client reads of old history)."""
        api = self._require_running()
        shift = round(seconds)
        for gen in api.generations.values():
            gen.enqueued_at -= shift
            gen.started_at = None if gen.started_at is None else gen.started_at - shift
            gen.completed_at = None if gen.completed_at is None else gen.completed_at - shift

    def repository(self, namespace: str, name: str) -> dict[str, Any]:
        """What the server holds of a repository: the settings its creation sent
        (`is_public`, `description`: absent when not sent), its file paths (without the
        branch), its latest commit (None before the first).

        Raises:
            KeyError: no such repository.
        """
        self._require_running()
        assert self._repos is not None
        return self._repos.describe(namespace, name)

    def generations(self) -> list[dict[str, Any]]:
        """Every row ever created, in enqueue order, whatever its status."""
        api = self._require_running()
        return [api.row(gen) for gen in api.generations.values()]

    def client(self, **settings: Any) -> oxedit.Client:
        """An `oxedit.Client` for this server (open it with `async with`), with
        `FAST_RECONCILE` unless `reconcile=` is given: a job whose event a fault dropped, or
        that was cancelled, settles in about a second, not after the production schedule; and
        with `trust_env=False` unless given: a loopback server is never reached through the
        `HTTP_PROXY` of the machine.

        Example:
            ```python
            async with server.client() as client:
                job = await client.submit(prompt="Invert it", image="cat.png")
            ```
        """
        import oxedit

        settings.setdefault("reconcile", FAST_RECONCILE)
        settings.setdefault("trust_env", False)
        return oxedit.Client(api_key=self._api_key, base_url=self.url, **settings)

    async def wait_idle(self) -> None:
        """Return once every generation created so far is succeeded, failed or cancelled."""
        await self._require_running().wait_idle()

    async def drop_event_streams(self) -> None:
        """Cut every open event stream now (the connections are aborted, not ended cleanly),
        and return once they are gone."""
        await self._require_running().broker.close_streams(abort=True)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "unopened":
            raise RuntimeError(f"LocalServer.start() called on a {self._state} server")
        self._state = "running"
        socks: list[socket.socket] = []
        try:
            if self._state_dir is not None:
                self._store = StateStore(self._state_dir)
            api = self._api = Api(
                api_key=self._api_key,
                faults=self._faults,
                stats=self._stats,
                workers=self._workers,
                store=self._store,
            )
            await api.start()
            socks.append(api_sock := _bind(self._host, self._ports[0]))
            socks.append(files_sock := _bind(self._host, self._ports[1]))
            api_host = _display_host(self._host)
            self._url = f"http://{api_host}:{api_sock.getsockname()[1]}"
            # A different host name, so that the files are another origin than the API.
            files_host = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(
                api_host, api_host
            )
            self._files_url = f"http://{files_host}:{files_sock.getsockname()[1]}"
            api.files.base_url = self._files_url
            api.files.api_url = self._url
            api.files.on_api_host = self._results_on_api_host
            api_app = api.app()
            api.files.add_api_routes(api_app)
            folder = self._store.folder / "repos" if self._store is not None else None
            self._repos = Repos(
                self._faults, self._stats, folder, metadata_routes=self._metadata_routes
            )
            self._repos.add_routes(api_app)
            for app, sock in ((api_app, api_sock), (api.files.app(), files_sock)):
                runner = web.AppRunner(
                    app,
                    access_log=None,
                    handler_cancellation=True,
                    shutdown_timeout=_SHUTDOWN_TIMEOUT,
                )
                self._runners.append(runner)
                await runner.setup()
                await web.SockSite(runner, sock).start()
        except BaseException:
            await self.stop()
            for sock in socks:  # those no site took over (closing twice is harmless)
                sock.close()
            raise

    async def stop(self) -> None:
        """End the event streams, let in-flight requests finish, stop the workers."""
        if self._state == "closed":
            return
        self._state = "closed"
        api = self._api
        if api is not None:
            await api.broker.close_streams(abort=False)
        for runner in self._runners:
            await runner.cleanup()
        self._runners = []
        if api is not None:
            await api.stop()
        if self._store is not None:
            self._store.close()  # after the workers: nothing writes any more
            self._store = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _require_running(self) -> Api:
        if self._state != "running" or self._api is None:
            raise RuntimeError(
                f"the LocalServer is {self._state}: use it inside 'async with LocalServer()'"
            )
        return self._api


def _bind(host: str, port: int) -> socket.socket:
    family, type_, proto, _, addr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    return sock


def _display_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def run_server(
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    *,
    faults: Faults | None = None,
    workers: int = DEFAULT_WORKERS,
    state_dir: str | os.PathLike[str] | None = None,
) -> None:
    """Serve until Ctrl-C (or SIGTERM), printing the URL and the API key first.

    The first line printed is `oxedit local server: <url>`, so a parent process can read it.
    `state_dir` keeps the generations across runs (see `LocalServer`).
    """

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            # Explicitly, too: a process started in the background inherits SIGINT ignored,
            # and then Python raises no KeyboardInterrupt for Ctrl-C.
            loop.add_signal_handler(signal.SIGINT, stop.set)
        async with LocalServer(
            api_key=api_key,
            faults=faults,
            workers=workers,
            host=host,
            port=port,
            state_dir=state_dir,
        ) as server:
            print(f"oxedit local server: {server.url}", flush=True)
            if host in ("", "0.0.0.0", "::"):
                # The URL above works on this machine; others need one of its own names.
                port_ = server.url.rpartition(":")[2]
                print(
                    f"Listening on every interface: from another machine use "
                    f"http://{socket.gethostname()}:{port_} (or this machine's address)",
                    flush=True,
                )
            print(f"API key: {server.api_key}", flush=True)
            print(f"Result files: {server.files_url}", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            await stop.wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())

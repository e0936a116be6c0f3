"""`SyncClient` over real sockets: a local server runs in a thread of its own (the client's
calls block their thread, which must not be the server's), the client runs its own loop."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

import oxedit
from oxedit.testing import FAST_RECONCILE, Faults, LocalServer

from .helpers import png, run_process

T = TypeVar("T")
EXAMPLES = Path(__file__).parent.parent / "examples"


class ServerThread:
    """A `LocalServer` on an event loop in its own thread."""

    def __init__(self, server: LocalServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    def client(self, **settings: Any) -> oxedit.SyncClient:
        settings.setdefault("reconcile", FAST_RECONCILE)
        return oxedit.SyncClient(
            api_key=self.server.api_key, base_url=self.server.url, trust_env=False, **settings
        )

    def rows(self) -> list[dict[str, Any]]:
        async def rows() -> list[dict[str, Any]]:
            return self.server.generations()

        return self.call(rows())

    def until(self, predicate: Callable[[], bool]) -> None:
        """Wait until `predicate()` (checked on the server's loop: the server's state has no
        awaitable that a test thread could wait on)."""

        async def poll() -> None:
            while not predicate():  # noqa: ASYNC110 - a counter, no event to await
                await asyncio.sleep(0.005)

        self.call(poll())


@contextmanager
def server_thread(faults: Faults | None = None, **settings: Any) -> Iterator[ServerThread]:
    started = threading.Event()
    box: list[ServerThread] = []
    stop: list[asyncio.Event] = []

    async def serve() -> None:
        async with LocalServer(faults=faults, **settings) as server:
            stop.append(asyncio.Event())
            box.append(ServerThread(server, asyncio.get_running_loop()))
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="server")
    thread.start()
    try:
        assert started.wait(30)
        yield box[0]
    finally:
        if box:
            box[0].loop.call_soon_threadsafe(stop[0].set)
        thread.join(60)


def sync_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "oxedit-sync"]


@pytest.mark.slow
def test_a_thousand_jobs_from_four_threads_share_one_stream_and_never_poll() -> None:
    image = png()
    with server_thread() as st, st.client() as client:
        outcomes: list[list[str]] = []

        def work() -> None:
            jobs = [client.submit(prompt="Invert it", image=image) for _ in range(250)]
            outcomes.append([job.result().status for job in jobs])

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stats = st.server.stats
        assert [len(o) for o in outcomes] == [250] * 4
        assert {s for o in outcomes for s in o} == {"succeeded"}
        assert stats.generations_created == 1000
        assert stats.event_connections == 1 and client.stats.event_connections == 1
        assert client.stats.poll_requests == 0
        assert {row["status"] for row in st.rows()} == {"succeeded"}


@pytest.mark.anyio
async def test_it_works_inside_a_running_event_loop() -> None:
    with server_thread() as st:
        asyncio.get_running_loop()  # the case at hand: a Jupyter cell, an async callback
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="running event loop"):
            asyncio.run(coro)  # what a script's `asyncio.run(main())` would do here
        coro.close()
        with st.client() as client:
            gen = client.submit(prompt="Invert it", image=png()).result()
            assert gen.status == "succeeded"
            assert client.get(gen.id).status == "succeeded"
            # Its results download on the client's loop, awaited from this one.
            data = await gen.read()
            assert data[:4] == b"\x89PNG" and data == client.read(gen)

            # An async framework's sync callback, called by this running loop.
            done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

            def callback() -> None:
                job = client.submit(prompt="Mirror it", image=png())
                done.set_result(job.result().status)

            asyncio.get_running_loop().call_soon(callback)
            assert await done == "succeeded"


def test_the_surface_of_client() -> None:
    image = png()
    with server_thread() as st, st.client() as client:
        jobs = client.submit_generations(prompt="Invert it", image=image, num_generations=3)
        finished = list(client.as_completed(jobs))
        assert {job.id for job in finished} == {job.id for job in jobs}
        assert all(job.done() for job in finished)
        followed = client.job(jobs[0].id)
        assert followed.result().id == jobs[0].id
        assert client.cancel(jobs[0].id).status == "succeeded"  # finished before the DELETE
        assert {g.id for g in client.list(status="succeeded")} >= {j.id for j in jobs}
        assert client.model("qwen-image-edit").id == "qwen-image-edit"
        assert any(m.id == "qwen-image-edit" for m in client.models())
        edit = client.edit(prompt="Invert it", image=image)
        assert client.read(edit)[:4] == b"\x89PNG"
        estimate = client.estimate(
            [{"image": str(EXAMPLES / "images" / "night.jpg"), "prompt": "x"}]
        )
        assert estimate.items == 1
        patient = client.with_options(timeout=30, max_retries=1)
        assert patient.submit(prompt="Invert it", image=image).result().status == "succeeded"
        patient.close()  # a view: closes nothing
        with patient:
            pass
        assert client.submit(prompt="Invert it", image=image).result().status == "succeeded"
        assert client.stats.event_connections == 1
        with pytest.raises(oxedit.JobTimeout):
            st.server.faults.latency = 30.0
            client.submit(prompt="Invert it", image=image).result(timeout=0.05)


def test_a_job_timeout_can_cancel_it() -> None:
    with server_thread(Faults(latency=30.0)) as st, st.client() as client:
        job = client.submit(prompt="Invert it", image=png())
        with pytest.raises(oxedit.JobTimeout) as caught:
            job.result(timeout=0.05, cancel_on_timeout=True)
        assert caught.value.cancelled
        assert st.server.generation(job.id)["status"] == "cancelled"


def test_close_is_thread_safe_and_ends_blocked_calls() -> None:
    with server_thread(Faults(latency=30.0)) as st:
        client = st.client()
        jobs = [client.submit(prompt="Invert it", image=png()) for _ in range(4)]
        errors: list[BaseException] = []

        def waiter(job: oxedit.SyncJob) -> None:
            try:
                job.result()
            except BaseException as exc:
                errors.append(exc)

        waiters = [threading.Thread(target=waiter, args=(job,)) for job in jobs]
        for thread in waiters:
            thread.start()
        barrier = threading.Barrier(8)

        def closer() -> None:
            barrier.wait()
            client.close()

        closers = [threading.Thread(target=closer) for _ in range(8)]
        for thread in closers:
            thread.start()
        for thread in closers + waiters:
            thread.join(30)
            assert not thread.is_alive()
        assert len(errors) == 4 and all(isinstance(e, oxedit.ClientStateError) for e in errors)
        assert sync_threads() == []
        client.close()  # again: nothing to do
        with pytest.raises(oxedit.ClientStateError, match="closed"):
            client.submit(prompt="Invert it", image=png())
        with pytest.raises(oxedit.ClientStateError, match="closed"), client:
            pass
        st.until(lambda: st.server.stats.open_event_streams == 0)  # the server sees it close


def test_calls_from_the_clients_own_loop_are_refused_not_deadlocked() -> None:
    seen: list[BaseException] = []
    holder: list[oxedit.SyncClient] = []

    def on_settled(_: oxedit.JobSettled) -> None:
        for call in (lambda: holder[0].get("x"), holder[0].close):
            try:
                call()
            except oxedit.ClientStateError as exc:
                seen.append(exc)

    with server_thread() as st, st.client(event_hooks={"settled": [on_settled]}) as client:
        holder.append(client)
        assert client.submit(prompt="Invert it", image=png()).result().status == "succeeded"
        assert len(seen) == 2 and "own event loop" in str(seen[0])


def test_bad_settings_fail_in_the_callers_thread_and_leave_no_thread() -> None:
    with pytest.raises(oxedit.ConfigurationError):
        oxedit.SyncClient(base_url="http://127.0.0.1:1")  # no key anywhere
    with pytest.raises(oxedit.InvalidRequestError, match="http_session"):
        oxedit.SyncClient(api_key="k", http_session=object())
    assert sync_threads() == []


def test_a_results_image_shows_inline_and_an_async_clients_keeps_its_loop_free() -> None:
    with server_thread() as st, st.client() as client:
        gen = client.submit(prompt="Invert it", image=png()).result()
        bundle = gen._repr_mimebundle_()
        assert base64.b64decode(bundle["image/png"]) == client.read(gen)
        assert bundle["text/plain"] == repr(gen)
        edit = client.edit(prompt="Invert it", image=png())
        assert "image/png" in edit._repr_mimebundle_()
        assert "image/png" in client.get(gen.id)._repr_mimebundle_()

        async def async_result() -> oxedit.Generation:
            async with oxedit.Client(
                api_key=st.server.api_key, base_url=st.server.url, trust_env=False
            ) as aclient:
                return await (await aclient.submit(prompt="Invert it", image=png()))

        # An async client's result never downloads from a repr: that would need its loop.
        assert asyncio.run(async_result())._repr_mimebundle_() is None
    assert gen._repr_mimebundle_() is None  # closed: the text repr, no error


def test_the_batch_grid_shows_inputs_and_outputs_escaped(tmp_path: Path) -> None:
    image = tmp_path / "red.png"
    image.write_bytes(png())
    requests = [
        oxedit.EditRequest(image=str(image), prompt="<script>alert(1)</script> invert"),
        oxedit.EditRequest(image=str(image), prompt="Invert it", params={"aspect_ratio": "5:1"}),
        oxedit.EditRequest(image=str(image), prompt="Mirror it", name="kept"),
    ]
    with server_thread() as st, st.client() as client:
        results = client.map(requests).results(progress=False)
        saved = client.map(requests[2:], output_dir=tmp_path / "out").results(progress=False)
        page = results._repr_html_()
        assert saved[0].output is not None and "data:image/jpeg" in saved._repr_html_()
    assert [r.status for r in results] == ["succeeded", "error", "succeeded"]
    assert page.count("data:image/jpeg;base64,") == 5  # 3 inputs, 2 outputs
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "5:1" in page and "1 error, 2 succeeded" in page


def test_leaving_a_batch_cancels_what_it_sent() -> None:
    with server_thread(Faults(latency=30.0)) as st:
        requests = [
            {"image": str(EXAMPLES / "images" / "night.jpg"), "prompt": f"p{i}"} for i in range(6)
        ]
        with st.client() as client, client.map(requests, concurrency=2):
            st.until(lambda: len(st.server.generations()) == 2)
        # An enqueue caught on the wire is the client's to find and cancel: it has by the
        # time the client is closed.
        rows = st.rows()
        assert len(rows) == 2 and {row["status"] for row in rows} == {"cancelled"}


def test_a_batch_with_a_journal_leaves_its_unfinished_items_to_the_next_run(tmp_path: Path) -> None:
    with server_thread(Faults(latency=30.0)) as st, st.client() as client:
        requests = [
            {"image": str(EXAMPLES / "images" / "night.jpg"), "prompt": f"p{i}"} for i in range(4)
        ]
        with client.map(requests, concurrency=2, journal=tmp_path / "j.sqlite"):
            st.until(lambda: len(st.server.generations()) == 2)
        assert {row["status"] for row in st.rows()} <= {"queued", "processing"}
        st.server.faults.latency = 0.0
        for row in st.rows():
            client.cancel(row["generation_id"])  # the test's own cleanup: nothing left running


@pytest.mark.anyio
async def test_the_script_example(tmp_path: Path) -> None:
    async with LocalServer() as server:
        env = {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}
        script = str(EXAMPLES / "script.py")
        code, output = await run_process(sys.executable, script, env=env, cwd=tmp_path)
        assert code == 0, output
        first, *_ = server.generations()
    assert f"enqueued {first['generation_id']}" in output
    assert output.count("succeeded") == 8
    assert (tmp_path / "night-hat.png").read_bytes()[:4] == b"\x89PNG"
    assert len(list((tmp_path / "script-out").glob("*.png"))) == 8

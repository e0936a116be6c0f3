"""The client's contract, over real sockets against the local server."""

from __future__ import annotations

import asyncio
import inspect
import io
import unittest.mock
from pathlib import Path

import pytest
from PIL import Image

import oxedit
from oxedit.testing import Faults, LocalServer

from .helpers import FAST, client_for, png

pytestmark = pytest.mark.anyio


async def test_quickstart_submit_await_save(oxen_server: LocalServer, tmp_path: Path) -> None:
    image = tmp_path / "cat.png"
    image.write_bytes(png(size=(16, 16)))
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="Invert the colors", image=image, aspect_ratio="1:1")
        gen = await job
        assert (gen.id, gen.status) == (job.id, "succeeded")
        assert gen.url is not None
        out = await gen.save(tmp_path / "out" / "cat-inverted.png")
        data = await gen.read()
    with Image.open(out) as result:
        assert result.size == (16, 16)
        assert result.convert("RGB").getpixel((0, 0)) == (55, 225, 225)  # 255 - (200, 30, 30)
    assert out.read_bytes() == data
    assert [p.name for p in out.parent.iterdir()] == ["cat-inverted.png"]  # no temp file left
    assert oxen_server.generation(job.id)["status"] == "succeeded"
    assert oxen_server.stats.file_requests_with_auth == 0


async def test_one_stream_for_many_jobs_and_no_polling(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"mirror {i}", image=png()) for i in range(300))
        )
        gens = await asyncio.gather(*jobs)
        assert {g.status for g in gens} == {"succeeded"}
        assert client.stats.event_connections == 1
        assert client.stats.poll_requests == 0
        assert client.stats.enqueue_requests == 300
    assert oxen_server.stats.event_connections == 1
    assert oxen_server.stats.generations_created == 300


@pytest.mark.oxen_faults(event_before_response_rate=1.0, seed=1)
async def test_events_that_overtake_the_enqueue_response(oxen_server: LocalServer) -> None:
    # Every event is written before its POST is answered: the stream must already be open
    # and confirmed, and the early events kept for the ids that follow.
    async with client_for(oxen_server) as client:
        jobs = await asyncio.gather(
            *(client.submit(prompt=f"blur {i}", image=png()) for i in range(50))
        )
        assert all(job.done() for job in jobs)  # resolved by the time submit returned
        assert {(await job).status for job in jobs} == {"succeeded"}
        assert client.stats.poll_requests == 0


@pytest.mark.oxen_faults(duplicate_event_rate=1.0, unrelated_event_rate=1.0, seed=2)
async def test_duplicate_and_unrelated_events_are_harmless(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client, client_for(oxen_server) as other:
        mine = await asyncio.gather(
            *(client.submit(prompt=f"a {i}", image=png()) for i in range(20))
        )
        theirs = await asyncio.gather(
            *(other.submit(prompt=f"b {i}", image=png()) for i in range(20))
        )
        await asyncio.gather(*mine, *theirs)
        # Each client saw every event twice, its own and the other's (one stream per user).
        await oxen_server.wait_idle()
        assert client.stats.events >= 40
        assert {j.id for j in mine}.isdisjoint({j.id for j in theirs})
        assert client.stats.poll_requests == 0


@pytest.mark.oxen_faults(failure_rate=1.0, seed=3)
async def test_failed_generation_raises_with_the_server_text(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="anything", image=png())
        with pytest.raises(oxedit.GenerationFailed) as info:
            await job
    assert info.value.generation_id == job.id
    assert info.value.error == oxen_server.generation(job.id)["error_message"]
    assert job.id in str(info.value)


async def test_model_specific_failure_comes_from_the_job(oxen_server: LocalServer) -> None:
    # Unknown models' parameters are not checked client-side; the API fails the generation.
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="p", image=b"GIF89a-not-really", model="qwen-image-edit")
        with pytest.raises(oxedit.GenerationFailed):
            await job


async def test_bad_input_is_refused_before_sending(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        with pytest.raises(oxedit.InvalidRequestError, match=r"aspect_ratio='5:1' is not one of"):
            await client.submit(prompt="p", image=png(), aspect_ratio="5:1")
        with pytest.raises(oxedit.InvalidRequestError, match="no such file"):
            await client.submit(prompt="p", image="nope/missing.png")
        with pytest.raises(oxedit.InvalidRequestError, match="submit_generations"):
            await client.submit(prompt="p", image=png(), num_generations=2)
        with pytest.raises(oxedit.InvalidRequestError, match="from 1 to 4"):
            await client.submit_generations(prompt="p", image=png(), num_generations=5)
    assert "POST /api/ai/queue" not in oxen_server.stats.requests_by_route


async def test_num_generations_gives_one_job_each(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        jobs = await client.submit_generations(prompt="grayscale", image=png(), num_generations=3)
        assert len({job.id for job in jobs}) == 3
        assert [(await job).status for job in jobs] == ["succeeded"] * 3
    assert oxen_server.stats.requests_by_route["POST /api/ai/queue"] == 1
    assert oxen_server.stats.generations_created == 3


async def test_cancel_settles_the_job_without_an_event(oxen_server: LocalServer) -> None:
    oxen_server.faults.latency = 30.0  # the job stays processing/queued
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="p", image=png())
        gen = await job.cancel()
        assert gen.status == "cancelled"
        with pytest.raises(oxedit.GenerationCancelled) as info:
            await job
        assert info.value.generation_id == job.id
    assert oxen_server.generation(job.id)["status"] == "cancelled"


async def test_cancellation_elsewhere_is_found_by_reconciliation(oxen_server: LocalServer) -> None:
    oxen_server.faults.latency = 30.0
    async with client_for(oxen_server, reconcile=FAST) as client, client_for(oxen_server) as other:
        job = await client.submit(prompt="p", image=png())
        await other.cancel(job.id)  # no event is ever sent for this
        with pytest.raises(oxedit.GenerationCancelled):
            await job.wait(timeout=10)
        assert client.stats.poll_requests >= 1


async def test_deadline_with_and_without_remote_cancel(oxen_server: LocalServer) -> None:
    oxen_server.faults.latency = 30.0
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="p", image=png())
        with pytest.raises(oxedit.JobTimeout) as info:
            await job.wait(timeout=0.05)
        assert not info.value.cancelled and not job.done()
        assert oxen_server.generation(job.id)["status"] in ("queued", "processing")
        with pytest.raises(oxedit.JobTimeout) as info:
            await job.wait(timeout=0.05, cancel_on_timeout=True)
        assert info.value.cancelled
    assert oxen_server.generation(job.id)["status"] == "cancelled"


async def test_the_next_await_after_its_only_caller_gave_up_gets_the_result(
    oxen_server: LocalServer,
) -> None:
    # The first `await job` waits on a future of its own; cancelling its task cancels that
    # future, never the job, and the next `await job` waits on a new one, woken by the event.
    oxen_server.faults.latency = 0.5
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="p", image=png())

        async def caller() -> oxedit.Generation:
            return await job

        for _ in range(2):  # a caller gives up; so does the next one
            gives_up = asyncio.create_task(caller())
            await asyncio.sleep(0)  # it runs up to its `await job`
            gives_up.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gives_up
            assert not job.done()
        gen = await job
        assert (gen.id, gen.status) == (job.id, "succeeded")
        assert await caller() is gen  # done: every later caller gets the same generation
    assert oxen_server.generation(job.id)["status"] == "succeeded"


async def test_as_completed_yields_in_completion_order_and_leaves_nothing(
    oxen_server: LocalServer,
) -> None:
    async with client_for(oxen_server) as client:
        jobs = [await client.submit(prompt=f"rotate {i}", image=png()) for i in range(10)]
        tasks_before = asyncio.all_tasks()
        seen = [job.id async for job in client.as_completed(jobs)]
        assert sorted(seen) == sorted(j.id for j in jobs)
        oxen_server.faults.latency = 30.0
        slow = [await client.submit(prompt=f"slow {i}", image=png()) for i in range(3)]
        oxen_server.faults.latency = 0.0
        fast = await client.submit(prompt="fast", image=png())
        async with client.as_completed([*slow, fast]) as completed:
            async for job in completed:
                assert job is fast
                break
        assert asyncio.all_tasks() == tasks_before
        for job in slow:
            await job.cancel()


async def test_get_list_models(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="sepia", image=png(), aspect_ratio="4:3")
        await job
        row = await client.get(job.id)
        assert (row.id, row.status, row.prompt, row.model) == (
            job.id,
            "succeeded",
            "sepia",
            "qwen-image-edit",
        )
        assert row.enqueued_at is not None and row.completed_at is not None
        assert await client.list() == []  # active rows only, by default
        assert [g.id for g in await client.list(status="succeeded")] == [job.id]
        models = {m.id: m for m in await client.models()}
        assert "qwen-image-edit" in models
        schema = (await client.model("qwen-image-edit")).schema
        assert "1:1" in schema["properties"]["aspect_ratio"]["enum"]
        with pytest.raises(oxedit.NotFoundError) as info:
            await client.get("no-such-id")
        assert info.value.status_code == 404 and "no-such-id" in str(info.value)


async def test_synchronous_edit(oxen_server: LocalServer, tmp_path: Path) -> None:
    async with client_for(oxen_server) as client:
        result = await client.edit(prompt="invert", image=png((0, 0, 0)), aspect_ratio="1:1")
        assert result.url is not None
        saved = await result.save(tmp_path / "e.png")
        inline = await client.edit(
            prompt="invert", image=png((0, 0, 0)), response_format="b64_json"
        )
        assert inline.url is None
        assert (await inline.read())[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(saved) as img:
        assert img.convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    assert oxen_server.stats.file_requests_with_auth == 0


async def test_expired_result_url_is_refreshed_once(oxen_server: LocalServer) -> None:
    oxen_server.faults.url_ttl = -10  # every URL handed out is already expired
    async with client_for(oxen_server) as client:
        gen = await (await client.submit(prompt="flip vertical", image=png()))
        oxen_server.faults.url_ttl = 3600  # the row's fresh URL will be valid
        data = await gen.read()
        assert Image.open(io.BytesIO(data)).size
        oxen_server.faults.url_ttl = -10
        with pytest.raises(oxedit.DownloadError) as info:
            await gen.read()
        assert info.value.status_code == 403
    assert oxen_server.stats.requests_by_route["GET /api/ai/queue/{generation_id}"] == 2
    assert oxen_server.stats.file_requests_with_auth == 0


async def test_http_errors_map_to_exceptions(oxen_server: LocalServer) -> None:
    async with oxedit.Client(api_key="wrong", base_url=oxen_server.url) as client:
        with pytest.raises(oxedit.AuthenticationError) as auth:
            await client.submit(prompt="p", image=png())
        assert auth.value.status_code == 401
    async with client_for(oxen_server) as client:
        # The models endpoint's 404 is asked first, so nothing is sent (issue 13).
        with pytest.raises(oxedit.InvalidRequestError) as unknown:
            await client.submit(prompt="p", image=png(), model="no-such-model")
        assert "'no-such-model' does not exist" in str(unknown.value)
    assert oxen_server.stats.generations_created == 0


async def test_lifecycle_errors_and_clean_close(oxen_server: LocalServer) -> None:
    client = client_for(oxen_server)
    assert isinstance(client, oxedit.Client)
    with pytest.raises(oxedit.ClientStateError, match="async with"):
        await client.submit(prompt="p", image=png())
    oxen_server.faults.latency = 30.0
    async with client:
        job = await client.submit(prompt="p", image=png())
    with pytest.raises(oxedit.ClientStateError, match="closed"):
        await job  # pending when the client closed: a clear error, not a hang
    with pytest.raises(oxedit.ClientStateError, match="create a new"):
        async with client:
            pass
    with pytest.raises(oxedit.ClientStateError, match="not made by an oxedit.Client"):
        await oxedit.Generation(id="x", status="succeeded", url="http://x").read()


async def test_job_for_an_id_enqueued_elsewhere(oxen_server: LocalServer) -> None:
    async with client_for(oxen_server) as first:
        job = await first.submit(prompt="grayscale", image=png())
        await job
    async with client_for(oxen_server, reconcile=FAST) as second:
        adopted = second.job(job.id)
        assert (await adopted.wait(timeout=10)).status == "succeeded"


async def test_unreachable_api_is_a_transport_error() -> None:
    async with LocalServer() as server:
        url, key = server.url, server.api_key
    retry = oxedit.RetryPolicy(max_retries=1, initial=0.01, maximum=0.02)
    async with oxedit.Client(api_key=key, base_url=url, retry=retry) as client:
        with pytest.raises(oxedit.TransportError):
            await client.submit(prompt="p", image=png())
        with pytest.raises(oxedit.TransportError):
            await client.get("x")


async def test_faults_fixture_default_is_healthy(oxen_faults: Faults) -> None:
    """The fixture's default injects nothing: every one of 50 edits succeeds, each with one
    enqueue, one event and no reconciliation."""
    async with LocalServer(faults=oxen_faults) as server, client_for(server) as client:
        jobs = [await client.submit(prompt=f"p{i}", image=png()) for i in range(50)]
        generations = [await job.wait(10) for job in jobs]
        stats = client.stats
    assert {g.status for g in generations} == {"succeeded"}
    assert (stats.enqueue_requests, stats.events, stats.poll_requests) == (50, 50, 0)


async def test_the_async_methods_are_coroutine_functions_for_mocks() -> None:
    """Apps test their code with `create_autospec(oxedit.Client)`: each awaitable method must
    be a coroutine function so the mock's is awaitable too."""
    for name in ("submit", "submit_generations", "get", "list", "cancel", "edit", "read", "save"):
        assert inspect.iscoroutinefunction(getattr(oxedit.Client, name)), name
    mock = unittest.mock.create_autospec(oxedit.Client, instance=True)
    mock.submit.return_value = "job"
    assert await mock.submit(prompt="p", image=b"") == "job"


async def test_stats_are_a_read_only_snapshot(oxen_server: LocalServer) -> None:
    """`client.stats` is a frozen snapshot: writing to it fails, it does not change under the
    reader, and a new read shows what the client (with its `with_options` views) did since."""
    async with client_for(oxen_server) as client:
        await (await client.submit(prompt="p", image=png())).wait(10)
        before = client.stats
        with pytest.raises(AttributeError):
            before.retries = 5  # type: ignore[misc]
        await (await client.with_options(max_retries=0).submit(prompt="q", image=png())).wait(10)
        after = client.stats
    assert (before.enqueue_requests, after.enqueue_requests) == (1, 2)
    assert after.requests["POST /api/ai/queue"] == after.enqueue_requests
    assert after.events == 2 and after.bytes_sent > before.bytes_sent > 0
    assert isinstance(after, oxedit.ClientStats)

"""What a waiting job costs the garbage collector, and that waiting stays safe to give up.

With 50,000 jobs submitted at once, every object a parked `submit()` or a pending `await job`
keeps alive is walked by each full collection (`python -m benchmarks.end_to_end --n 50000`).
These tests count gc-tracked objects per waiting call against the least asyncio itself needs
for the same wait (a task parked on a semaphore, a task awaiting a future), over real sockets
against the local server.

Not in the unit suite: the counts are CPython 3.11's internals (frames, cells, futures), a
benchmark's guard rather than behaviour. CI runs them as their own step:
`python -m pytest benchmarks/checks`.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

import oxedit
from oxedit._http.transport import _Watch
from oxedit.testing import Faults, LocalServer
from tests.helpers import FAST, client_for, eventually, png

pytestmark = pytest.mark.anyio

K = 400  # waiting calls per count: the server's and the client's own objects are noise below 1


def tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


async def objects_per_waiter(start: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    """gc-tracked objects per task parked in `start()` (the task itself included)."""
    before = tracked()
    tasks = [asyncio.create_task(start()) for _ in range(K)]
    await asyncio.sleep(0)  # one loop turn: every task runs up to where it parks
    after = tracked()
    assert not any(t.done() for t in tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(3):  # the cancellations' own callbacks run: the next count starts clean
        await asyncio.sleep(0)
    return (after - before) / K


def client_side(objects: list[object]) -> int:
    """How many of `objects` the client made: oxedit's own types (not the local server's)
    and asyncio's futures and tasks. The server's rows are plain dicts and lists: left out,
    and so are the transport's request watches, which later requests use again (as many as
    requests were ever in flight at once, whatever the number of jobs)."""
    count = 0
    for obj in objects:
        if isinstance(obj, _Watch):
            continue
        module = type(obj).__dict__.get("__module__")
        if not isinstance(module, str) or module.startswith(("oxedit.server", "oxedit.testing")):
            continue
        if module.startswith("oxedit") or isinstance(obj, asyncio.Future):
            count += 1
    return count


async def test_a_pending_job_is_one_object_as_a_raw_clients_future_is() -> None:
    # The raw client keeps a future per pending job. Before: the `Job` the caller holds and
    # the registry's `Pending` (a future subclass); now the job is what the registry keeps.
    async with (
        LocalServer(faults=Faults(latency=3600.0)) as server,
        client_for(server, reconcile=FAST) as client,
    ):
        image = png()
        await client.submit(prompt="p", image=image)  # schema fetched, stream up
        gc.collect()
        before = client_side(gc.get_objects())
        jobs = await asyncio.gather(*(client.submit(prompt="p", image=image) for _ in range(K)))
        for _ in range(3):  # the gather's tasks go: the count starts clean
            await asyncio.sleep(0)
        gc.collect()
        per_job = (client_side(gc.get_objects()) - before) / K
        assert per_job <= 1.1, f"{per_job:.2f} client-side gc-tracked objects per pending job"
        assert not any(job.done() for job in jobs)


async def test_a_job_settled_by_its_event_is_one_object_until_read() -> None:
    # A burst of completions settles jobs faster than their awaiting tasks get their turn:
    # each settled job kept a `Generation` (tracked) meanwhile, which collections promoted to
    # the old generation by the thousand. Now it keeps the decoded event (not tracked) and
    # the generation is made when read.
    async with LocalServer() as server, client_for(server, reconcile=FAST) as client:
        image = png()
        await (await client.submit(prompt="p", image=image))  # schema fetched, stream up
        gc.collect()
        before = client_side(gc.get_objects())
        jobs = await asyncio.gather(*(client.submit(prompt="p", image=image) for _ in range(K)))
        await eventually(lambda: all(job.done() for job in jobs))  # settled, none read
        gc.collect()
        per_job = (client_side(gc.get_objects()) - before) / K
        assert per_job <= 1.1, f"{per_job:.2f} client-side gc-tracked objects per settled job"
        assert all(job.result().status == "succeeded" for job in jobs)


async def test_a_job_let_go_is_freed_at_once_not_by_the_collector() -> None:
    # A job in a reference cycle (it once referred to itself) lives on until a collection
    # finds it, with its result: 50,000 of them made the extra full collections that held up
    # the slowest wakes.
    async with LocalServer() as server, client_for(server, reconcile=FAST) as client:
        jobs = [await client.submit(prompt="p", image=png()) for _ in range(3)]
        await asyncio.gather(*jobs)
        adopted = client.job(jobs[0].id)  # followed anew: settled by its check
        await adopted
        gc.collect()
        gc.disable()
        try:
            del jobs, adopted
            for _ in range(2):  # the loop lets go of the wake-up that resumed this task
                await asyncio.sleep(0)
            left = [o for o in gc.get_objects() if isinstance(o, oxedit.Job)]
        finally:
            gc.enable()
        assert left == [], f"{len(left)} released job(s) wait for the garbage collector"


async def test_a_settled_job_is_freed_while_those_registered_with_it_are_pending() -> None:
    # The registry files jobs registered together (a cohort) for their first check; it once
    # held the jobs themselves, settled or not, until the last of them settled: each settled
    # job and its result lived as long as the slowest of its cohort, for collections to find.
    async with (
        LocalServer(faults=Faults(latency=3600.0)) as server,
        client_for(server, reconcile=FAST) as client,
    ):
        settled, pending = await client.submit_generations(
            prompt="p", image=png(), num_generations=2
        )
        await settled.cancel()  # settled; its sibling, registered with it, still pending
        settled_id = settled.id
        gc.collect()
        gc.disable()
        try:
            del settled
            for _ in range(2):  # the loop lets go of the wake-up that resumed this task
                await asyncio.sleep(0)
            left = [o for o in gc.get_objects() if isinstance(o, oxedit.Job)]
        finally:
            gc.enable()
        assert [job.id for job in left] == [pending.id], f"{settled_id} is still held"
        assert not pending.done()


async def test_an_awaited_job_costs_two_objects_more_than_a_future() -> None:
    # Before: `asyncio.shield` gave each `await job` an outer future, two closures, their cells
    # and two context copies (~10 objects); now a waiter future and the `__await__` frame.
    async with LocalServer(faults=Faults(latency=3600.0)) as server, client_for(server) as client:
        job = await client.submit(prompt="p", image=png())
        loop = asyncio.get_running_loop()
        plain = loop.create_future()

        async def await_job() -> None:
            await job

        async def await_future() -> None:
            await plain

        future_cost = await objects_per_waiter(await_future)
        job_cost = await objects_per_waiter(await_job)
        extra = job_cost - future_cost
        assert extra <= 2.5, f"{extra:.2f} gc-tracked objects more per `await job`"
        assert not job.done()  # every caller above gave up; the job itself was not cancelled


async def test_the_first_await_of_each_job_costs_a_future_more_than_awaiting_a_future() -> None:
    # The usual case (one caller per job): the registry wakes that caller's own plain future
    # (`Pending._waiter`), which the task awaits as it would a raw client's: the future and
    # its iterator. Before: a future subclass that was its own iterator (no object more, but
    # each task took 2.5x as long to resume: benchmarks/README, "a ninth time"); earlier, also
    # a generator of `Job.__await__` and a done callback.
    async with LocalServer(faults=Faults(latency=3600.0)) as server, client_for(server) as client:
        jobs = await asyncio.gather(*(client.submit(prompt="p", image=png()) for _ in range(K)))
        for _ in range(3):  # the gather's tasks go: the counts start clean
            await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        each, plain = iter(jobs), iter([loop.create_future() for _ in range(K)])

        async def await_job() -> None:
            await next(each)

        async def await_future() -> None:
            await next(plain)

        future_cost = await objects_per_waiter(await_future)
        job_cost = await objects_per_waiter(await_job)
        extra = job_cost - future_cost
        assert extra <= 1.5, f"{extra:.2f} gc-tracked objects more per first `await job`"
        assert not any(job.done() for job in jobs)  # their callers gave up, not the jobs
        again = asyncio.create_task(jobs[0].wait())  # a caller gave up: the next one waits
        await asyncio.sleep(0)
        assert not again.done()
        again.cancel()


Start = Callable[[], Coroutine[Any, Any, None]]


@asynccontextmanager
async def parked_waits(**params: Any) -> AsyncIterator[tuple[Start, Start]]:
    """Two ways to park a task, on an open client whose server never answers: `submit(...,
    **params)`, behind the one request in flight, and (the baseline) `async with` a
    semaphore, as a raw client waits for a connection."""
    async with (
        LocalServer(faults=Faults(latency=3600.0)) as server,
        client_for(server, limits=oxedit.Limits(max_connections=1), reconcile=FAST) as client,
    ):
        await client.submit(prompt="p", image=png())  # schema fetched, stream up
        image = png()
        gate = asyncio.Semaphore(0)

        async def submit() -> None:
            await client.submit(prompt="p", image=image, **params)

        async def acquire() -> None:
            async with gate:
                pass

        yield submit, acquire


async def test_a_parked_submit_costs_one_object_more_than_async_with_a_semaphore() -> None:
    # The baseline is the raw client's wait: `async with semaphore` (an `__aenter__` coroutine
    # and a bound `__aexit__`). Before: a comprehension also made four of `enqueue`'s locals
    # closure cells, and the transport waited with `async with` too (about seven more); now
    # only the call chain's own coroutines (submit, enqueue, request) and `acquire()`.
    async with parked_waits() as (submit, acquire):
        gate_cost = await objects_per_waiter(acquire)
        submit_cost = await objects_per_waiter(submit)
        extra = submit_cost - gate_cost
        assert extra <= 2.0, f"{extra:.2f} gc-tracked objects more per parked submit()"


async def allocations_per_waiter(start: Callable[[], Coroutine[Any, Any, Any]]) -> float:
    """The collector's allocation count per task parked in `start()`: every container object
    made and still alive, tracked or not (a dict of strings is never tracked, but counts
    towards the next young collection as any other)."""
    gc.collect()
    gc.disable()
    try:
        before = gc.get_count()[0]
        tasks = [asyncio.create_task(start()) for _ in range(K)]
        await asyncio.sleep(0)  # one loop turn: every task runs up to where it parks
        after = gc.get_count()[0]
    finally:
        gc.enable()
    assert not any(t.done() for t in tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)
    return (after - before) / K


async def test_a_parked_submit_fills_the_young_generation_as_a_semaphore_wait_does() -> None:
    # With 50,000 submits at once, what each parked one allocates sets how many young
    # collections the burst runs (and so how much is promoted towards a full collection).
    # `submit(**params)` kept its keyword dict and the image for as long as it waited, where
    # the payload holds what they held: 2.1 allocations more than a task parked on a
    # semaphore; now about one (the payload dict, a raw client's encoded body).
    async with parked_waits(aspect_ratio="1:1") as (submit, acquire):
        gate_cost = min([await allocations_per_waiter(acquire) for _ in range(2)])
        extra = await allocations_per_waiter(submit) - gate_cost
        assert extra <= 1.5, f"{extra:.2f} allocations more per parked submit()"


def referents_per_waiter(tasks: list[asyncio.Task[None]]) -> float:
    """What a full collection visits for each parked task: the references held by the
    objects the task keeps alive (the task, its coroutines' frames, what they await)."""
    seen: set[int] = set()
    todo: list[object] = list(tasks)
    visited = 0
    while todo:
        obj = todo.pop()
        if id(obj) in seen or not gc.is_tracked(obj):
            continue
        seen.add(id(obj))
        referents = gc.get_referents(obj)
        visited += len(referents)
        # follow what the task holds, not the loop or the client it reaches
        todo.extend(r for r in referents if isinstance(r, asyncio.Future | Coroutine))
        if isinstance(obj, asyncio.Task):
            todo.append(obj.get_coro())
    return visited / len(tasks)


async def test_a_parked_submit_waits_for_its_turn_in_a_small_frame() -> None:
    # A full collection's time goes with the references it visits: 50,000 parked submits once
    # took it 307 ms against 173 ms for as many tasks parked on a semaphore (the same number
    # of objects), because each waited inside `enqueue`'s frame, some 25 live slots: 64
    # references per parked submit against the semaphore's 31. Now a submit waits for its
    # turn in a small frame (`Enqueuer.enqueue_in_turn`): 54, and 210 ms.
    async with parked_waits() as (submit, acquire):
        costs = []
        for start in (acquire, submit):
            tasks = [asyncio.create_task(start()) for _ in range(K)]
            await asyncio.sleep(0)  # each runs up to where it parks
            assert not any(task.done() for task in tasks)
            costs.append(referents_per_waiter(tasks))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        gate_cost, submit_cost = costs
        assert submit_cost <= gate_cost + 25, f"{submit_cost:.1f} references per parked submit"


async def test_giving_up_on_a_job_leaves_it_running_for_the_others() -> None:
    async with (
        LocalServer(faults=Faults(latency=0.3)) as server,
        client_for(server) as client,
    ):
        job = await client.submit(prompt="p", image=png())

        async def wait() -> oxedit.Generation:
            return await job

        keeps, gives_up = asyncio.create_task(wait()), asyncio.create_task(wait())
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(job, 0.001)
        with pytest.raises(oxedit.JobTimeout):
            await job.wait(timeout=0.001)
        gives_up.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gives_up
        assert not job.done()
        assert (await keeps).status == "succeeded"
        assert job.done() and (await job).status == "succeeded"
        assert server.generation(job.id)["status"] == "succeeded"


async def test_a_request_start_keeps_what_a_raw_aiohttp_request_start_does() -> None:
    # While submits are sent, some 15 requests start in a loop turn, each keeping alive what
    # its start made until the answer: what they add up to is what runs young collections
    # (a collection each 700). Before: `async with` kept an `__aenter__` coroutine and a
    # bound `__aexit__` for the whole request, `Api.send` a bound method in a local, and the
    # transport made a new watch: 5.1 objects more than a raw aiohttp request per start here
    # (in an end-to-end run, ten times raw's young collections once the submits were
    # parked). Now 1.1: `Api.send`'s and `Transport.send`'s coroutines, less the `async
    # with` raw keeps (no timer in either: oxedit's API session has none). Both on
    # connections open already.
    image = "data:image/png;base64," + base64.b64encode(png()).decode()
    body = json.dumps({"model": "qwen-image-edit", "prompt": "p", "input_image": image}).encode()
    async with (
        LocalServer() as server,
        client_for(server, limits=oxedit.Limits(max_connections=K), reconcile=FAST) as client,
        aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {server.api_key}"},
            connector=aiohttp.TCPConnector(limit=K),
            timeout=aiohttp.ClientTimeout(total=None),
        ) as session,
    ):
        api = client._tracker.api

        async def raw() -> None:
            async with session.post(
                server.url + "/api/ai/queue",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                await resp.read()

        async def ours() -> None:
            await api.send("POST", "/api/ai/queue", body, route="/api/ai/queue")

        costs = []
        for start in (raw, ours):
            await asyncio.gather(*(start() for _ in range(K)))  # K connections open, idle
            costs.append(await allocations_per_waiter(start))
        raw_cost, our_cost = costs
        assert our_cost - raw_cost <= 2.5, f"{our_cost - raw_cost:.2f} more objects per start"

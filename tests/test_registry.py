"""The one place a job's outcome is decided: exactly once, early events kept, bounded."""

from __future__ import annotations

import asyncio
import contextlib

import msgspec
import pytest

from oxedit import Generation, GenerationExpired, ReconcilePolicy
from oxedit import _constants as C
from oxedit._engine.registry import Registry
from oxedit._engine.schedule import CheckSchedule
from oxedit._models import Status, json_encoder

pytestmark = pytest.mark.anyio


def done(generation_id: str, status: Status = "succeeded") -> Generation:
    return Generation(id=generation_id, status=status, url=f"http://x/{generation_id}")


async def test_resolves_once_and_counts_duplicates() -> None:
    registry = Registry()
    pending = registry.add("a")
    assert registry.resolve(done("a"))
    assert not registry.resolve(done("a", "failed"))  # a late or duplicate event
    assert pending._result() == done("a")
    assert len(registry) == 0


async def test_non_terminal_rows_do_not_resolve() -> None:
    registry = Registry()
    registry.add("a")
    assert not registry.resolve(Generation(id="a", status="processing"))
    assert len(registry) == 1


def event(generation_id: str, status: Status = "succeeded") -> bytes:
    """The data of a completion event, as the stream carries it."""
    return json_encoder.encode(
        {"generation_id": generation_id, "status": status, "url": f"http://x/{generation_id}"}
    )


async def test_event_before_its_enqueue_response_is_kept() -> None:
    registry = Registry()
    flight = registry.enqueue_started()
    assert not registry.event(event("early"))  # nobody waits for it yet
    pending = registry.add("early")
    registry.enqueue_finished(flight)
    assert pending._outcome is not None
    outcome = pending._result()
    assert isinstance(outcome, Generation) and outcome.id == "early"


async def test_unknown_events_are_dropped_when_no_enqueue_is_in_flight() -> None:
    registry = Registry()
    registry.event(event("someone-else"))  # another process's generation
    assert registry.add("someone-else")._outcome is None
    assert registry.early_size() == (0, 0)


async def test_early_buffer_is_bounded_and_cleared() -> None:
    registry = Registry(early_limit=3)
    flight = registry.enqueue_started()
    for i in range(10):
        registry.event(event(f"g{i}"))
    assert registry.early_size()[0] == 3
    assert registry.add("g0")._outcome is None  # evicted: the oldest go first
    assert registry.add("g9")._outcome is not None
    registry.enqueue_finished(flight)
    assert registry.early_size() == (0, 0)
    registry.enqueue_started()
    assert registry.add("g8")._outcome is None  # cleared when no enqueue was in flight


async def test_a_newer_enqueue_ending_first_leaves_what_an_older_one_may_claim() -> None:
    registry = Registry()
    older = registry.enqueue_started()
    registry.event(event("a"))
    newer = registry.enqueue_started()
    registry.event(event("b"))
    newest = registry.enqueue_started()
    registry.enqueue_finished(newer)
    registry.enqueue_finished(newest)
    assert registry.early_size()[0] == 2  # `older` may still announce either
    registry.enqueue_finished(older)
    assert registry.early_size() == (0, 0)
    again = registry.enqueue_started()
    registry.event(event("c"))
    registry.enqueue_finished(again)  # the oldest in flight again, then none
    assert registry.early_size() == (0, 0)


async def test_early_buffer_is_bounded_in_bytes() -> None:
    one = len(event("g0")) + C.EARLY_EVENT_OVERHEAD
    registry = Registry(early_bytes=3 * one)
    registry.enqueue_started()
    for i in range(10):
        registry.event(event(f"g{i}"))
    assert registry.early_size() == (3, 3 * one)
    assert registry.add("g9")._outcome is not None and registry.add("g6")._outcome is None


async def test_early_events_last_as_long_as_an_enqueue_that_may_claim_them() -> None:
    registry = Registry()
    slow = registry.enqueue_started()
    registry.event(event("a"))  # may be the slow enqueue's
    fast = registry.enqueue_started()
    registry.event(event("b"))  # may be either's
    registry.enqueue_finished(slow)
    assert registry.early_size()[0] == 1  # "a" came before `fast` started: not its
    assert registry.add("a")._outcome is None
    assert registry.add("b")._outcome is not None
    registry.enqueue_finished(fast)


async def test_late_events_of_settled_jobs_are_not_kept() -> None:
    registry = Registry()
    registry.add("mine")
    registry.event(event("mine"))
    registry.enqueue_started()
    assert not registry.event(event("mine", "failed"))  # a duplicate
    assert registry.early_size() == (0, 0)


async def test_malformed_early_event_leaves_the_job_pending() -> None:
    registry = Registry()
    registry.enqueue_started()
    registry.event(b'{"generation_id": "a", "status": 7}')  # only the id is read now
    assert registry.add("a")._outcome is None  # its check settles it


async def test_fail_and_due() -> None:
    policy = ReconcilePolicy(stale_floor=1e-9, stale_after=1e-9)  # due at once
    registry = Registry(schedule=CheckSchedule(policy))
    pending = registry.add("a")
    registry.add("b")
    assert set(registry.due()) == {"a", "b"}
    error = GenerationExpired("a")
    assert registry.fail("a", error) and not registry.fail("a", error)
    assert pending._result() is error
    assert registry.fail_all(error) == 1 and len(registry) == 0


async def test_checks_follow_the_age_not_the_number_of_looks() -> None:
    # Every stream reconnect looks at every pending job: that must not postpone its checks
    # (it once doubled the wait each time, up to 16 x stale_after).
    policy = ReconcilePolicy(stale_floor=100.0, stale_after=100.0, interval=400.0)
    registry = Registry(schedule=CheckSchedule(policy))
    registry.add("a", "m")
    first = registry.due_at("a")  # unchecked yet: its registration + the first check's delay
    assert first is not None
    born = first - registry.schedule.first_check("m")
    assert registry.due() == []
    dues = set()
    for _ in range(7):
        registry.checked("a")
        due = registry.due_at("a")
        assert due is not None
        dues.add(due - born)
    # At age ~0 the next check is the first one, however often looked at (to a tick).
    assert all(100 - registry.schedule.tick <= due <= 100 for due in dues)


def hand_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The running loop's clock, moved by hand: `clock[0] += seconds`."""
    now = [asyncio.get_running_loop().time()]
    monkeypatch.setattr(asyncio.get_running_loop(), "time", lambda: now[0])
    return now


async def test_a_due_job_stays_scheduled_whatever_its_check_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = hand_clock(monkeypatch)
    registry = Registry()  # first check at 10 s, then every 5 s at that age
    registry.add("a")
    clock[0] += 9.0
    assert registry.due() == []
    clock[0] += 1.0
    assert registry.due() == ["a"]
    assert registry.due() == []
    clock[0] += 5.0  # nobody called `checked`: due again at its next check, once
    assert registry.due() == ["a"]
    assert registry.due() == []


async def test_settled_and_rescheduled_jobs_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = hand_clock(monkeypatch)
    registry = Registry()
    for name in "abcd":
        registry.add(name)
    registry.resolve(done("b"))
    registry.checked("c")
    registry.checked("c")  # filed once however often looked at
    clock[0] += 10.0
    assert sorted(registry.due()) == ["a", "c", "d"]
    registry.checked("d")
    registry.resolve(done("a"))
    clock[0] += 5.0
    assert sorted(registry.due()) == ["c", "d"]


async def test_a_moved_job_is_checked_at_its_age(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = hand_clock(monkeypatch)
    registry = Registry()
    registry.add("a")
    clock[0] += 30.0
    assert registry.move("a", "b") is not None
    assert registry.due() == ["b"]  # past its first check: at once
    assert registry.current("a") == "b" and registry.knows("a")
    registry.resolve(done("b"))
    outcome = registry.get("b")
    assert outcome is None and registry.current("a") == "a"


async def test_event_latency_teaches_the_schedule() -> None:
    registry = Registry(schedule=CheckSchedule(ReconcilePolicy()))
    registry.add("a", "m")
    registry.resolve(done("a"), event=True)
    registry.add("b", "m")
    registry.resolve(done("b"))  # from a reconciliation: not a latency sample
    assert registry.schedule.first_check("m") == ReconcilePolicy().stale_floor


async def test_a_chunks_jobs_are_woken_first_and_learnt_from_once_the_woken_ran(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = hand_clock(monkeypatch)
    registry = Registry(schedule=CheckSchedule(ReconcilePolicy()))
    awaited = registry.add("a", "m")
    awaited._waiter = waiter = asyncio.get_running_loop().create_future()  # an `await job`
    registry.add("b", "m")
    clock[0] += 15.0
    assert registry.events([event("a"), event("b"), event("a", "failed")]) == 3
    assert waiter.done() and waiter.result().id == "a"
    assert registry.knows("a") and registry.knows("b") and not registry.knows("c")
    assert len(registry) == 0  # the duplicate of "a" settled nothing
    assert registry.schedule.first_check("m") == ReconcilePolicy().stale_floor  # not yet
    clock[0] += 100.0
    await asyncio.sleep(0)  # one loop turn: the woken tasks have run, then the samples come
    assert registry.schedule.first_check("m") == 3 * 15.0  # as of when the events were read


async def test_known_ids_are_bounded_but_pending_ones_stay_known() -> None:
    registry = Registry(known_ttl=0.0)  # forget at once
    registry.add("pending")
    registry.add("done")
    registry.resolve(done("done"))
    assert registry.knows("done")  # kept one TTL at least
    registry.claim("x")
    registry.claim("y")  # two TTLs later
    assert registry.knows("pending")  # still waited for
    assert not registry.knows("done")


def _registry_fed(
    batched: bool, datas: list[bytes], early_limit: int, early_bytes: int
) -> tuple[Registry, list[int]]:
    """A registry with a job "mine" pending, one enqueue in flight, fed `datas` one by one or
    as one chunk; and the counts of foreign events it reported."""
    foreign: list[int] = []
    registry = Registry(on_foreign=foreign.append, early_limit=early_limit, early_bytes=early_bytes)
    registry.add("mine")
    registry.enqueue_started()
    if batched:
        assert registry.events(datas) == len(datas)
    else:
        for data in datas:
            registry.event(data)
    return registry, foreign


@pytest.mark.parametrize(
    ("early_limit", "early_bytes"),
    [(100, 100_000), (5, 100_000), (100, 1000)],
)
async def test_a_chunk_of_events_ends_as_the_events_one_by_one(
    early_limit: int, early_bytes: int
) -> None:
    datas = [event(f"g{i}") for i in range(30)] + [event("g29"), event("g28")]  # duplicates
    datas[12] = event("mine")
    one_by_one, foreign = _registry_fed(False, datas, early_limit, early_bytes)
    batched, batched_foreign = _registry_fed(True, datas, early_limit, early_bytes)
    assert batched.early_size() == one_by_one.early_size()
    assert sum(batched_foreign) == sum(foreign)
    assert len(batched_foreign) <= 1  # once for the whole chunk, not once per event
    assert [batched.is_early(f"g{i}") for i in range(30)] == [
        one_by_one.is_early(f"g{i}") for i in range(30)
    ]
    assert len(batched) == len(one_by_one) == 0  # "mine" settled


async def test_events_read_whole_after_one_of_ours_end_as_read_by_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # After an event of its own, the next is decoded whole at once: another process's event
    # whose other fields do not decode is still only another process's (as read by its id
    # alone), and ours still settle, whatever comes between them.
    datas = [
        event("mine1"),
        event("mine2"),
        b'{"generation_id": "theirs1", "status": 7}',
        event("mine3"),
        b"{",
        event("theirs2"),
        event("mine4", "failed"),
    ]
    outcomes = []
    for batched in (False, True):
        foreign: list[int] = []
        registry = Registry(on_foreign=foreign.append)
        jobs = [registry.add(f"mine{i}") for i in range(1, 5)]
        if batched:
            assert registry.events(datas) == len(datas) - 1  # `{` is malformed
        else:
            for data in datas:
                with contextlib.suppress(msgspec.DecodeError):
                    registry.event(data)
        outcomes.append(([job._result() for job in jobs], sum(foreign), len(registry)))
    assert outcomes[0] == outcomes[1]
    results, foreign_count, left = outcomes[1]
    statuses = [r.status for r in results if isinstance(r, Generation)]
    assert statuses == ["succeeded", "succeeded", "succeeded", "failed"]
    assert (foreign_count, left) == (2, 0)
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) == 1


async def test_a_chunk_with_a_malformed_event_reads_the_others(
    caplog: pytest.LogCaptureFixture,
) -> None:
    foreign: list[int] = []
    registry = Registry(on_foreign=foreign.append)
    pending = registry.add("mine")
    bad = [b"{", b'{"generation_id": "mine", "status": 7}']
    assert registry.events([event("x"), *bad, event("mine"), event("y")]) == 3
    assert pending._result() == done("mine")
    assert foreign == [2]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2
    assert all("ignoring a malformed media_generation_completed event" in w for w in warnings)

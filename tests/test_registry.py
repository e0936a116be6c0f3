"""The one place a job's outcome is decided: exactly once, early events kept, bounded."""

from __future__ import annotations

import pytest

from oxedit import Generation, GenerationExpired, ReconcilePolicy
from oxedit._engine.registry import Registry
from oxedit._engine.schedule import CheckSchedule
from oxedit._models import Status

pytestmark = pytest.mark.anyio


def done(generation_id: str, status: Status = "succeeded") -> Generation:
    return Generation(id=generation_id, status=status, url=f"http://x/{generation_id}")


async def test_resolves_once_and_counts_duplicates() -> None:
    registry = Registry(early_ttl=60)
    pending = registry.add("a")
    assert registry.resolve(done("a"))
    assert not registry.resolve(done("a", "failed"))  # a late or duplicate event
    assert pending.future.result() == done("a")
    assert len(registry) == 0


async def test_non_terminal_rows_do_not_resolve() -> None:
    registry = Registry(early_ttl=60)
    registry.add("a")
    assert not registry.resolve(Generation(id="a", status="processing"))
    assert len(registry) == 1


async def test_event_before_its_enqueue_response_is_kept() -> None:
    registry = Registry(early_ttl=60)
    registry.enqueue_started()
    assert not registry.resolve(done("early"))  # nobody waits for it yet
    pending = registry.add("early")
    registry.enqueue_finished()
    assert pending.future.done()
    outcome = pending.future.result()
    assert isinstance(outcome, Generation) and outcome.id == "early"


async def test_unknown_events_are_dropped_when_no_enqueue_is_in_flight() -> None:
    registry = Registry(early_ttl=60)
    registry.resolve(done("someone-else"))  # another process's generation
    assert not registry.add("someone-else").future.done()


async def test_early_buffer_is_bounded_and_cleared() -> None:
    registry = Registry(early_ttl=60, early_limit=3)
    registry.enqueue_started()
    for i in range(10):
        registry.resolve(done(f"g{i}"))
    assert not registry.add("g0").future.done()  # evicted: the oldest go first
    assert registry.add("g9").future.done()
    registry.enqueue_finished()
    registry.enqueue_started()
    assert not registry.add("g8").future.done()  # cleared when no enqueue was in flight


async def test_fail_and_due() -> None:
    policy = ReconcilePolicy(stale_floor=1e-9, stale_after=1e-9)  # due at once
    registry = Registry(early_ttl=60, schedule=CheckSchedule(policy))
    pending = registry.add("a")
    registry.add("b")
    assert {p.id for p in registry.due()} == {"a", "b"}
    error = GenerationExpired("a")
    assert registry.fail("a", error) and not registry.fail("a", error)
    assert pending.future.result() is error
    assert registry.fail_all(error) == 1 and len(registry) == 0


async def test_checks_follow_the_age_not_the_number_of_looks() -> None:
    # Every stream reconnect looks at every pending job: that must not postpone its checks
    # (it once doubled the wait each time, up to 16 x stale_after).
    policy = ReconcilePolicy(stale_floor=100.0, stale_after=100.0, interval=400.0)
    registry = Registry(early_ttl=60, schedule=CheckSchedule(policy))
    pending = registry.add("a", "m")
    assert registry.due() == []
    dues = set()
    for _ in range(7):
        registry.checked("a")
        dues.add(round(pending.due - pending.born))
    assert dues == {100}  # at age ~0 the next check is the first one, however often looked at


async def test_event_latency_teaches_the_schedule() -> None:
    registry = Registry(early_ttl=60, schedule=CheckSchedule(ReconcilePolicy()))
    registry.add("a", "m")
    registry.resolve(done("a"), event=True)
    registry.add("b", "m")
    registry.resolve(done("b"))  # from a reconciliation: not a latency sample
    assert registry.schedule.first_check("m") == ReconcilePolicy().stale_floor


async def test_known_ids_are_bounded_but_pending_ones_stay_known() -> None:
    registry = Registry(early_ttl=60, known_ttl=0.0)  # forget at once
    registry.add("pending")
    registry.add("done")
    registry.resolve(done("done"))
    registry.add("later")  # adding prunes what is older than the TTL
    assert registry.knows("pending")  # still waited for
    assert not registry.knows("done")

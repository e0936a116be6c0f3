"""The connection slots: at most n holders, waiters served in order, no slot lost to a
cancellation (the transport's bound on API requests in flight)."""

from __future__ import annotations

import asyncio

import pytest

from oxedit._http.slots import Slots

pytestmark = pytest.mark.anyio


async def _parked(slots: Slots) -> asyncio.Task[None]:
    task = asyncio.create_task(slots.acquire())
    await asyncio.sleep(0)  # one turn of the loop: it runs up to its wait
    assert not task.done()
    return task


async def _two_waiting() -> tuple[Slots, asyncio.Task[None], asyncio.Task[None]]:
    """One slot, taken; two acquires waiting for it, in that order."""
    slots = Slots(1)
    assert slots.take()
    return slots, await _parked(slots), await _parked(slots)


async def _holds(task: asyncio.Task[None]) -> None:
    """`task` got its slot within a few turns of the loop (a lost slot fails here, not by
    hanging)."""
    for _ in range(3):
        if task.done():
            break
        await asyncio.sleep(0)
    assert task.done() and task.exception() is None


def test_free_slots_are_taken_without_waiting_and_then_refused() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take()
    assert not slots.take()
    slots.release()
    assert slots.take()


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="n=0"):
        Slots(0)


async def test_a_released_slot_goes_to_the_oldest_waiter_not_to_a_newcomer() -> None:
    slots, first, second = await _two_waiting()
    slots.release()
    assert not slots.take()  # promised to `first`, which has not run yet
    await _holds(first)
    assert not second.done()
    slots.release()
    await _holds(second)
    slots.release()
    assert slots.take()


async def test_a_waiter_cancelled_in_line_is_passed_by() -> None:
    slots, gone, waiting = await _two_waiting()
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    slots.release()
    await _holds(waiting)
    slots.release()
    assert slots.take() and not slots.take()  # one slot, never two


async def test_a_waiter_cancelled_after_it_was_handed_a_slot_gives_it_to_the_next() -> None:
    slots, handed, next_one = await _two_waiting()
    slots.release()  # `handed` holds the slot now, but has not run
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    await _holds(next_one)  # the slot was passed on, not lost
    slots.release()
    assert slots.take() and not slots.take()

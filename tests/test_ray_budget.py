"""`oxedit.ray.RateBudget`, the pure body of the cluster's rate budget actor, at its edges, on a
fake clock; and the issue's goal (4 actors against a 50/s token bucket with a burst of 20:
under 5% of enqueues refused, throughput within 10% of the limit) in a simulation of its
actors and the account, event by event, on that clock (no sleeps, no Ray).

Skipped when Ray is not installed, except in CI (`CI=true`), where that fails."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from oxedit import _constants as C

if os.environ.get("CI") != "true":  # in CI the extra is installed: without it, this fails
    pytest.importorskip("ray")

from oxedit.ray import RateBudget, _LeasedPace


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def accept(budget: RateBudget, clock: Clock, rate: float, seconds: float) -> None:
    """The actors tell `rate`/s enqueues accepted, one every 1/rate s, for `seconds`."""
    for _ in range(round(rate * seconds)):
        clock.now += 1 / rate
        budget.succeeded(1)


def test_the_slow_start_begins_low_and_doubles_about_every_half_second_of_full_use() -> None:
    clock = Clock()
    budget = RateBudget(clock=clock)
    assert budget.rate == C.RAY_RATE_START and budget.slow_start
    # Half a second at the rate: the first grows it less (what was accepted over the last
    # second bounds it: a young run has little), then about doubling each half second.
    accept(budget, clock, budget.rate, 0.5)
    assert C.RAY_RATE_START < budget.rate < 2 * C.RAY_RATE_START
    for _ in range(4):
        before = budget.rate
        accept(budget, clock, budget.rate, 0.5)
        assert 1.5 * before <= budget.rate <= 2.2 * before
    assert budget.slow_start  # nothing refused yet


def test_a_rate_the_actors_do_not_use_is_not_grown() -> None:
    # 5 enqueues/s for a minute: a slow first batch must not leave a rate that bursts later.
    clock = Clock()
    budget = RateBudget(clock=clock)
    accept(budget, clock, 5.0, 60.0)
    assert budget.rate == C.RAY_RATE_START
    accept(budget, clock, 40.0, 2.0)
    assert budget.rate <= C.RAY_RATE_HEADROOM * 40.0


def test_a_lease_never_promises_more_than_its_window_ahead() -> None:
    clock = Clock()
    budget = RateBudget(max_rate=40.0, clock=clock)
    count, delay, spacing = budget.lease(1000)
    assert (delay, spacing) == (0.0, 1 / 40) and count == math.floor(40 * C.RAY_LEASE_SECONDS) + 1
    # The window is promised: the next asker gets nothing now, and a time to come back
    # when half of the window is free again.
    count, delay, _ = budget.lease(1000)
    assert count == 0 and delay == pytest.approx(C.RAY_LEASE_SECONDS / 2 + 1 / 40)
    clock.now += delay
    count, delay, _ = budget.lease(1000)  # the next tokens follow the promised ones
    assert count > 0 and delay == pytest.approx(C.RAY_LEASE_SECONDS / 2)
    # Idle for a while: no saved-up turns, the next lease starts now.
    clock.now += 10
    assert budget.lease(3)[:2] == (3, 0.0)


def test_a_drop_goes_just_under_what_the_account_accepted_and_keeps_promised_turns() -> None:
    clock = Clock()
    budget = RateBudget(max_rate=80.0, clock=clock)
    accept(budget, clock, 50.0, 2.0)  # a 50/s account took 50/s of the 80 sent
    count, _, _ = budget.lease(1000)
    promised_until = clock.now + count / 80.0
    budget.refused(sent_at=clock.now, retry_after=1.0, status=429)
    assert budget.rate == pytest.approx(50.0 * C.RAY_RATE_DECREASE, rel=0.03)
    assert not budget.slow_start
    # The turns leased before the drop stay promised: the new rate's come after them.
    count, delay, _ = budget.lease(1)
    assert count == 0
    clock.now += delay
    count, delay, spacing = budget.lease(1)
    assert count == 1 and clock.now + delay == pytest.approx(promised_until)
    assert spacing == pytest.approx(1 / budget.rate)


def test_refusals_answered_by_a_drop_do_not_lower_the_rate_again() -> None:
    clock = Clock()
    budget = RateBudget(max_rate=80.0, clock=clock)
    accept(budget, clock, 50.0, 2.0)
    sent = clock.now
    budget.refused(sent_at=sent, retry_after=1.0, status=429)
    dropped = budget.rate
    # The same overshoot's other refusals, sent before the drop or on tokens leased before
    # it (within a lease window after it), come back: one drop for them all.
    for i in range(10):
        clock.now += 0.01
        budget.refused(sent_at=sent + i * C.RAY_LEASE_SECONDS / 10, retry_after=1.0, status=429)
    assert budget.rate == dropped and budget.drops == 1 and budget.refusals == 11
    # A refusal of a send on the new rate is news.
    clock.now = sent + C.RAY_LEASE_SECONDS
    budget.refused(sent_at=clock.now, retry_after=1.0, status=429)
    assert budget.drops == 2 and budget.rate < dropped


@pytest.mark.parametrize("limit", [5.0, 60.0, 1000.0])
def test_after_a_drop_the_rate_grows_gently_in_proportion_to_itself(limit: float) -> None:
    clock = Clock()
    budget = RateBudget(clock=clock)
    accept(budget, clock, limit, 2.0)
    budget.refused(sent_at=clock.now, retry_after=1.0, status=429)
    dropped = budget.rate
    assert dropped == pytest.approx(limit * C.RAY_RATE_DECREASE, rel=0.05)
    accept(budget, clock, dropped, 5.0)  # five seconds at that rate: ~3% a second
    assert budget.rate == pytest.approx(dropped * (1 + 5 * C.RAY_RATE_INCREASE), rel=0.02)


def test_nothing_accepted_lately_starts_slowly_again_up_to_the_drop() -> None:
    clock = Clock()
    budget = RateBudget(clock=clock)
    accept(budget, clock, 100.0, 3.0)
    clock.now += 30  # an outage: nothing accepted since
    budget.refused(sent_at=clock.now, retry_after=1.0, status=503)
    assert budget.rate == C.RAY_RATE_START and budget.slow_start
    ceiling = budget._threshold
    assert ceiling > C.RAY_RATE_START
    accept(budget, clock, 100.0, 5.0)
    assert not budget.slow_start and budget.rate <= ceiling * (1 + 5 * C.RAY_RATE_INCREASE)


def test_an_explicit_max_rate_is_where_it_starts_and_never_passed() -> None:
    clock = Clock()
    budget = RateBudget(max_rate=30.0, clock=clock)
    assert budget.rate == 30.0 and not budget.slow_start
    accept(budget, clock, 30.0, 20.0)
    assert budget.rate == 30.0
    budget.refused(sent_at=clock.now, retry_after=None, status=429)
    assert budget.rate == pytest.approx(30.0 * C.RAY_RATE_DECREASE, rel=0.03)
    accept(budget, clock, 27.0, 30.0)
    assert budget.rate == 30.0


def test_a_long_retry_after_pauses_every_actor_a_token_bucket_refill_does_not() -> None:
    clock = Clock()
    budget = RateBudget(clock=clock)
    accept(budget, clock, 20.0, 1.0)
    budget.refused(sent_at=clock.now, retry_after=C.RAY_PAUSE_AFTER, status=429)
    assert budget.lease(1)[:2] == (1, 0.0)
    budget.refused(sent_at=clock.now + 1, retry_after=86_400, status=429)  # a daily quota
    count, delay, _ = budget.lease(1)
    assert count == 0 and delay == pytest.approx(C.RETRY_AFTER_MAX - C.RAY_LEASE_SECONDS / 2)


class Remote:
    """A Ray actor method as `_LeasedPace` calls it: `.remote(...)`, awaited or not."""

    def __init__(self, calls: list[tuple[Any, ...]], answers: list[Any] | None = None) -> None:
        self.calls, self.answers = calls, answers

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        self.calls.append(args)
        future = asyncio.get_running_loop().create_future()
        future.set_result(self.answers.pop(0) if self.answers else None)
        return future


def test_an_actor_asks_for_its_waiting_sends_again_when_the_window_is_promised() -> None:
    leases: list[tuple[Any, ...]] = []
    refusals: list[tuple[Any, ...]] = []
    budget = type("Budget", (), {})()
    budget.lease = Remote(leases, [(0, 0.001, 0.0), (3, 0.0, 0.001), (1, 0.0, 0.001)])
    budget.refused = Remote(refusals)
    budget.succeeded = Remote([])

    async def main() -> None:
        pace = _LeasedPace(budget)
        # Three sends wait: one lease asks for 3; none now, so it asks again; 3 tokens.
        await asyncio.gather(*(pace.acquire() for _ in range(3)))
        assert leases == [(3, 0), (3, 0)]
        pace.succeeded()
        pace.succeeded()
        pace.refused(sent_at=1.0, retry_after=1.0, status=429)  # tells what was accepted
        assert refusals == [(1.0, 1.0, 429, 2)]
        await pace.acquire()
        assert leases[-1] == (1, 0)

    asyncio.run(main())


# -- the goal, simulated --------------------------------------------------------------------------


@dataclass
class Account:
    """The server's token bucket (as `oxedit serve --enqueue-rate-limit`)."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float = 0.0

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def simulate(
    actors: int, rows: int, *, limit: float, burst: float, call: float, answer: float
) -> tuple[int, int, float]:
    """`rows` enqueues from `actors` actors sharing one `RateBudget` (each with every row of
    its share waiting): a budget call takes `call` s, an enqueue's answer `answer` s; a
    refused one is sent again after its `Retry-After: 1`. Returns (accepted, refused,
    accepted per second from the first acceptance to the last)."""
    clock = Clock(0.0)
    budget = RateBudget(clock=clock)
    account = Account(limit, burst)
    events: list[tuple[float, int, Callable[[], None]]] = []
    order = itertools.count()
    waiting = [rows // actors] * actors  # rows of each actor waiting for a token
    leasing = [False] * actors
    accepted_at: list[float] = []
    refused = 0

    def at(when: float, action: Callable[[], None]) -> None:
        heapq.heappush(events, (when, next(order), action))

    def lease(a: int) -> None:
        if leasing[a] or not waiting[a]:
            return
        leasing[a] = True

        def granted() -> None:
            count, delay, spacing = budget.lease(waiting[a])
            leasing[a] = False
            if not count:
                at(clock.now + delay + call, lambda: lease(a))
                return
            waiting[a] -= count
            for i in range(count):
                at(clock.now + call + delay + i * spacing, lambda: send(a))
            at(clock.now + call, lambda: lease(a))  # the rest wait for the next lease

        at(clock.now + call, granted)

    def send(a: int) -> None:
        sent = clock.now
        ok = account.take(sent)

        def answered() -> None:
            nonlocal refused
            if ok:
                accepted_at.append(clock.now)
                at(clock.now + call, lambda: budget.succeeded(1))
            else:
                refused += 1
                at(clock.now + call, lambda: budget.refused(sent, 1.0, 429))
                at(clock.now + 1.0, lambda: retry(a))

        at(sent + answer, answered)

    def retry(a: int) -> None:
        waiting[a] += 1
        lease(a)

    for a in range(actors):
        at(0.0, lambda a=a: lease(a))  # type: ignore[misc]
    while events:
        clock.now, _, action = heapq.heappop(events)
        action()
    span = accepted_at[-1] - accepted_at[0]
    return len(accepted_at), refused, (len(accepted_at) - 1) / span


@pytest.mark.parametrize("actors", [1, 4])
@pytest.mark.parametrize("answer", [0.005, 0.2])
def test_actors_sharing_the_budget_stay_under_5_percent_refused_and_near_the_limit(
    actors: int, answer: float
) -> None:
    # The goal, on a local server (answers in 5 ms) and on a far one (200 ms).
    accepted, refused, per_second = simulate(
        actors, 2000, limit=50.0, burst=20.0, call=0.001, answer=answer
    )
    assert accepted == 2000
    assert refused < 0.05 * (accepted + refused), refused
    assert per_second >= 45.0, per_second


@pytest.mark.parametrize(("limit", "burst"), [(5.0, 5.0), (1000.0, 100.0)])
def test_the_budget_holds_as_well_at_a_small_limit_and_a_large_one(
    limit: float, burst: float
) -> None:
    # A far server; 1,000 enqueues at least (the slow start's first overshoot costs 10-25
    # refusals whatever the limit, 10% of a 200-enqueue run at 5/s), 40 s at the limit at
    # least. With a fixed +2/s each second of probing, the 5/s account refused 21% of the
    # enqueues, and the 1,000/s one got 78% of its limit.
    rows = max(1000, int(40 * limit))
    accepted, refused, per_second = simulate(
        4, rows, limit=limit, burst=burst, call=0.001, answer=0.2
    )
    assert accepted == rows
    assert refused < 0.05 * (accepted + refused), refused
    assert per_second >= 0.85 * limit, per_second

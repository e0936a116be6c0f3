"""When a pending job with no event is checked: its age and its model's latency, nothing else."""

from __future__ import annotations

import pytest

from oxedit import ReconcilePolicy
from oxedit._engine.schedule import CheckSchedule, percentile


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert percentile([5.0, 1.0], 0.5) == 1.0


def test_cold_client_checks_at_the_floor() -> None:
    schedule = CheckSchedule(ReconcilePolicy(stale_floor=10, stale_after=60))
    assert schedule.first_check("qwen-image-edit") == 10


@pytest.mark.parametrize(
    ("latencies", "first"),
    [
        ([1.0, 2.0, 2.5], 10.0),  # 3 x 2.5 = 7.5 is under the floor
        ([4.0, 12.0, 5.0], 36.0),  # 3 x p99
        ([100.0], 60.0),  # never over stale_after
    ],
)
def test_first_check_is_a_multiple_of_the_observed_p99(
    latencies: list[float], first: float
) -> None:
    schedule = CheckSchedule(ReconcilePolicy(stale_floor=10, stale_after=60, latency_multiple=3))
    for latency in latencies:
        schedule.observe("m", latency)
    assert schedule.first_check("m") == first
    assert schedule.first_check("other") == 10  # per model


def test_latency_window_forgets_old_samples() -> None:
    schedule = CheckSchedule(ReconcilePolicy(stale_floor=1, stale_after=1000), window=4)
    schedule.observe("m", 200.0)
    for _ in range(4):
        schedule.observe("m", 2.0)
    assert schedule.first_check("m") == 6.0


def test_gap_is_half_the_age_within_bounds() -> None:
    schedule = CheckSchedule(ReconcilePolicy(stale_floor=10, interval=20))
    assert schedule.gap(0) == 5  # floor / 2
    assert schedule.gap(16) == 8
    assert schedule.gap(1000) == 20  # interval


def test_floor_above_stale_after_is_clamped() -> None:
    schedule = CheckSchedule(ReconcilePolicy(stale_floor=10, stale_after=0.3, interval=0.1))
    assert schedule.floor == 0.3 and schedule.first_check(None) == 0.3
    assert schedule.gap(50) == 0.1
    assert 0.005 <= schedule.tick <= 0.1


@pytest.mark.parametrize("p99", [0.0, 1.0, 7.0, 30.0])
@pytest.mark.parametrize("finished_at", [0.5, 9.0, 10.0, 33.3, 61.0, 250.0, 3600.0])
def test_a_job_is_checked_soon_after_it_finished(p99: float, finished_at: float) -> None:
    # The README's bound: a job that finished at age L with no event is checked by age
    # max(first check, L + interval), whatever the latency history.
    policy = ReconcilePolicy()
    schedule = CheckSchedule(policy)
    if p99:
        schedule.observe("m", p99)
    first = schedule.first_check("m")
    check = schedule.next_due(born=0.0, now=0.0, model="m")
    assert check == first
    checks = 1
    while check < finished_at:
        check = schedule.next_due(born=0.0, now=check, model="m")
        checks += 1
    assert check <= max(first, finished_at + policy.interval)
    assert check <= max(first, finished_at + schedule.gap(finished_at))
    # And the cost stays logarithmic, then linear at one check per interval.
    assert checks <= 8 + finished_at / policy.interval

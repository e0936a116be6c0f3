"""When to ask the queue endpoints about a pending job: from its age and its model's latency.

Pure (no I/O, the caller passes the clock), so the bound it gives can be checked at its edges.
A job is first checked once it is older than a multiple of the p99 completion latency this
client observed for its model (clamped to `[stale_floor, stale_after]`), then again as it ages,
each gap half its age, clamped to `[stale_floor / 2, interval]`. Only the age counts: how often
a job was looked at (every stream reconnect looks at every pending job) never postpones it.
"""

from __future__ import annotations

import math
from collections import deque

from .. import _constants as C
from .._config import ReconcilePolicy

__all__ = ["CheckSchedule", "percentile"]


def percentile(samples: deque[float] | list[float], fraction: float) -> float:
    """The nearest-rank percentile of `samples` (not empty), e.g. `fraction=0.99` for p99."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


class CheckSchedule:
    """Learns each model's completion latency and says when a pending job is due for a check.

    Example:
        ```python
        schedule = CheckSchedule(ReconcilePolicy())
        schedule.observe("qwen-image-edit", 4.2)  # enqueue -> event, seconds
        due = schedule.next_due(born=t0, now=t0, model="qwen-image-edit")
        ```
    """

    __slots__ = ("_first", "_policy", "_samples", "_window", "floor", "tick")

    def __init__(self, policy: ReconcilePolicy, *, window: int = C.LATENCY_WINDOW) -> None:
        self._policy = policy
        self.floor = min(policy.stale_floor, policy.stale_after)
        # How often the reconciler looks for due jobs: fine enough that it adds little to the
        # bound, coarse enough that a scan of every pending job stays cheap.
        self.tick = max(0.005, min(1.0, self.floor / 4, policy.interval / 4))
        self._samples: dict[str | None, deque[float]] = {}
        self._first: dict[str | None, float] = {}
        self._window = window

    def observe(self, model: str | None, latency: float) -> None:
        """Record that a job of `model` finished `latency` seconds after it was registered."""
        samples = self._samples.get(model)
        if samples is None:
            samples = self._samples[model] = deque(maxlen=self._window)
        samples.append(latency)
        self._first.pop(model, None)

    def first_check(self, model: str | None) -> float:
        """Age (seconds since enqueue) at which a job of `model` is first checked."""
        first = self._first.get(model)
        if first is None:
            samples = self._samples.get(model)
            p99 = percentile(samples, 0.99) if samples else 0.0
            policy = self._policy
            first = min(max(policy.latency_multiple * p99, self.floor), policy.stale_after)
            self._first[model] = first
        return first

    def gap(self, age: float) -> float:
        """Seconds until the next check of a job found still active at `age`."""
        return min(self._policy.interval, max(age * 0.5, self.floor * 0.5))

    def next_due(self, *, born: float, now: float, model: str | None) -> float:
        """When a job registered at `born` and checked (or seen active) at `now` is next due."""
        return max(born + self.first_check(model), now + self.gap(now - born))

"""An enqueue whose connection is cut while the backend goes on and commits the row later:
found and adopted within the search window, never sent again before it closes, and a row
committed after it (the request was sent again) cancelled on sight. Over real sockets."""

from __future__ import annotations

import asyncio
import logging

import pytest

import oxedit
from oxedit.testing import Faults, LocalServer

from .helpers import FAST_RETRY, client_for, eventually, png
from .test_resilience import assert_matches_server, settle

pytestmark = pytest.mark.anyio

GRACE = 0.02
# The search before: three checks `GRACE` apart (3 s with the defaults), each as long as its
# list requests take (here about a second in all, as the checks read the recent history while
# 300 jobs run). A backend that committed later than that made the client send again: billed
# twice. Here the backend commits later than that (the 20 s for a 3 s search, scaled
# down) and the window is set to cover it.
COMMIT_DELAY = 1.2
WINDOW = 1.6


def policy(window: float) -> oxedit.ReconcilePolicy:
    return oxedit.ReconcilePolicy(
        stale_after=0.3, interval=0.1, lost_response_grace=GRACE, lost_response_window=window
    )


async def test_rows_committed_after_the_old_search_are_adopted_not_billed_twice() -> None:
    # 300 jobs, 3% of the enqueues cut and committed after the old search, within the
    # window: each is adopted.
    faults = Faults(seed=20, lost_response_rate=0.03, commit_delay=COMMIT_DELAY)
    async with LocalServer(faults=faults) as server:
        async with client_for(server, reconcile=policy(window=WINDOW), retry=FAST_RETRY) as client:
            image = png()
            gate = asyncio.Semaphore(16)  # a steady stream: a loss is noticed at once

            async def submit(i: int) -> oxedit.Job:
                async with gate:
                    return await client.submit(prompt=f"late {i}", image=image)

            jobs = await asyncio.gather(*(submit(i) for i in range(300)))
            assert len({job.id for job in jobs}) == 300
            outcomes = await settle(jobs)  # an error would raise here
            stats = client.stats
        await server.wait_idle()  # every late commit made, too
        assert_matches_server(server, outcomes, 300)  # nothing billed twice
        assert set(outcomes.values()) == {"succeeded"}
    assert stats.lost_responses > 0
    assert stats.adopted == stats.lost_responses and stats.enqueue_requests == 300
    assert stats.late_duplicates_cancelled == 0


async def test_a_row_committed_after_the_window_is_cancelled_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every enqueue is cut and committed after the window closed: the client sent it again
    # (that row is the job's), and the late one is cancelled as soon as it shows, not billed
    # for a generation nobody follows.
    faults = Faults(lost_response_rate=1.0, commit_delay=0.5, latency=0.5)
    async with LocalServer(faults=faults) as server:
        async with client_for(server, reconcile=policy(window=0.2), retry=FAST_RETRY) as client:
            first = asyncio.ensure_future(client.submit(prompt="late", image=png()))
            await eventually(lambda: client.stats.lost_responses == 1)
            server.faults.lost_response_rate = 0.0  # the one sent again is answered
            job = await first
            await eventually(lambda: client.stats.late_duplicates_cancelled == 1)
            assert (await job).status == "succeeded"
        await server.wait_idle()
        rows = {row["generation_id"]: row["status"] for row in server.generations()}
    assert rows.pop(job.id) == "succeeded"
    assert list(rows.values()) == ["cancelled"]
    late = next(iter(rows))
    assert any(
        r.levelno == logging.WARNING and late in r.getMessage() for r in caplog.records
    ), caplog.text


def test_the_window_is_a_policy_setting_with_a_safe_default() -> None:
    assert oxedit.ReconcilePolicy().lost_response_window >= 30.0
    with pytest.raises(oxedit.InvalidRequestError, match="lost_response_window"):
        oxedit.ReconcilePolicy(lost_response_window=-1)

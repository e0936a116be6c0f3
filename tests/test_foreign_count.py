"""`ClientStats.foreign_events`: every stream carries all of the account's events; a client
counts those about generations it does not follow (another process's), and only those."""

from __future__ import annotations

import pytest

from oxedit.testing import LocalServer

from .helpers import client_for, eventually, png

pytestmark = pytest.mark.anyio


async def test_each_client_counts_the_others_events_as_foreign() -> None:
    async with LocalServer() as server, client_for(server) as mine, client_for(server) as other:
        await (await other.submit(prompt="warm up", image=png())).wait()  # its stream is up
        jobs = [await mine.submit(prompt=f"edit {i}", image=png()) for i in range(20)]
        for job in jobs:
            await job.wait()
        await eventually(lambda: other.stats.foreign_events == 20)
        assert mine.stats.foreign_events <= 1  # at most the other's warm-up
        assert mine.stats.events >= 20

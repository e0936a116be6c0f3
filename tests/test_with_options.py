"""`Client.with_options`: other settings for some calls, one life, one stream, one set of jobs."""

from __future__ import annotations

import pytest

import oxedit
from oxedit.testing import LocalServer

from .helpers import FAST_RETRY, client_for, png

pytestmark = pytest.mark.anyio

GET_ONE = "GET /api/ai/queue/{generation_id}"
ENQUEUE = "POST /api/ai/queue"


async def test_max_retries_applies_to_the_derived_clients_calls_only(
    oxen_server: LocalServer,
) -> None:
    async with client_for(oxen_server, retry=FAST_RETRY) as client:
        job = await client.submit(prompt="p", image=png())
        await job
        hasty = client.with_options(max_retries=0)
        oxen_server.faults.get_error_rate = 1.0
        before = oxen_server.stats.requests_by_route[GET_ONE]
        with pytest.raises(oxedit.ServerError):
            await hasty.get(job.id)
        assert oxen_server.stats.requests_by_route[GET_ONE] - before == 1
        with pytest.raises(oxedit.ServerError):
            await client.get(job.id)  # the parent keeps its own policy: 1 + 8 retries
        assert oxen_server.stats.requests_by_route[GET_ONE] - before == 1 + 1 + 8
        oxen_server.faults.get_error_rate = 0.0
        oxen_server.faults.enqueue_5xx_rate = 1.0
        sent = oxen_server.stats.requests_by_route[ENQUEUE]
        with pytest.raises(oxedit.ServerError):
            await hasty.submit(prompt="p", image=png())
        assert oxen_server.stats.requests_by_route[ENQUEUE] - sent == 1


async def test_a_timeout_applies_to_the_derived_clients_requests(
    oxen_server: LocalServer,
) -> None:
    async with client_for(oxen_server) as client:
        job = await client.submit(prompt="p", image=png())
        await job
        oxen_server.faults.drip_interval = 0.2  # a byte every 0.2 s: an answer takes minutes
        with pytest.raises(oxedit.APITimeoutError, match="within 0.5 s"):
            await client.with_options(timeout=0.5, max_retries=0).get(job.id)


async def test_the_derived_client_shares_the_jobs_and_the_life(oxen_server: LocalServer) -> None:
    client = client_for(oxen_server)
    derived = client.with_options(max_retries=2)
    with pytest.raises(oxedit.ClientStateError, match="derived from"):
        async with derived:
            pass
    async with client:
        async with derived:  # nothing to open: the parent's life
            job = await derived.submit(prompt="p", image=png())
        assert (await client.job(job.id)).status == "succeeded"
        assert (await job).status == "succeeded"
        assert client.stats.event_connections == 1  # one stream for both
    with pytest.raises(oxedit.ClientStateError, match="closed"):
        await derived.get(job.id)


async def test_bad_options_are_refused_naming_the_value(oxen_server: LocalServer) -> None:
    client = client_for(oxen_server)
    with pytest.raises(oxedit.InvalidRequestError, match="timeout=-1"):
        client.with_options(timeout=-1)
    with pytest.raises(oxedit.InvalidRequestError, match="max_retries=-2"):
        client.with_options(max_retries=-2)


ROUTE_MODEL = "GET /api/ai/models/{model_id}"
ROUTE_UPLOAD = "PUT /api/repos/{namespace}/{repo_name}/file/{resource}"


async def test_a_derived_clients_settings_reach_every_request_it_causes(
    oxen_server: LocalServer,
) -> None:
    # Schema fetches, uploads and the row re-read behind a result's download are requests the
    # derived client causes: they follow its policy (no retry), not the parent's (8 retries).
    async with client_for(oxen_server, retry=FAST_RETRY, upload_repo="ox/inputs") as client:
        hasty = client.with_options(max_retries=0)
        oxen_server.faults.refuse_models = 1  # the first schema fetch is refused once
        before = oxen_server.stats.requests_by_route[ROUTE_MODEL]
        job = await hasty.submit(prompt="p", image=png((9, 9, 9)))
        assert oxen_server.stats.requests_by_route[ROUTE_MODEL] - before == 1  # not retried
        await job

        oxen_server.faults.fail_uploads = 1
        uploads = oxen_server.stats.requests_by_route[ROUTE_UPLOAD]
        with pytest.raises(oxedit.ServerError):
            await hasty.submit(prompt="p", image=png())
        assert oxen_server.stats.requests_by_route[ROUTE_UPLOAD] - uploads == 1  # not retried

        oxen_server.faults.url_ttl = 0.0  # URLs expire at once: a read re-reads the row
        gen = await (await hasty.submit(prompt="p", image=png((1, 2, 3)))).wait()
        oxen_server.faults.get_error_rate = 1.0  # ... which fails
        before = oxen_server.stats.requests_by_route[GET_ONE]
        with pytest.raises(oxedit.OxeditError):
            await gen.read()
        assert oxen_server.stats.requests_by_route[GET_ONE] - before == 1  # not retried

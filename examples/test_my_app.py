"""Testing your own code against the local server, with the fixtures oxedit installs.

Installing oxedit registers a pytest plugin: `oxen_server` (a fresh local server per test),
`oxen_client` (an `oxedit.Client` connected to it) and the `oxen_faults` marker. Copy this
into your tests and run `pytest` (anyio's plugin runs the async tests).
"""

from pathlib import Path

import pytest

import oxedit

SUNSET = (Path(__file__).parent / "images" / "sunset.png").read_bytes()


async def make_thumbnail(client: oxedit.Client, image: bytes) -> bytes:
    """The code under test: your app's use of oxedit."""
    job = await client.submit(prompt="Make it black and white", image=image, aspect_ratio="1:1")
    return await (await job).read()


@pytest.mark.anyio
async def test_thumbnail_is_a_png(oxen_client: oxedit.Client) -> None:
    data = await make_thumbnail(oxen_client, SUNSET)
    assert data.startswith(b"\x89PNG")


@pytest.mark.anyio
@pytest.mark.oxen_faults(failure_rate=1.0)  # every generation fails
async def test_failures_reach_the_caller(oxen_client: oxedit.Client) -> None:
    with pytest.raises(oxedit.GenerationFailed):
        await make_thumbnail(oxen_client, SUNSET)

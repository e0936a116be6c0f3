"""The pytest plugin under each async test runner a user may have: anyio alone, anyio beside
pytest-asyncio, pytest-asyncio strict (`@pytest.mark.asyncio`) and auto (no marker).

Each case runs an inner pytest session in a subprocess with its own configuration, so our
suite's settings (`filterwarnings = error`, anyio fixtures, strict markers) neither leak into it
nor hide its failures. The inner sessions turn warnings into errors themselves, so a plugin that
only warns under some runner fails here too.
"""

from __future__ import annotations

import pytest

from ._helpers import data_uri

# One inner test file per case; {mark} is the marker line each runner needs.
INNER = """
import pytest

import oxedit
from oxedit.testing import Faults, LocalServer

{mark}
async def test_an_edit_round_trip(oxen_server, oxen_client):
    assert isinstance(oxen_server, LocalServer) and isinstance(oxen_client, oxedit.Client)
    job = await oxen_client.submit(prompt="invert", image=DATA_URI)
    generation = await job
    assert generation.id == oxen_server.generations()[0]["generation_id"]


{mark}
@pytest.mark.oxen_faults(failure_rate=1.0, seed=3)
async def test_the_marker_sets_the_faults(oxen_server, oxen_faults, oxen_client):
    assert oxen_server.faults is oxen_faults and oxen_faults.failure_rate == 1.0
    job = await oxen_client.submit(prompt="invert", image=DATA_URI)
    with pytest.raises(oxedit.GenerationFailed):
        await job


{mark}
@pytest.mark.oxen_faults(failure_rat=1.0, sede=3)
async def test_an_unknown_key_is_an_error(oxen_server):
    pass
"""

DATA_URI = data_uri()  # a real PNG

ANYIO = """
import pytest

@pytest.fixture
def anyio_backend():
    return "asyncio"
"""


def run_inner(pytester: pytest.Pytester, mark: str, ini: str, *extra_args: str) -> pytest.RunResult:
    pytester.makeini(f"[pytest]\nfilterwarnings = error\naddopts = --strict-markers\n{ini}")
    pytester.makeconftest(ANYIO if "anyio" in mark else "")
    source = INNER.format(mark=mark).replace("DATA_URI", repr(DATA_URI))
    pytester.makepyfile(test_inner=source)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error", *extra_args)


def check(result: pytest.RunResult) -> None:
    """Two tests pass, the unknown key errors at setup, naming the keys and the valid ones."""
    result.assert_outcomes(passed=2, errors=1)
    out = result.stdout.str()
    assert "unknown Faults field(s) failure_rat, sede; valid ones: " in out, out
    assert "failure_rate" in out and "seed" in out.split("valid ones: ", 1)[1]
    assert "warnings summary" not in out and "Warning" not in out, out


LOOP_SCOPE = "asyncio_default_fixture_loop_scope = function\n"


@pytest.mark.slow
def test_plain_anyio_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    check(run_inner(pytester, "@pytest.mark.anyio", "", "-p", "no:asyncio"))


@pytest.mark.slow
def test_anyio_beside_pytest_asyncio_strict(pytester: pytest.Pytester) -> None:
    check(run_inner(pytester, "@pytest.mark.anyio", "asyncio_mode = strict\n" + LOOP_SCOPE))


@pytest.mark.slow
def test_pytest_asyncio_strict(pytester: pytest.Pytester) -> None:
    check(run_inner(pytester, "@pytest.mark.asyncio", "asyncio_mode = strict\n" + LOOP_SCOPE))


@pytest.mark.slow
def test_pytest_asyncio_auto(pytester: pytest.Pytester) -> None:
    check(run_inner(pytester, "", "asyncio_mode = auto\n" + LOOP_SCOPE))


@pytest.mark.slow
def test_a_test_no_runner_handles_gets_a_clear_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nfilterwarnings = error\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_sync="""
        def test_sync(oxen_server):
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*oxen_server runs on the test's event loop*"])

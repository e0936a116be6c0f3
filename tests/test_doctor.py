"""`oxedit doctor` against the local server: all OK in its default mode; each documented
ambiguity modelled the other way (a `Faults` switch) is reported as "differs" with its remedy,
and the client then works."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from oxedit._cli.findings import findings_file, hub_profile, load_findings, save_findings
from oxedit._cli.main import main
from oxedit.testing import Faults, LocalServer

from .helpers import cli, png

pytestmark = pytest.mark.anyio

KEY = "doctor-SECRET-key-7f3a9c"
# Keep-alives every 50 ms, and doctor waits half a second for one: fast either way.
FAST = ("--keepalive-timeout", "0.5")
PUT = "PUT /api/repos/{namespace}/{repo_name}/file/{resource}"
EDIT = "POST /api/ai/images/edit"
META = {
    kind: f"GET /api/repos/{{namespace}}/{{repo_name}}/{kind}/{{resource}}"
    for kind in ("meta", "metadata")
}


def fast_faults(**fields: Any) -> Faults:
    return Faults(keepalive_interval=0.05, **fields)


async def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = await cli("doctor", *FAST, "--json", *args)
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err  # never printed, whatever happened
    return code, json.loads(captured.out)


def verdicts(report: dict[str, Any]) -> dict[str, str]:
    return {c["check"]: c["verdict"] for c in report["checks"]}


def only_differs(report: dict[str, Any], check: str) -> dict[str, Any]:
    """The one check that differs, which must be `check`; every other is OK (or could not
    be told, as the key's namespace never can)."""
    differ: list[dict[str, Any]] = [c for c in report["checks"] if c["verdict"] == "differs"]
    assert [c["check"] for c in differ] == [check], report["checks"]
    unknown = [c["check"] for c in report["checks"] if c["verdict"] == "unknown"]
    assert unknown == ["key's namespace"]
    return differ[0]


async def test_default_server_everything_ok_and_json_shape(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer(api_key=KEY, faults=fast_faults()) as server:
        use_server(server)
        code, report = await doctor(capsys)
        assert server.generations() == []  # read-only: nothing created
    assert code == 0 and report["exit_code"] == 0
    assert set(report) == {"base_url", "exit_code", "checks", "learned", "generation_id"}
    assert report["generation_id"] is None
    for check in report["checks"]:
        assert set(check) == {"check", "assumes", "observed", "verdict", "remedy"}
    assert verdicts(report) == {
        "key, queue list": "ok",
        "key's namespace": "unknown",
        "models list": "ok",
        "model schema": "ok",
        "model pricing": "ok",
        "edit image field": "ok",
        "event stream": "ok",
        "history page": "ok",
        "history page numbering": "ok",
    }
    assert report["learned"] == {"edit_field": "input_image", "history_first_page": 1}


async def test_the_table_does_not_depend_on_the_terminal_width(
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
    columns: str,
) -> None:
    async with LocalServer(faults=fast_faults(send_keepalives=False)) as server:
        use_server(server)
        assert await cli("doctor", *FAST) == 1
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│ event stream ")]
    assert len(rows) == 1  # one line per check: nothing wrapped at 40 columns
    assert "open; no keep-alive in 0.5 s" in rows[0] and "differs" in rows[0]
    assert "7 OK, 1 differ, 1 could not tell" in out


async def test_spend_yes_with_upload_everything_ok_and_the_key_stays_secret(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer(api_key=KEY, faults=fast_faults()) as server:
        use_server(server)
        code, report = await doctor(capsys, "--spend", "--yes", "--upload-to", "ox/doctor")
        rows = server.generations()
        assert server.stats.file_requests_with_auth == 0  # the file host never saw the key
    assert code == 0, report["checks"]
    assert [row["generation_id"] for row in rows] == [report["generation_id"]]  # one only
    assert rows[0]["model_name"] == "flux-2-dev"  # the cheapest (tied, then by id)
    got = verdicts(report)
    for check in ("repository upload", "repository metadata route", "enqueue", "generation",
                  "completion event", "generation row", "result URL", "history cost"):  # fmt: skip
        assert got[check] == "ok", report["checks"]
    assert report["learned"] == {
        "edit_field": "input_image",
        "metadata_route": "meta",
        "history_first_page": 1,
    }
    assert KEY not in findings_file(report["base_url"]).read_text()


async def test_spend_asks_first_and_off_a_terminal_needs_yes(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer(faults=fast_faults()) as server:
        use_server(server)
        assert await cli("doctor", *FAST, "--spend") == 2
        assert server.generations() == []
    assert "pass --yes" in capsys.readouterr().err


async def test_a_refused_key_differs_and_stops_there(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer(faults=fast_faults()) as server:
        monkeypatch.setenv("OXEN_BASE_URL", server.url)
        monkeypatch.setenv("OXEN_API_KEY", KEY)  # not this server's
        code, report = await doctor(capsys)
    assert code == 1
    [check] = report["checks"]
    assert check["check"] == "key" and check["verdict"] == "differs"
    assert "HTTP 401" in check["observed"] and "OXEN_API_KEY" in check["remedy"]


def test_bad_flags_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--keepalive-timeout", "0"], ["--upload-to", "no-slash"]):
        with pytest.raises(SystemExit) as raised:
            main(["doctor", *argv])
        assert raised.value.code == 2
    assert "not an Oxen repository" in capsys.readouterr().err


# -- each ambiguity the other way: "differs", the remedy, and the client works --------------------


@pytest.mark.parametrize("route", ["meta", "metadata"])
async def test_the_metadata_route_found_is_the_only_one_later_commands_ask(
    route: str,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A hub may route either `/meta/` (oxen-server's) or `/metadata/` (the docs'): the uploader
    # works with either, and what doctor found seeds the route it keeps to, so a later
    # command does not ask the other one first.
    async with LocalServer(faults=fast_faults(), metadata_routes=(route,)) as server:
        use_server(server)
        code, report = await doctor(capsys, "--upload-to", "ox/doctor")
        assert code == 0, report["checks"]
        check = verdicts(report)
        assert check["repository metadata route"] == "ok"
        assert report["learned"]["metadata_route"] == route
        monkeypatch.setenv("OXEN_UPLOAD_REPO", "ox/doctor")
        asked = server.stats.requests_by_route[META[route]]
        assert await cli("edit", str(image(tmp_path)), "invert", "-o", str(tmp_path / "o.png")) == 0
        assert server.stats.requests_by_route[META[route]] == asked + 1  # the cat: missing
        assert await cli("edit", str(image(tmp_path)), "invert", "-o", str(tmp_path / "o.png")) == 0
        uploads = server.stats.requests_by_route[PUT]
    # The probe image, then the cat once: the second edit found it.
    assert uploads == 2


async def test_where_both_routes_answer_later_commands_ask_only_the_one_found(
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    async with LocalServer(faults=fast_faults()) as server:
        use_server(server)
        code, report = await doctor(capsys, "--upload-to", "ox/doctor")
        assert code == 0, report["checks"]
        assert report["learned"]["metadata_route"] == "meta"
        before = server.stats.requests_by_route.copy()
        monkeypatch.setenv("OXEN_UPLOAD_REPO", "ox/doctor")
        assert await cli("edit", str(image(tmp_path)), "invert", "-o", str(tmp_path / "o.png")) == 0
        after = server.stats.requests_by_route
    # Unseeded, a missing image is asked of /meta/, then of /metadata/, before its upload.
    assert after[META["meta"]] - before[META["meta"]] == 1
    assert after[META["metadata"]] - before[META["metadata"]] == 0
    assert after[PUT] - before[PUT] == 1


def image(folder: Path) -> Path:
    path = folder / "cat.png"
    if not path.exists():
        path.write_bytes(png())
    return path


async def test_history_from_zero_is_counted_from_zero_afterwards(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer(faults=fast_faults(history_first_page=0)) as server:
        use_server(server)
        async with server.client() as client:
            newest = await (await client.submit(prompt="invert", image=png()))
        code, report = await doctor(capsys)
        assert code == 1
        check = only_differs(report, "history page numbering")
        assert check["remedy"].startswith("counts pages from 0")
        assert load_findings(server.url) == {"edit_field": "input_image", "history_first_page": 0}
        async with server.client(hub=hub_profile(server.url)) as client:
            page = await client.history(page=1)
    assert [e.generation.id for e in page.generations] == [newest.id]


async def test_image_field_is_sent_first_afterwards(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer(faults=fast_faults(edit_field="image")) as server:
        use_server(server)
        code, report = await doctor(capsys)
        assert code == 1
        check = only_differs(report, "edit image field")
        assert "image is required" in check["observed"]
        assert check["remedy"].startswith("sends `image`")
        probes = server.stats.requests_by_route[EDIT]
        async with server.client(hub=hub_profile(server.url)) as client:
            result = await client.edit(prompt="invert", image=png())
            assert await client.read(result)
        assert server.stats.requests_by_route[EDIT] - probes == 1  # no refused first try


async def test_no_keepalives_differs_and_jobs_still_finish(
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    async with LocalServer(faults=fast_faults(send_keepalives=False)) as server:
        use_server(server)
        code, report = await doctor(capsys)
        assert code == 1
        check = only_differs(report, "event stream")
        assert "reconnects and reconciles" in check["remedy"]
        (tmp_path / "cat.png").write_bytes(png())
        assert await cli("edit", str(tmp_path / "cat.png"), "invert") == 0


async def test_results_on_the_api_host_differ_and_download_with_the_key(
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    async with LocalServer(api_key=KEY, faults=fast_faults(), results_on_api_host=True) as server:
        use_server(server)
        code, report = await doctor(capsys, "--spend", "--yes")
        assert code == 1
        check = only_differs(report, "result URL")
        assert check["observed"].startswith("on the API host; without the key: HTTP 401")
        assert "only there" in check["remedy"]
        (tmp_path / "cat.png").write_bytes(png())
        out = tmp_path / "out.png"
        assert await cli("edit", str(tmp_path / "cat.png"), "invert", "-o", str(out)) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


# -- findings -------------------------------------------------------------------------------------


def test_findings_keep_only_known_values_of_their_own_url() -> None:
    url = "http://127.0.0.1:1"
    assert load_findings(url) == {}
    save_findings(url, {"edit_field": "image", "other": 1})
    save_findings(url, {"history_first_page": 0})  # merged with what was there
    assert load_findings(url) == {"edit_field": "image", "history_first_page": 0}
    path = findings_file(url)
    path.write_text(json.dumps({"base_url": url, "edit_field": "img", "history_first_page": 0.0}))
    assert load_findings(url) == {}  # not one of the values oxedit knows
    path.write_text(json.dumps({"base_url": "http://elsewhere", "edit_field": "image"}))
    assert load_findings(url) == {}


def test_faults_check_the_history_first_page() -> None:
    with pytest.raises(ValueError, match="history_first_page"):
        Faults(history_first_page=2)

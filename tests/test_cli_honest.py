"""An honest command line: unwrapped, escaped errors; batch-wide mistakes are one usage error
before anything is sent; exit codes; what a resumed run reports; output formats."""

from __future__ import annotations

import io
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from oxedit.testing import LocalServer

from .helpers import cli, png

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).parent.parent / "examples"
QUEUE = "POST /api/ai/queue"


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


async def test_errors_are_one_unwrapped_line_and_markup_is_escaped(
    tmp_path: Path, columns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / ("a-long-folder-name-" * 6) / "no[/]such[red].jsonl"
    code = await cli("batch", str(source), "--prompt", "p", "--out", str(tmp_path / "out"))
    assert code == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert str(source) in line and "no such folder or manifest" in line


async def test_tables_are_not_wrapped(
    columns: str, use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer() as server:
        use_server(server)
        assert await cli("models", "qwen-image-edit") == 0
        (row,) = [line for line in capsys.readouterr().out.splitlines() if "aspect_ratio" in line]
        assert "1:1" in row and "16:9" in row  # the whole row on one line
        assert await cli("models") == 0
        (row,) = [
            line for line in capsys.readouterr().out.splitlines() if "qwen-image-edit " in line
        ]
        assert "image" in row


def corrupt_journal(folder: Path) -> list[str]:
    journal = folder / "broken.sqlite"
    journal.write_bytes(b"this is not a database, it is a shopping list " * 100)
    return ["--journal", str(journal)]


def journal_under_a_file(folder: Path) -> list[str]:
    (folder / "afile").write_text("x")
    return ["--journal", str(folder / "afile" / "j.sqlite")]


def out_is_a_file(folder: Path) -> list[str]:
    (folder / "afile").write_text("x")
    return ["--out", str(folder / "afile")]


def out_under_a_file(folder: Path) -> list[str]:
    (folder / "afile").write_text("x")
    return ["--out", str(folder / "afile" / "out")]


@pytest.mark.parametrize(
    ("case", "extra", "message"),
    [
        ("out is a file", out_is_a_file, "is not a folder"),
        ("out cannot be made", out_under_a_file, "cannot be created"),
        ("no prompt anywhere", lambda folder: ["--no-prompt"], "no prompt"),
        ("unknown model", lambda folder: ["--model", "no-such-model"], "no-such-model"),
        ("corrupt journal", corrupt_journal, "is not an oxedit journal or is damaged"),
        ("journal cannot be made", journal_under_a_file, "cannot be opened"),
        ("stray newline in key", lambda folder: ["--key", "oxen-test-key\n"], "OXEN_API_KEY"),
    ],
)
async def test_batch_wide_mistakes_are_one_usage_error_before_sending(
    tmp_path: Path,
    columns: str,
    monkeypatch: pytest.MonkeyPatch,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
    case: str,
    extra: Callable[[Path], list[str]],
    message: str,
) -> None:
    argv = ["batch", str(EXAMPLES / "images"), "--out", str(tmp_path / "out")]
    options = extra(tmp_path)
    if options == ["--no-prompt"]:
        options = []
    else:
        argv += ["--prompt", "invert"]
    async with LocalServer() as server:
        use_server(server)
        if options[:1] == ["--key"]:
            monkeypatch.setenv("OXEN_API_KEY", options[1])
            options = []
        code = await cli(*argv, *options)
        sent = server.stats.requests_by_route[QUEUE]
    assert (code, sent) == (2, 0), case
    (line,) = error_lines(capsys.readouterr().err)
    assert message in line
    assert "oxen-test-key" not in line  # a key is never printed


async def test_a_journal_in_use_is_exit_2_naming_the_process(
    tmp_path: Path, use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    from oxedit._bulk.journal import Journal

    holder = Journal(tmp_path / "out" / ".oxedit-journal.sqlite")
    try:
        async with LocalServer() as server:
            use_server(server)
            argv = (
                "batch",
                str(EXAMPLES / "images"),
                "--prompt",
                "blur",
                "--out",
                str(tmp_path / "out"),
            )
            assert await cli(*argv) == 2
            assert server.stats.requests_by_route[QUEUE] == 0
    finally:
        holder.close()
    (line,) = error_lines(capsys.readouterr().err)
    assert f"in use by process {os.getpid()}" in line


async def test_exit_codes_api_refusals_are_1(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer() as server:
        use_server(server)
        assert await cli("status", "no-such-id") == 1
        assert await cli("cancel", "no-such-id") == 1
    assert len(error_lines(capsys.readouterr().err)) == 2


async def test_a_resumed_run_reports_what_it_did_itself(
    tmp_path: Path, use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    """Items an earlier run sent and this run followed count as succeeded now; only the items
    skipped as already done count as resumed."""
    out = tmp_path / "out"
    argv = ("batch", str(EXAMPLES / "images"), "--prompt", "invert", "--out", str(out))
    async with LocalServer() as server:
        use_server(server)
        assert await cli(*argv) == 0
        # As if the first run had been killed with three items sent but not finished.
        db = sqlite3.connect(out / ".oxedit-journal.sqlite")
        keys = [k for (k,) in db.execute("SELECT key FROM items ORDER BY key LIMIT 3")]
        db.executemany(
            "UPDATE items SET state='enqueued', output=NULL WHERE key=?", [(k,) for k in keys]
        )
        db.commit()
        db.close()
        capsys.readouterr()
        assert await cli(*argv) == 0
        assert len(server.generations()) == 8
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["succeeded"] == 3 and report["summary"]["resumed"] == 5
    assert sum(item["resumed"] for item in report["items"]) == 5
    stderr = capsys.readouterr().err
    assert "succeeded (this run)" in stderr


def test_progress_and_summary_give_the_same_rate() -> None:
    from rich.console import Console

    import oxedit
    from oxedit._cli.progress import BatchProgress, summary_table

    now = [100.0]
    console = Console(file=io.StringIO(), width=200)
    progress = BatchProgress(console, total=6, clock=lambda: now[0])
    request = oxedit.EditRequest(image="a.png", prompt="p")
    with progress:
        for i in range(4):
            progress.add(oxedit.BulkResult(i, request, "succeeded"), in_flight=0)
        for i in range(4, 6):  # skipped: done by an earlier run, no work now
            progress.add(oxedit.BulkResult(i, request, "succeeded", resumed=True), in_flight=0)
        now[0] = 102.0
        assert progress.rate == pytest.approx(2.0)
        console.print(progress.rate_text())
    console.print(summary_table(progress, Path("out"), Path("out/report.json"), interrupted=None))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "2.0/s" in text and "2.0 items/s" in text


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".jpg", b"\xff\xd8\xff"), (".webp", b"RIFF"), (".png", b"\x89PNG")]
)
async def test_edit_writes_the_format_its_extension_names(
    tmp_path: Path, use_server: Callable[[LocalServer], None], suffix: str, magic: bytes
) -> None:
    (tmp_path / "in.png").write_bytes(png())
    target = tmp_path / f"out{suffix}"
    async with LocalServer() as server:
        use_server(server)
        assert await cli("edit", str(tmp_path / "in.png"), "flip", "-o", str(target)) == 0
    assert target.read_bytes().startswith(magic)
    with Image.open(target) as image:
        image.load()


async def test_edit_refuses_an_extension_it_cannot_write_before_sending(
    tmp_path: Path, use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.png").write_bytes(png())
    async with LocalServer() as server:
        use_server(server)
        code = await cli("edit", str(tmp_path / "in.png"), "flip", "-o", str(tmp_path / "out.txt"))
        assert server.stats.requests_by_route[QUEUE] == 0
    assert code == 2
    (line,) = error_lines(capsys.readouterr().err)
    assert "out.txt" in line and ".jpg" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere: permissions cannot be tested")
async def test_an_out_folder_that_is_not_writable_is_a_usage_error(
    tmp_path: Path, use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        async with LocalServer() as server:
            use_server(server)
            argv = ("batch", str(EXAMPLES / "images"), "--prompt", "blur", "--out", str(locked))
            assert await cli(*argv) == 2
            assert server.stats.requests_by_route[QUEUE] == 0
    finally:
        locked.chmod(0o700)
    (line,) = error_lines(capsys.readouterr().err)
    assert "is not writable" in line


async def test_a_full_disk_ends_the_batch_with_a_report_that_says_so(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    import errno

    async def full_disk(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("oxedit._bulk.run.save_atomic", full_disk)
    out = tmp_path / "out"
    async with LocalServer() as server:
        use_server(server)
        argv = ("batch", str(EXAMPLES / "images"), "--prompt", "blur", "--out", str(out))
        code = await cli(*argv, "--concurrency", "2")
        created = len(server.generations())
    assert code == 1 and created == 2
    report = json.loads((out / "report.json").read_text())
    assert "disk is full" in report["summary"]["stopped_early"]
    assert report["summary"]["interrupted"] is False
    assert [item["status"] for item in report["items"]] == ["error", "error"]
    assert any(
        line.startswith("stopped early: the disk is full")
        for line in capsys.readouterr().err.splitlines()
    )


def test_api_keys_with_whitespace_are_refused_without_echoing_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from oxedit import ConfigurationError
    from oxedit._config import resolve_api_key

    url = "http://127.0.0.1:1"
    assert resolve_api_key("abc-123_XYZ.=", url) == "abc-123_XYZ.="
    for key in ("secret-key\n", " secret-key", "secret key", "secret\tkey", "secret\x00key"):
        with pytest.raises(ConfigurationError, match="the api_key argument") as caught:
            resolve_api_key(key, url)
        assert "secret" not in str(caught.value)
    monkeypatch.setenv("OXEN_API_KEY", "secret-key\r\n")
    with pytest.raises(ConfigurationError, match=r"OXEN_API_KEY contains '\\n', '\\r'"):
        resolve_api_key(None, url)


def test_names_are_plain_file_names() -> None:
    from oxedit import EditRequest, InvalidRequestError
    from oxedit._bulk.requests import check_name

    for good in ("cat", "cat.v2", "...x", "a b", "über-katze", ".hidden"):
        assert check_name(good) == good
        assert (
            EditRequest.from_mapping({"image": "a.png", "prompt": "p", "name": good}).name == good
        )
    for bad in ("", ".", "..", "../x", "x/..", "/abs", "a/b", "a\\b", "nul\x00"):
        with pytest.raises(InvalidRequestError, match="not a plain file name"):
            check_name(bad)

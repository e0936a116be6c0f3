"""The HTML report (`report.html`): built from a real batch's journal and outputs (succeeded,
failed, cancelled and error items, against the local server), escaped, rebuilt by
`oxedit report DIR`, and written by `oxedit batch` even when it is interrupted."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from aiohttp import web

from oxedit._bulk.journal import Journal
from oxedit._cli.report.build import write_html_report
from oxedit._cli.report.page import embed_json
from oxedit._cli.report.thumbs import THUMBS_DIR
from oxedit.testing import Faults, LocalServer

from .helpers import FAST, cli, client_for, interrupt, png, run_all, serve

pytestmark = pytest.mark.anyio

HOSTILE = "<script>alert(1)</script>"
UNREACHABLE = "http://127.0.0.1:9/gone.png"  # the discard port: refused at once
_BLOB = re.compile(r'<script type="application/json" id="oxedit-data">(.*?)</script>', re.S)


@asynccontextmanager
async def image_host() -> AsyncIterator[str]:
    """A plain web server with one PNG: the URL of an input given as a URL."""
    body = png((250, 200, 20), (40, 30))

    async def sun(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="image/png")

    async with serve(sun) as url:
        yield f"{url}/sun.png"


async def mixed_run(tmp_path: Path, url: str) -> Path:
    """A batch in three runs on one journal and output folder: one item failed, one cancelled
    (silently, found by reconciliation), then succeeded ones (a hostile prompt, an input URL),
    one refused before sending (error) and one whose input URL is unreachable (failed).
    Returns the output folder (its journal is the default one)."""
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(4):
        paths.append(folder / f"p{i}.png")
        paths[-1].write_bytes(png((60 * i, 120, 200), (48, 32)))
    out = tmp_path / "out"
    journal = out / ".oxedit-journal.sqlite"
    faults = Faults(latency=0.05, failure_rate=1.0)
    async with LocalServer(faults=faults) as server, client_for(server, reconcile=FAST) as client:
        failing = [{"image": str(paths[0]), "prompt": "mirror", "name": "doomed"}]
        await run_all(client.map(failing, journal=journal, output_dir=out))
        faults.failure_rate, faults.silent_cancel_rate = 0.0, 1.0
        cancelling = [{"image": str(paths[1]), "prompt": "invert", "name": "halted"}]
        await run_all(client.map(cancelling, journal=journal, output_dir=out))
        faults.silent_cancel_rate = 0.0
        rest = [
            {"image": str(paths[2]), "prompt": "mirror", "name": "fine"},
            {"image": str(paths[3]), "prompt": HOSTILE, "name": "hostile"},
            {"image": str(paths[2]), "prompt": "mirror", "aspect_ratio": "5:1", "name": "bad"},
            {"image": url, "prompt": "invert", "name": "fromurl"},
            {"image": UNREACHABLE, "prompt": "invert", "name": "far"},
        ]
        results = await run_all(client.map(rest, journal=journal, output_dir=out))
    assert [r.status for r in results] == ["succeeded", "succeeded", "error", "succeeded", "failed"]
    return out


def cards(page: str) -> dict[str, dict[str, Any]]:
    """The page's cards by name, from its JSON blob."""
    (blob,) = _BLOB.findall(page)
    return {card["n"]: card for card in json.loads(blob)["items"]}


class _Summary(HTMLParser):
    """The header's facts (`<dt>` name -> `<dd>` value) and every element's tag."""

    def __init__(self) -> None:
        super().__init__()
        self.facts: dict[str, str] = {}
        self.tags: list[str] = []
        self._dt: str | None = None
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self._in = tag

    def handle_data(self, data: str) -> None:
        if self._in == "dt":
            self._dt = data
        elif self._in == "dd" and self._dt is not None:
            self.facts[self._dt] = data
            self._dt = None


def summary_of(page: str) -> _Summary:
    parser = _Summary()
    parser.feed(page)
    return parser


async def test_the_page_of_a_mixed_run_shows_every_item(tmp_path: Path) -> None:
    async with image_host() as url:
        out = await mixed_run(tmp_path, url)
    page_path = write_html_report(out)
    assert page_path == out / "report.html"
    page = page_path.read_text(encoding="utf-8")
    shown = cards(page)
    assert {name: card["s"] for name, card in shown.items()} == {
        "doomed": "failed",
        "halted": "cancelled",
        "fine": "succeeded",
        "hostile": "succeeded",
        "bad": "error",
        "fromurl": "succeeded",
        "far": "failed",
    }
    facts = summary_of(page).facts
    assert facts["succeeded"] == "3" and facts["failed"] == "2" and facts["cancelled"] == "1"
    assert facts["errors (not sent / not saved)"] == "1" and facts["total"] == "7"
    # Failed and refused items say why; every sent item names its generation.
    assert "could not be downloaded" in shown["far"]["e"]
    assert "aspect_ratio='5:1'" in shown["bad"]["e"] and shown["bad"]["g"] == []
    assert shown["halted"]["e"] and shown["doomed"]["e"]
    for name in ("doomed", "halted", "fine", "hostile", "fromurl", "far"):
        assert len(shown[name]["g"]) == 1 and shown[name]["t"] >= 0
    assert shown["fine"]["a"] == "" and shown["bad"]["a"] == "aspect_ratio=5:1"
    # Thumbnails: files inside OUT's hidden folder, a few KB, normal permissions; the page
    # links them (and the full images) relative to itself.
    umask = os.umask(0)
    os.umask(umask)
    for name in ("fine", "hostile", "fromurl"):
        for picture in (shown[name]["in"], *shown[name]["out"]):
            if picture.get("w"):  # an input URL: the page shows the URL itself
                assert picture["t"] == url
                continue
            thumb = (out / unquote(picture["t"])).resolve()
            assert thumb.parent == (out / THUMBS_DIR).resolve()
            assert 0 < thumb.stat().st_size < 8_000
            assert thumb.stat().st_mode & 0o777 == 0o666 & ~umask
            assert (out / unquote(picture["h"])).is_file()
    assert shown["far"]["in"] == {"t": UNREACHABLE, "h": UNREACHABLE, "w": 1}
    assert shown["doomed"]["out"] == [{"x": "no output"}]


async def test_a_hostile_prompt_is_only_ever_text(tmp_path: Path) -> None:
    async with image_host() as url:
        out = await mixed_run(tmp_path, url)
    page = write_html_report(out).read_text(encoding="utf-8")
    assert HOSTILE not in page and "alert(1)</script>" not in page
    assert page.count("<script") == 2  # the data blob and the page's own script
    assert cards(page)["hostile"]["p"] == HOSTILE  # intact once decoded
    # The script never parses data as HTML.
    assert "innerHTML" not in page and "insertAdjacentHTML" not in page


def test_embedded_json_cannot_close_its_script_element() -> None:
    value = {"p": "</script><!-- & \u2028\u2029 ok", "q": ["<", ">"]}
    text = embed_json(value)
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == value


async def test_rebuilding_reuses_thumbnails_and_removes_only_its_own(tmp_path: Path) -> None:
    async with image_host() as url:
        out = await mixed_run(tmp_path, url)
    write_html_report(out)
    thumbs = out / THUMBS_DIR
    made = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir()}
    stale = thumbs / ("0" * 20 + ".webp")  # a name this module gives: a thumbnail of old
    stale.write_bytes(b"old")
    foreign = [thumbs / "notes.txt", thumbs / "abc.webp", thumbs / ".x.webp.part"]
    for path in foreign:
        path.write_text("mine")
    write_html_report(out)
    assert not stale.exists()
    assert all(path.read_text() == "mine" for path in foreign)
    again = {p.name: p.stat().st_mtime_ns for p in thumbs.iterdir() if p not in foreign}
    assert again == made  # untouched: not written again


async def test_no_journal_is_one_clear_error_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli("report", str(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "holds no oxedit journal" in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / ".oxedit-journal.sqlite").exists()  # nothing created


async def test_batch_writes_the_page_and_report_rebuilds_and_opens_it(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(png())
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": "in/a.png", "prompt": "mirror"},
        {"image": "in/a.png", "prompt": "blur", "name": "../escape"},  # refused, never sent
        {"image": "in/missing.png", "prompt": "blur"},  # a bad row
        {
            "image": "data:image/png;base64," + base64.b64encode(png()).decode(),
            "prompt": "mirror",
            "name": "inline #1 100%?",
        },
    ]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out"
    async with LocalServer() as server:
        use_server(server)
        assert await cli("batch", str(manifest), "--out", str(out)) == 1
    assert f"report page: {out / 'report.html'}" in capsys.readouterr().err
    shown = cards((out / "report.html").read_text(encoding="utf-8"))
    statuses = sorted((card["i"], card["s"]) for card in shown.values())
    assert statuses == [(0, "succeeded"), (1, "error"), (2, "error"), (3, "succeeded")]
    # A data URI's image has a thumbnail (no link: the page does not embed the full image);
    # a file name with '#', '%' and '?' is linked percent-encoded.
    inline = shown["inline #1 100%?"]
    assert (out / unquote(inline["in"]["t"])).is_file() and inline["in"]["h"] is None
    (output,) = inline["out"]
    assert "#" not in output["h"] and (out / unquote(output["h"])).name == "inline #1 100%?.png"
    (out / "report.html").unlink()
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    assert await cli("report", str(out), "--open") == 0
    assert capsys.readouterr().out.strip() == f"wrote {out / 'report.html'}"
    assert opened == [(out / "report.html").resolve().as_uri()]
    assert cards((out / "report.html").read_text(encoding="utf-8")) == shown


def enqueued_in_journal(path: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(db.execute("SELECT count(*) FROM items").fetchone()[0])
    except sqlite3.OperationalError:  # no table yet
        return 0
    finally:
        db.close()


@pytest.mark.slow
async def test_an_interrupted_batch_writes_the_page_too(tmp_path: Path) -> None:
    images = tmp_path / "in"
    images.mkdir()
    for i in range(20):
        (images / f"p{i:02d}.png").write_bytes(png((i * 9, 90, 160)))
    out = tmp_path / "out"
    # Jobs that outlast the test: the signal surely lands while items are in flight.
    async with LocalServer(faults=Faults(latency=30.0)) as server:
        env = {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}
        command = [sys.executable, "-m", "oxedit", "batch", str(images), "--prompt", "blur"]
        process = await asyncio.create_subprocess_exec(
            *command, "--out", str(out), env=env, stderr=asyncio.subprocess.PIPE
        )
        journal = out / ".oxedit-journal.sqlite"
        # Another process writes the journal: polled (the count ends the wait).
        stderr = await interrupt(process, lambda: enqueued_in_journal(journal) >= 20, signal.SIGINT)
    assert process.returncode == 130, stderr.decode()[-2000:]
    shown = cards((out / "report.html").read_text(encoding="utf-8"))
    assert len(shown) == 20
    assert {card["s"] for card in shown.values()} <= {"unknown", "error", "cancelled"}


async def test_report_on_a_journal_a_batch_is_using_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with Journal(tmp_path / ".oxedit-journal.sqlite"):  # held, as a running batch holds it
        assert await cli("report", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is in use by process" in err
    assert not (tmp_path / "report.html").exists()

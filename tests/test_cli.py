"""The `oxedit` command line, against the local server."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from PIL import Image

from oxedit._http.sse import SSEDecoder
from oxedit.testing import Faults, LocalServer

from .helpers import cli, png, run_process

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).parent.parent / "examples"


async def test_batch_manifest_against_embedded_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No OXEN_API_KEY / OXEN_BASE_URL: the README's main command starts its own server.
    code = await cli(
        "--local-latency",
        "0,0",
        "batch",
        str(EXAMPLES / "manifest.jsonl"),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 0
    stderr = capsys.readouterr().err
    assert "using the local Oxen server" in stderr and "succeeded" in stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["succeeded"] == report["summary"]["total"] == 8
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(
        f"{p.stem}.png" for p in (EXAMPLES / "images").iterdir()
    )


async def test_batch_folder_and_rerun_resumes(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with LocalServer() as server:
        use_server(server)
        args = ("batch", str(EXAMPLES / "images"), "--prompt", "invert", "--out", str(tmp_path))
        assert await cli(*args) == 0
        assert await cli(*args) == 0
        assert len(server.generations()) == 8  # the second run sent nothing
    assert "already done earlier (skipped)" in capsys.readouterr().err
    report = json.loads((tmp_path / "report.json").read_text())
    assert all(item["resumed"] for item in report["items"])


async def test_batch_bad_rows_are_named_and_the_rest_go_on(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "ok.png").write_bytes(png())
    (tmp_path / "junk.png").write_bytes(b"garbage")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"image": "ok.png", "prompt": "mirror"}\n'
        '{"image": "gone.png", "prompt": "mirror"}\n'
        '{"image": "junk.png", "prompt": "mirror"}\n'
        "{not json\n"
        '{"image": "ok.png", "prompt": "mirror", "model": "nope-model"}\n'
        '{"image": "ok.png", "prompt": "flip vertical", "aspect_ratio": "5:1"}\n'
        '{"image": "ok.png"}\n'
    )
    async with LocalServer() as server:
        use_server(server)
        code = await cli("batch", str(manifest), "--out", str(tmp_path / "out"))
        assert len(server.generations()) == 1
    assert code == 1
    err = capsys.readouterr().err
    assert "m.jsonl line 2: image 'gone.png' not found" in err
    assert "junk.png" in err and "is not a jpeg, png, gif or webp image" in err
    assert "m.jsonl line 4: invalid JSON" in err
    assert "unknown model 'nope-model'" in err
    assert "aspect_ratio='5:1' is not one of" in err
    assert "m.jsonl line 7 has no 'prompt'" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [i["status"] for i in report["items"]] == ["succeeded"] + ["error"] * 6


async def test_batch_csv_manifest_with_default_prompt(tmp_path: Path, use_server) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.png").write_bytes(png())
    (tmp_path / "m.csv").write_text(
        "image,prompt,aspect_ratio,name\na.png,,1:1,first\na.png,blur,,second\n"
    )
    async with LocalServer() as server:
        use_server(server)
        code = await cli(
            "batch",
            str(tmp_path / "m.csv"),
            "--prompt",
            "grayscale",
            "--out",
            str(tmp_path / "out"),
        )
        prompts = sorted(row["prompt"] for row in server.generations())
    assert code == 0 and prompts == ["blur", "grayscale"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["first.png", "second.png"]


async def test_edit_status_cancel_models(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "in.png").write_bytes(png())
    async with LocalServer() as server:
        use_server(server)
        out = tmp_path / "edited.png"
        assert (
            await cli(
                "edit",
                str(tmp_path / "in.png"),
                "mirror it",
                "-o",
                str(out),
                "--aspect-ratio",
                "1:1",
            )
            == 0
        )
        assert out.read_bytes()[:4] == b"\x89PNG"
        generation_id = server.generations()[0]["generation_id"]
        assert await cli("status", generation_id) == 0
        assert "succeeded" in capsys.readouterr().out
        server.faults.latency = 30.0
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.url}/api/ai/queue",
                json={
                    "model": "qwen-image-edit",
                    "prompt": "p",
                    "input_image": "data:image/png;base64,AAAA",
                },
                headers={"Authorization": f"Bearer {server.api_key}"},
            ) as resp,
        ):
            pending = (await resp.json())["generations"][0]["generation_id"]
        assert await cli("cancel", pending) == 0
        assert f"{pending}: cancelled" in capsys.readouterr().out
        assert await cli("models") == 0
        assert "qwen-image-edit" in capsys.readouterr().out
        assert await cli("models", "qwen-image-edit") == 0
        assert "aspect_ratio" in capsys.readouterr().out
        assert await cli("status", "no-such-id") == 1  # the API said no
        assert "no-such-id" in capsys.readouterr().err
        # Checked against the model's schema before anything is sent (not a static list).
        assert await cli("edit", str(tmp_path / "in.png"), "p", "--aspect-ratio", "5:1") == 2
        assert "aspect_ratio='5:1' is not one of 1:1, 16:9" in capsys.readouterr().err


async def count_events(server: LocalServer, n: int) -> None:
    """Return once the server has completed `n` generations (read from its event stream)."""
    seen = 0
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/api/events", headers=headers) as resp,
    ):
        decoder = SSEDecoder()
        async for chunk in resp.content.iter_any():
            seen += sum(e.event == "media_generation_completed" for e in decoder.feed(chunk))
            if seen >= n:
                return


@pytest.mark.slow
async def test_batch_killed_with_sigkill_and_rerun(tmp_path: Path) -> None:
    n = 400
    images = tmp_path / "in"
    images.mkdir()
    for i in range(n):
        (images / f"p{i:03d}.png").write_bytes(png((i % 256, i // 256, 160)))
    faults = Faults(seed=12, latency=(0.01, 0.1), lost_response_rate=0.01)
    async with LocalServer(faults=faults, workers=32) as server:
        env = {**os.environ, "OXEN_BASE_URL": server.url, "OXEN_API_KEY": server.api_key}
        command = [
            sys.executable,
            "-m",
            "oxedit",
            "batch",
            str(images),
            "--prompt",
            "posterize",
            "--out",
            str(tmp_path / "out"),
            "--concurrency",
            "64",
        ]
        halfway = asyncio.ensure_future(count_events(server, n // 2))
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        await halfway
        process.send_signal(signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        created_before = len(server.generations())
        assert created_before < n  # killed mid-run, with items still unsent
        code, output = await run_process(*command, env=env)
        assert code == 0, output[-2000:]
        rows = server.generations()
    assert len(rows) == n  # zero duplicates: one generation per image, ever
    assert len({row["input_image"] for row in rows}) == n
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(item["index"] for item in report["items"]) == list(range(n))
    assert all(item["status"] == "succeeded" for item in report["items"])
    assert sum(item["resumed"] for item in report["items"]) > 0
    outputs = sorted(p.name for p in (tmp_path / "out").glob("*.png"))
    assert outputs == sorted(f"p{i:03d}.png" for i in range(n))
    # No half-written image survived: every output decodes, and the kill's temporary files
    # were cleared by the re-run.
    for path in (tmp_path / "out").glob("*.png"):
        with Image.open(path) as image:
            image.load()
    assert not list((tmp_path / "out").glob(".*.part"))

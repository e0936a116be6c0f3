"""What a new user meets in the CLI (issue 20): a refused key, a typo'd manifest, cancelling
what already finished, a model's own aspect ratios, a busy `--out`, and where results go."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from oxedit.testing import LocalServer

from .helpers import cli, client_for, eventually, interrupt, png, run_process

pytestmark = pytest.mark.anyio


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OXEN_")}
    return {**env, "COLUMNS": "40", "OXEN_CONFIG_DIR": "/nonexistent", **extra}


async def test_a_refused_key_says_so_and_how_to_set_it(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    async with LocalServer() as server:
        url = server.url
        env = _env(OXEN_BASE_URL=url, OXEN_API_KEY="wrong-key-1234")
        code, output = await run_process(
            sys.executable, "-m", "oxedit", "edit", "in.png", "mirror", env=env, cwd=tmp_path
        )
    assert code == 2, output
    assert f"the API at {url} refused the API key (HTTP 401" in output
    assert "OXEN_API_KEY" in output
    assert "wrong-key-1234" not in output and "model 'qwen-image-edit'" not in output


async def test_manifest_errors_name_the_line_and_a_typod_key(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "ok.png").write_bytes(png())
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        '{"imgae": "ok.png", "prompt": "mirror"}\n'
        '{"image": "ok.png", "prompt": "mirror", "model": "nope-model"}\n'
        '{"image": "ok.png", "prompt": "flip", "aspect_ratio": "5:1"}\n'
    )
    async with LocalServer() as server:
        use_server(server)
        assert await cli("batch", str(manifest), "--out", str(tmp_path / "out")) == 1
        assert server.generations() == []
    err = capsys.readouterr().err
    assert "m.jsonl line 1 has no 'image' (a path or URL); did you mean 'image' for 'imgae'?" in err
    assert "m.jsonl line 2 (ok.png): unknown model 'nope-model'" in err
    assert "m.jsonl line 3 (ok.png): aspect_ratio='5:1' is not one of" in err


async def test_cancelling_a_finished_generation_says_nothing_was_cancelled(
    use_server: Callable[[LocalServer], None], capsys: pytest.CaptureFixture[str]
) -> None:
    async with LocalServer() as server:
        use_server(server)
        async with client_for(server) as client:
            done = await (await client.submit(prompt="p", image=png()))
            server.faults.latency = 30.0
            running = await client.submit(prompt="p", image=png())
        assert await cli("cancel", done.id) == 1
        captured = capsys.readouterr()
        assert f"{done.id}: nothing was cancelled: it had already finished (succeeded)" in (
            captured.err
        )
        assert await cli("cancel", running.id) == 0
        assert f"{running.id}: cancelled" in capsys.readouterr().out
        assert await cli("cancel", running.id) == 0
        assert f"{running.id}: already cancelled; nothing to do" in capsys.readouterr().out


async def test_aspect_ratio_is_checked_against_the_chosen_model(
    tmp_path: Path,
    use_server: Callable[[LocalServer], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "in.png").write_bytes(png())
    out = str(tmp_path / "out.png")
    async with LocalServer() as server:
        use_server(server)
        # The error lists the values of the model asked for (qwen-image-edit), and only those:
        # not every model's (21:9, match_input_image), which this one would refuse.
        image = str(tmp_path / "in.png")
        for ratio in ("5:1", "21:9"):
            assert await cli("edit", image, "p", "-o", out, "--aspect-ratio", ratio) == 2
            err = capsys.readouterr().err
            qwen = "is not one of 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3 (model 'qwen-image-edit')"
            assert f"aspect_ratio='{ratio}' {qwen}" in err
            assert "match_input_image" not in err and "21:9," not in err
        # flux-kontext-dev has it.
        argv = ("--model", "flux-kontext-dev", "--aspect-ratio", "match_input_image")
        assert await cli("edit", image, "p", "-o", out, *argv) == 0
        assert len(server.generations()) == 1


async def test_edit_saves_into_the_edited_folder(
    tmp_path: Path, use_server: Callable[[LocalServer], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.png").write_bytes(png())
    monkeypatch.chdir(tmp_path)
    async with LocalServer() as server:
        use_server(server)
        assert await cli("edit", "in.png", "mirror") == 0
    assert sorted(os.listdir(tmp_path)) == ["edited", "in.png"]
    assert (tmp_path / "edited" / "in.png").read_bytes()[:4] == b"\x89PNG"
    gitignore = (Path(__file__).parent.parent / ".gitignore").read_text().split()
    assert "/edited/" in gitignore and "/out/" in gitignore


@pytest.mark.slow
async def test_a_second_batch_on_a_busy_out_names_the_process_holding_it(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(png())
    argv = [sys.executable, "-m", "oxedit", "--local-latency", "60,60", "batch", "in"]
    argv += ["--prompt", "p", "--out", "out"]
    first = await asyncio.create_subprocess_exec(
        *argv,
        cwd=tmp_path,
        env=_env(),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    lock = tmp_path / "out" / ".oxedit-local-server" / "server.lock"
    try:
        # Another process's lock file has no awaitable: polled by `interrupt`'s `eventually`.

        await eventually(lambda: lock.exists() and lock.stat().st_size > 0, within=60)
        code, output = await run_process(*argv, env=_env(), cwd=tmp_path)
    finally:
        await interrupt(first, lambda: True, signal.SIGTERM)
    assert code == 2, output
    assert f"in use by another running server, process {first.pid} (" in output
    assert "batch in --prompt p --out out)" in output

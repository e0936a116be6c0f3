"""Drives Oxen's official Python client (`oxenai`) against a server, for `test_oxenai_client`.

Run by the separate virtual environment that has `oxenai` (it pins its own pytest and ruff, so
it cannot share the test environment), never imported by the tests:

    python tests/oxenai_driver.py URL API_KEY read NAMESPACE/REPO PATH
    python tests/oxenai_driver.py URL API_KEY roundtrip NAMESPACE/REPO

`HOME` must be a scratch folder: the client keeps its key and user in files under it. The last
line printed is `RESULT <json>` with what the client saw.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from oxen import RemoteRepo  # type: ignore[import-not-found, unused-ignore]
from oxen.auth import config_auth  # type: ignore[import-not-found, unused-ignore]
from oxen.user import config_user  # type: ignore[import-not-found, unused-ignore]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _describe(repo: Any, path: str) -> dict[str, Any]:
    """What the client reads of one file: existence, bytes, metadata, a download."""
    data = bytes(repo.get_file(path))
    entry = repo.metadata(path)
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "downloaded"
        repo.download(path, str(target))  # checks the bytes against the entry's hash
        downloaded = target.read_bytes()
    return {
        "file_exists": repo.file_exists(path),
        "missing_exists": repo.file_exists(path + ".missing"),
        "sha256": _sha256(data),
        "downloaded_sha256": _sha256(downloaded),
        "metadata": None if entry is None else {"filename": entry.filename, "size": entry.size},
    }


def main(argv: list[str]) -> dict[str, Any]:
    url, api_key, command, repo_id, *rest = argv
    scheme, _, host = url.partition("://")
    config_auth(api_key, host=host)
    config_user("oxedit tests", "tests@oxedit.invalid")
    repo = RemoteRepo(repo_id, host=host, scheme=scheme)
    if command == "read":
        (path,) = rest
        return {"exists": repo.exists(), **_describe(repo, path)}
    if command == "roundtrip":
        result: dict[str, Any] = {"existed": repo.exists()}
        repo.create()  # private, seeded with a README.md, as the client does by default
        result["exists"] = repo.exists()
        with tempfile.TemporaryDirectory() as folder:
            source = Path(folder) / "notes.txt"
            source.write_bytes(b"uploaded by oxenai\n")
            repo.upload(str(source), "add notes", dst_dir="docs")
        result["uploaded_sha256"] = _sha256(b"uploaded by oxenai\n")
        result["readme"] = bytes(repo.get_file("README.md")).decode()
        return {**result, **_describe(repo, "docs/notes.txt")}
    raise SystemExit(f"unknown command {command!r}: give read or roundtrip")


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1:])), flush=True)

"""Oxen's repository file API, the subset a client needs to host its inputs.

What the local server relies on, and where it is written (tags as in `oxen-api.md`: [doc] the
docs say it, [spec] only the hub's OpenAPI spec or the open-source oxen-server says it, [guess]
neither does):

- [doc] docs.oxen.ai/http-api/example ("File Upload Example"): `POST /api/repos` with the JSON
  body `{"namespace", "name", "user": {"name", "email"}, "description"}` creates a repository;
  "if the repository already exists, this step will return a 409 status code and you can
  continue". Then `PUT /api/repos/{namespace}/{repo_name}/file/{branch}/{path}` with a
  multipart form (`file`, `message`, `name`, `email`) commits the file to the branch (`main`).
- [spec] docs.oxen.ai/http-api/repositories/create-repository and oxen-server
  `controllers/repositories.rs`: 200 with `{"status": "success", "status_message": ...,
  "repository": {"namespace", "name", ...}}`; 400 for a bad payload; 409 with
  `{"status": "error", "status_message": "Repo already exists."}`.
- [spec] docs.oxen.ai/http-api/files/put-file and .../upload-files: the PUT's form field
  `file` is "a single full-path upload" (`files[]` uploads into a directory, not served here);
  200 `{"status": "success", "status_message": "resource_created", "commit": {...}}`; 404
  "Branch or path not found". Uploading the same bytes to the same path again commits again,
  which is why a client may repeat it [guess: the spec does not say].
- [spec] docs.oxen.ai/http-api/file/get-a-file-for-resource, oxen-server `controllers/file.rs`:
  `GET /api/repos/{namespace}/{repo_name}/file/{branch}/{path}` streams the file with its MIME
  type as `Content-Type`; 404 when missing. Bearer auth, like every `/api` route (the spec's
  `api_key` security); public repositories readable without it on the hub are not modelled.
- [spec] docs.oxen.ai/http-api/entries/get-entry-metadata, oxen-server `controllers/metadata.rs`:
  `GET /api/repos/{namespace}/{repo_name}/metadata/{branch}/{path}` answers
  `{"status", "status_message", "entry": {"filename", "is_dir", "size", "hash", "mime_type",
  ...}}`, 404 "Entry not found": the cheap existence check (no file bytes).
- [doc] docs.oxen.ai/http-api/version-files: the chunked "version files" upload
  (`POST .../versions/uploads`, then `PUT .../parts/{n}`) is for large files; inputs of an
  image model are a few MB, one PUT each, so it is not served here.
- [guess] (`oxedit doctor --spend --upload-to` checks it) The inference service reads a hub
  file URL of its own host as the user whose job it
  is; the local workers fetch such URLs from this server with its key (`Api._fetch`).

With a state folder, repositories and their files live under `<state_dir>/repos/`, and survive
a restart like the generations do.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ._faults import Faults
from ._responses import decode_json, json_response, typed_error
from ._stats import ServerStats

__all__ = ["DEFAULT_BRANCH", "Repos"]

#: The branch a repository is created with [doc: the example's `SOURCE_BRANCH = "main"`].
DEFAULT_BRANCH = "main"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_FORM_FIELDS = frozenset({"file", "message", "name", "email"})
_MARKER = "repo.json"


@dataclass(frozen=True, slots=True)
class _Entry:
    size: int
    hash: str
    mime_type: str
    commit_id: str


def _error(status: int, message: str) -> web.Response:
    """The 409 as oxen-server writes it [spec: `StatusMessage::error`]; other refusals in the
    typed shape of the rest of this server, whose `status`/`status_message` keys are the same
    as oxen-server's."""
    if status == 409:
        return json_response({"status": "error", "status_message": message}, status=status)
    return _typed(status, message)


def _typed(status: int, message: str) -> web.Response:
    type_ = {404: "resource_not_found"}.get(
        status, "unknown_error" if status >= 500 else "invalid_params"
    )
    return typed_error(status, type_, title=message)


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.response = _error(status, message)


class Repos:
    """Repositories of one server: in memory, and under `folder` when it is given."""

    def __init__(self, faults: Faults, stats: ServerStats, folder: Path | None = None) -> None:
        self._faults = faults
        self._stats = stats
        self._folder = folder
        # (namespace, name) -> {"main/path/in/repo": entry}; the bytes in `_blobs` (memory)
        # or on disk (state folder).
        self._repos: dict[tuple[str, str], dict[str, _Entry]] = {}
        self._blobs: dict[tuple[str, str, str], bytes] = {}
        if folder is not None:
            self._load(folder)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/repos", self.create)
        base = "/api/repos/{namespace}/{repo_name}"
        r.add_put(base + "/file/{resource:.+}", self.put_file)
        r.add_get(base + "/file/{resource:.+}", self.get_file)
        r.add_get(base + "/metadata/{resource:.+}", self.metadata)
        r.add_get(base + "/meta/{resource:.+}", self.metadata)  # the official client's route

    # -- handlers -------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        # oxen-server reads JSON only under exactly this type (multipart otherwise) [spec].
        if request.content_type != "application/json":
            return _error(400, "Unsupported Content-Type")
        body = decode_json(await request.read())
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON")
        namespace, name = body.get("namespace"), body.get("name")
        for field, value in (("namespace", namespace), ("name", name)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                return _error(400, f"Invalid {field}: {value!r}")
        assert isinstance(namespace, str) and isinstance(name, str)
        unknown = sorted(set(body) - {"namespace", "name", "user", "description", "is_public"})
        if unknown:
            return _error(400, f"Unknown field(s): {', '.join(unknown)}")
        key = (namespace, name)
        if key in self._repos:
            return _error(409, "Repo already exists.")
        self._repos[key] = {}
        if self._folder is not None:
            repo_dir = self._folder / namespace / name
            repo_dir.mkdir(parents=True, exist_ok=True)
            (repo_dir / _MARKER).write_bytes(b"{}")
        self._stats.repos_created += 1
        return json_response(
            {
                "status": "success",
                "status_message": "resource_found",  # what oxen-server answers [spec]
                "repository": {"namespace": namespace, "name": name, "latest_commit": None},
            }
        )

    async def put_file(self, request: web.Request) -> web.StreamResponse:
        try:
            key, resource = self._target(request)
            if self._faults.fail_uploads > 0:
                self._faults.fail_uploads -= 1
                await request.read()  # drain it, as a proxy in front of the hub would
                return _error(503, "Service temporarily unavailable")
            form = await _read_form(request)
        except _Refused as exc:
            return exc.response
        data = form["file"]
        assert isinstance(data, bytes)
        digest = hashlib.sha256(data).hexdigest()
        mime = mimetypes.guess_type(resource)[0] or "application/octet-stream"
        commit_id = uuid.uuid4().hex
        if self._folder is not None:
            path = self._folder.joinpath(*key, *resource.split("/"))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # a crash leaves the old file or the new one, never half
        else:
            self._blobs[(*key, resource)] = data
        self._repos[key][resource] = _Entry(len(data), digest, mime, commit_id)
        self._stats.files_uploaded += 1
        message = form.get("message") or f"Auto-commit files to {resource}"
        return json_response(
            {
                "status": "success",
                "status_message": "resource_created",
                "commit": {
                    "id": commit_id,
                    "message": message,
                    "author": form.get("name") or "",
                    "email": form.get("email") or "",
                    "parent_ids": [],
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
            }
        )

    async def get_file(self, request: web.Request) -> web.StreamResponse:
        try:
            key, resource, entry = self._existing(request)
        except _Refused as exc:
            return exc.response
        if self._folder is not None:
            data = self._folder.joinpath(*key, *resource.split("/")).read_bytes()
        else:
            data = self._blobs[(*key, resource)]
        return web.Response(
            body=data, content_type=entry.mime_type, headers={"oxen-revision-id": entry.commit_id}
        )

    async def metadata(self, request: web.Request) -> web.StreamResponse:
        if self._faults.no_metadata_route and "/metadata/" in request.path:
            return typed_error(404, "resource_not_found", title=f"Not found: {request.path}")
        try:
            _, resource, entry = self._existing(request)
        except _Refused as exc:
            return exc.response
        filename = resource.rsplit("/", 1)[-1]
        return json_response(
            {
                "status": "success",
                "status_message": "resource_found",
                "entry": {
                    "filename": filename,
                    "is_dir": False,
                    "size": entry.size,
                    "hash": entry.hash,
                    "mime_type": entry.mime_type,
                    "data_type": entry.mime_type.partition("/")[0],
                    "extension": filename.rpartition(".")[2],
                    "latest_commit": {"id": entry.commit_id},
                },
            }
        )

    # -- helpers --------------------------------------------------------------------------------

    def _target(self, request: web.Request) -> tuple[tuple[str, str], str]:
        """The repository and the `branch/path` a request names, checked."""
        key = (request.match_info["namespace"], request.match_info["repo_name"])
        if key not in self._repos:
            raise _Refused(404, f"Repository not found: {key[0]}/{key[1]}")
        resource = request.match_info["resource"]
        branch, _, path = resource.partition("/")
        if branch != DEFAULT_BRANCH:
            raise _Refused(404, f"Branch not found: {branch}")
        parts = path.split("/")
        if not path or any(p in ("", ".", "..") or "\\" in p for p in parts):
            raise _Refused(400, f"Invalid path: {path!r}")
        return key, resource

    def _existing(self, request: web.Request) -> tuple[tuple[str, str], str, _Entry]:
        key, resource = self._target(request)
        entry = self._repos[key].get(resource)
        if entry is None:
            raise _Refused(404, f"Entry not found: {resource}")
        return key, resource, entry

    def _load(self, folder: Path) -> None:
        """Take over the repositories and files an earlier run left in `folder`."""
        for marker in folder.glob(f"*/*/{_MARKER}"):
            repo_dir = marker.parent
            files: dict[str, _Entry] = {}
            for path in repo_dir.rglob("*"):
                if path == marker or not path.is_file() or path.name.endswith(".tmp"):
                    continue
                resource = path.relative_to(repo_dir).as_posix()
                data = path.read_bytes()
                mime = mimetypes.guess_type(resource)[0] or "application/octet-stream"
                digest = hashlib.sha256(data).hexdigest()
                files[resource] = _Entry(len(data), digest, mime, uuid.uuid4().hex)
            self._repos[(repo_dir.parent.name, repo_dir.name)] = files


async def _read_form(request: web.Request) -> dict[str, Any]:
    """The PUT's multipart fields: `file` as bytes (required), the others as text."""
    if request.content_type != "multipart/form-data":
        raise _Refused(400, "Expected a multipart/form-data body with a 'file' field")
    form: dict[str, Any] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in _FORM_FIELDS:
            name = getattr(part, "name", None)
            raise _Refused(400, f"Unknown form field: {name!r}")
        if part.name in form:
            raise _Refused(400, f"Form field {part.name!r} given twice")
        form[part.name] = await (part.read() if part.name == "file" else part.text())
    if not isinstance(form.get("file"), bytes | bytearray):
        raise _Refused(400, "The form has no 'file' field")
    form["file"] = bytes(form["file"])
    return form

"""Oxen's repository API, the subset a client needs to host its inputs, and the subset the
official `oxenai` client (0.65.1) needs for `RemoteRepo.exists/create/upload/file_exists/get_file/
metadata/download`.

What the local server relies on, and where it is written (tags as in `oxen-api.md`: [doc] the
docs say it, [spec] the hub's OpenAPI spec, [liboxen 0.54 path] the open-source oxen-server or
client source of that version, [oxenai 0.65.1] seen from the official client talking to this
server, [guess] none of them does):

- [doc] docs.oxen.ai/http-api/example ("File Upload Example"): `POST /api/repos` with the JSON
  body `{"namespace", "name", "user": {"name", "email"}, "description"}` creates a repository;
  "if the repository already exists, this step will return a 409 status code and you can
  continue". Then `PUT /api/repos/{namespace}/{repo_name}/file/{branch}/{path}` with a
  multipart form (`file`, `message`, `name`, `email`) commits the file to the branch (`main`).
- [liboxen 0.54 api/requests/repo_new.rs, oxen-server controllers/repositories.rs] The create
  body is read as `RepoNew` (`namespace`, `name`, `is_public`, `host`, `scheme`, `root_commit`,
  `description`, `files`, `storage_kind`, `repo_uuid`, ...) without `deny_unknown_fields`:
  unknown fields (the docs' `user`; 0.65.1's `namespace_name`, `repo_name`) are ignored, and
  so they are here. JSON only under exactly `application/json`. `files` seeds the repository
  with `{"path", "contents", "user"}` items in one first commit (`RemoteRepo.create()` sends a
  `README.md`); `contents` is a string (text) or an array of bytes [liboxen 0.54 model/file.rs].
  200 with `{"status": "success", "status_message": "resource_found", "repository":
  {"namespace", "name", "latest_commit": <commit or null>, "min_version", "storage_kind"}}`:
  the client refuses an answer without `storage_kind` ("local" or "s3"); 400 for a bad payload;
  409 `{"status": "error", "status_message": "Repo already exists."}`. `is_public` is stored as
  sent (`LocalServer.repository()` shows it): the hub's default is not documented [guess].
- [liboxen 0.54 oxen-server routes.rs, controllers/repositories.rs `show`] `GET
  /api/repos/{namespace}/{repo_name}`: `{"status", "status_message", "repository":
  {"namespace", "name", "min_version", "is_empty", "storage_kind", "size", "data_types",
  "branch_count"}}`, 404 when missing: the official client's first call for every operation.
- [liboxen 0.54 oxen-server controllers/file.rs `put`] `PUT .../file/{branch}/{path}` takes
  `file` (a full file path; into the directory if `path` is one; "deprecated: use `files[]`")
  or `files[]` (one or more parts into the directory `path`, named by each part's filename;
  what `RemoteRepo.upload` sends), not both (400). All files of one PUT are one commit; 200
  `{"status": "success", "status_message": "resource_created", "commit": {"id", "parent_ids",
  "message", "author", "email", "timestamp"}}`; 404 "Branch or path not found". A PUT to a
  repository without commits makes the first one and the branch. Uploading the same bytes to
  the same path again commits again, which is why a client may repeat it [guess].
- [spec] docs.oxen.ai/http-api/file/get-a-file-for-resource, oxen-server `controllers/file.rs`:
  `GET` (and `HEAD` [liboxen 0.54 services/file.rs]) `.../file/{branch}/{path}` streams the file
  with its MIME type as `Content-Type`; 404 when missing. Bearer auth, like every `/api` route
  (the spec's `api_key` security); public repositories readable without it are not modelled.
- Metadata: oxen-server routes `GET .../meta/{revision}/{path}` [liboxen 0.54
  services/meta.rs], which is what the official client calls [liboxen 0.54
  api/client/metadata.rs]; the docs' page says `.../metadata/{revision}/{path}` [spec: generated
  from the handler's annotation]. Both are served (`metadata_routes` picks one, to test a client
  against a hub that has only one). The answer: `{"status", "status_message", "entry":
  {"filename", "hash", "is_dir", "latest_commit", "resource", "size", "data_type", "mime_type",
  "extension", "metadata", "is_queryable"}}` [liboxen 0.54 model/entry/metadata_entry.rs], an
  entry the client reads with `deny_unknown_fields`: no other key. `latest_commit` is a whole
  commit (or null); `hash` is the file's xxh3-128 in lower-case hex without leading zeros
  [liboxen 0.54 util/hasher.rs], which `download()` parses as a 128-bit number and checks the
  bytes against. Computed with the system's libxxhash; where it is missing, a blake2b-128
  stands in [guess], and `download()` of the official client refuses the file. 404 "Entry not
  found": the cheap existence check (no file bytes).
- [liboxen 0.54 view/branch.rs, api/client/branches.rs] `GET .../branches/{name}`:
  `{"status", "status_message", "branch": {"name", "commit_id"}}`, 404 when the branch has no
  commit yet (`RemoteRepo.create()` asks for `main` after seeding it).
- Not served, and not needed by those calls: `GET .../revisions/{rev}` (a 404 leaves the
  client's `commit_id` unset [liboxen 0.54 api/client/revisions.rs]) and the download hooks
  `POST .../action/{state}/{name}` (their answer is ignored [liboxen 0.54
  api/client/repositories.rs]).
- [doc] docs.oxen.ai/http-api/version-files: the chunked "version files" upload
  (`POST .../versions/uploads`, then `PUT .../parts/{n}`) is for large files; inputs of an
  image model are a few MB, one PUT each, so it is not served here.
- [guess] (`oxedit doctor --spend --upload-to` checks it) The inference service reads a hub
  file URL of its own host as the user whose job it is; the local workers fetch such URLs
  from this server with its key (`Api._fetch`).

With a state folder, repositories and their files live under `<state_dir>/repos/`, and survive
a restart like the generations do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import mimetypes
import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from ._faults import Faults
from ._responses import decode_json, json_response, typed_error
from ._stats import ServerStats

__all__ = ["DEFAULT_BRANCH", "METADATA_ROUTES", "Repos", "oxen_hash"]

#: The branch a repository is created with [doc: the example's `SOURCE_BRANCH = "main"`].
DEFAULT_BRANCH = "main"

#: The metadata routes served by default: oxen-server's and the official client's `meta`, and
#: the docs page's `metadata` (see the module docstring).
METADATA_ROUTES = ("meta", "metadata")

# What oxen-server answers as the oldest client version it serves [liboxen 0.54
# controllers/repositories.rs].
_MIN_VERSION = "0.36.0"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_TEXT_FIELDS = frozenset({"message", "name", "email"})
_MARKER = "repo.json"
# [liboxen 0.54 model/entry/entry_data_type.rs]: dir, text, image, video, audio, tabular, binary.
_TABULAR = frozenset({"csv", "tsv", "parquet", "arrow", "jsonl", "ndjson"})


class _XXH128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]


def _load_xxh3() -> Callable[[bytes], int] | None:
    """XXH3-128 from the system's libxxhash (Debian's `libxxhash0`), or None."""
    name = ctypes.util.find_library("xxhash") or "libxxhash.so.0"
    try:
        function = ctypes.CDLL(name).XXH3_128bits
    except (OSError, AttributeError):
        return None
    function.restype = _XXH128
    function.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

    def xxh3_128(data: bytes) -> int:
        value = function(data, len(data))
        return int(value.high64) << 64 | int(value.low64)

    return xxh3_128


_xxh3_128 = _load_xxh3()


def oxen_hash(data: bytes) -> str:
    """A file's hash as Oxen writes it: xxh3-128, lower-case hex without leading zeros
    [liboxen 0.54 util/hasher.rs `format!("{val:x}")`]; a blake2b-128 in the same form where
    libxxhash is missing [guess: then the official client's download refuses the file]."""
    if _xxh3_128 is not None:
        return format(_xxh3_128(data), "x")
    return format(int.from_bytes(hashlib.blake2b(data, digest_size=16).digest(), "big"), "x")


def _commit(message: str, author: str, email: str, parent: dict[str, Any] | None) -> dict[str, Any]:
    """A commit as oxen-server writes it [liboxen 0.54 model/commit.rs]: every field required
    by the client, the timestamp in RFC 3339; the id 128-bit hex like Oxen's [guess: Oxen
    derives it from the content, a random one is as unique]."""
    return {
        "id": uuid.uuid4().hex,
        "parent_ids": [parent["id"]] if parent is not None else [],
        "message": message,
        "author": author,
        "email": email,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _data_type(path: str, mime: str) -> str:
    extension = path.rpartition(".")[2].lower()
    if extension in _TABULAR:
        return "tabular"
    kind = mime.partition("/")[0]
    if kind in ("image", "video", "audio", "text"):
        return kind
    return "text" if mime in ("application/json", "application/xml") else "binary"


@dataclass(frozen=True, slots=True)
class _Entry:
    size: int
    hash: str
    mime_type: str
    commit: dict[str, Any]


@dataclass(slots=True)
class _Repo:
    # "main/path/in/repo" -> entry; the bytes in `Repos._blobs` (memory) or on disk.
    files: dict[str, _Entry] = field(default_factory=dict)
    head: dict[str, Any] | None = None  # the branch's latest commit; None: no commit yet
    settings: dict[str, Any] = field(default_factory=dict)  # is_public, description as sent


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


def _checked_path(path: str, *, what: str) -> str:
    parts = path.split("/")
    if any(p in ("", ".", "..") or "\\" in p for p in parts):
        raise _Refused(400, f"Invalid {what}: {path!r}")
    return path


class Repos:
    """Repositories of one server: in memory, and under `folder` when it is given."""

    def __init__(
        self,
        faults: Faults,
        stats: ServerStats,
        folder: Path | None = None,
        *,
        metadata_routes: Iterable[str] = METADATA_ROUTES,
    ) -> None:
        self._faults = faults
        self._stats = stats
        self._folder = folder
        self._metadata_routes = tuple(metadata_routes)
        unknown = set(self._metadata_routes) - set(METADATA_ROUTES)
        if unknown or not self._metadata_routes:
            raise ValueError(
                f"metadata_routes={metadata_routes!r}: give one or both of {METADATA_ROUTES}"
            )
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._blobs: dict[tuple[str, str, str], bytes] = {}
        if folder is not None:
            self._load(folder)

    def add_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/api/repos", self.create)
        base = "/api/repos/{namespace}/{repo_name}"
        r.add_get(base, self.show)
        r.add_get(base + "/branches/{branch}", self.branch)
        r.add_put(base + "/file/{resource:.+}", self.put_file)
        r.add_get(base + "/file/{resource:.+}", self.get_file)  # and HEAD
        for route in self._metadata_routes:
            r.add_get(f"{base}/{route}/{{resource:.+}}", self.metadata)

    def describe(self, namespace: str, name: str) -> dict[str, Any]:
        """What the server holds of a repository: the settings its creation sent
        (`is_public`, `description`; absent when not sent), its file paths, its latest commit.

        Raises:
            KeyError: no such repository.
        """
        repo = self._repos[(namespace, name)]
        paths = sorted(resource.partition("/")[2] for resource in repo.files)
        return {**repo.settings, "files": paths, "latest_commit": repo.head}

    # -- handlers -------------------------------------------------------------------------------

    async def create(self, request: web.Request) -> web.StreamResponse:
        # oxen-server reads JSON only under exactly this type (multipart otherwise) [spec].
        if request.content_type != "application/json":
            return _error(400, "Unsupported Content-Type")
        body = decode_json(await request.read())
        if not isinstance(body, dict):
            return _error(400, "Invalid JSON")
        namespace, name = body.get("namespace"), body.get("name")
        for key_, value in (("namespace", namespace), ("name", name)):
            if not isinstance(value, str) or not _NAME.fullmatch(value):
                return _error(400, f"Invalid {key_}: {value!r}")
        assert isinstance(namespace, str) and isinstance(name, str)
        # The known fields are typed as `RepoNew` types them; the rest is ignored [liboxen].
        if body.get("is_public") not in (None, True, False):
            return _error(400, f"Invalid is_public: {body['is_public']!r}")
        if not isinstance(body.get("description") or "", str):
            return _error(400, f"Invalid description: {body['description']!r}")
        try:
            seeds = _seed_files(body.get("files"))
        except _Refused as exc:
            return exc.response
        key = (namespace, name)
        if key in self._repos:
            return _error(409, "Repo already exists.")
        settings = {f: body[f] for f in ("is_public", "description") if body.get(f) is not None}
        repo = self._repos[key] = _Repo(settings=settings)
        if self._folder is not None:
            repo_dir = self._folder / namespace / name
            repo_dir.mkdir(parents=True, exist_ok=True)
            (repo_dir / _MARKER).write_text(json.dumps(settings))
        if seeds:
            user = seeds[0][2]
            self._commit_files(key, [(p, d) for p, d, _ in seeds], "Initial commit", *user)
        self._stats.repos_created += 1
        return json_response(
            {
                "status": "success",
                "status_message": "resource_found",  # what oxen-server answers [liboxen]
                "repository": {
                    "namespace": namespace,
                    "name": name,
                    "latest_commit": repo.head,
                    "min_version": _MIN_VERSION,
                    "storage_kind": "local",
                },
            }
        )

    async def show(self, request: web.Request) -> web.StreamResponse:
        try:
            key, repo = self._repo(request)
        except _Refused as exc:
            return exc.response
        types = Counter(
            _data_type(resource, entry.mime_type) for resource, entry in repo.files.items()
        )
        return json_response(
            {
                "status": "success",
                "status_message": "resource_found",
                "repository": {
                    "namespace": key[0],
                    "name": key[1],
                    "min_version": _MIN_VERSION,
                    "is_empty": repo.head is None,
                    "storage_kind": "local",
                    "size": sum(entry.size for entry in repo.files.values()),
                    "data_types": [{"data_type": t, "count": n} for t, n in sorted(types.items())],
                    "branch_count": 0 if repo.head is None else 1,
                },
            }
        )

    async def branch(self, request: web.Request) -> web.StreamResponse:
        try:
            _, repo = self._repo(request)
        except _Refused as exc:
            return exc.response
        name = request.match_info["branch"]
        if name != DEFAULT_BRANCH or repo.head is None:
            return _error(404, f"Branch not found: {name}")
        return json_response(
            {
                "status": "success",
                "status_message": "resource_found",
                "branch": {"name": name, "commit_id": repo.head["id"]},
            }
        )

    async def put_file(self, request: web.Request) -> web.StreamResponse:
        try:
            key, branch, path = self._target(request)
            if self._faults.fail_uploads > 0:
                self._faults.fail_uploads -= 1
                await request.read()  # drain it, as a proxy in front of the hub would
                return _error(503, "Service temporarily unavailable")
            form, parts = await _read_form(request)
            files = self._placed(key, branch, path, parts)
        except _Refused as exc:
            return exc.response
        message = form.get("message") or f"Auto-commit files to {path}"
        commit = self._commit_files(key, files, message, form.get("name"), form.get("email"))
        return json_response(
            {"status": "success", "status_message": "resource_created", "commit": commit}
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
            body=data,
            content_type=entry.mime_type,
            headers={"oxen-revision-id": entry.commit["id"]},
        )

    async def metadata(self, request: web.Request) -> web.StreamResponse:
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
                    "hash": entry.hash,
                    "is_dir": False,
                    "latest_commit": entry.commit,
                    "resource": None,  # a parsed-resource view, optional [liboxen]
                    "size": entry.size,
                    "data_type": _data_type(resource, entry.mime_type),
                    "mime_type": entry.mime_type,
                    "extension": filename.rpartition(".")[2] if "." in filename else "",
                    "metadata": None,
                    "is_queryable": None,
                },
            }
        )

    # -- helpers --------------------------------------------------------------------------------

    def _repo(self, request: web.Request) -> tuple[tuple[str, str], _Repo]:
        key = (request.match_info["namespace"], request.match_info["repo_name"])
        repo = self._repos.get(key)
        if repo is None:
            raise _Refused(404, f"Repository not found: {key[0]}/{key[1]}")
        return key, repo

    def _target(self, request: web.Request) -> tuple[tuple[str, str], str, str]:
        """The repository, branch and path (may be empty: the root) a request names."""
        key, _ = self._repo(request)
        branch, _, path = request.match_info["resource"].partition("/")
        if branch != DEFAULT_BRANCH:
            raise _Refused(404, f"Branch not found: {branch}")
        path = path.strip("/")
        return key, branch, _checked_path(path, what="path") if path else ""

    def _existing(self, request: web.Request) -> tuple[tuple[str, str], str, _Entry]:
        key, branch, path = self._target(request)
        resource = f"{branch}/{path}"
        entry = self._repos[key].files.get(resource) if path else None
        if entry is None:
            raise _Refused(404, f"Entry not found: {resource}")
        return key, resource, entry

    def _placed(
        self, key: tuple[str, str], branch: str, path: str, parts: list[tuple[str, str, bytes]]
    ) -> list[tuple[str, bytes]]:
        """Where each uploaded part goes: `file` to `path` itself (or into it, when it is a
        directory), `files[]` into the directory `path` under its filename [liboxen]."""
        files = self._repos[key].files
        prefix = f"{branch}/{path}/" if path else f"{branch}/"
        is_dir = any(resource.startswith(prefix) for resource in files)
        placed = []
        for field_name, filename, data in parts:
            if field_name == "file" and not is_dir:
                if not path:
                    raise _Refused(400, "Invalid target path: give a full file path for `file`")
                resource = f"{branch}/{path}"
            else:
                if path and f"{branch}/{path}" in files:
                    raise _Refused(400, f"Target path must be a directory: {path}")
                name = _checked_path(filename, what="uploaded file name")
                resource = prefix + name
            placed.append((resource, data))
        for resource, _ in placed:  # a file where a directory must be, or the reverse
            parent = resource
            while "/" in (parent := parent.rpartition("/")[0]):
                if parent in files:
                    raise _Refused(400, f"A file is in the way: {parent.partition('/')[2]}")
            if any(other.startswith(resource + "/") for other in files):
                raise _Refused(400, f"Target path is a directory: {resource.partition('/')[2]}")
        return placed

    def _commit_files(
        self,
        key: tuple[str, str],
        files: list[tuple[str, bytes]],
        message: str,
        author: str | None,
        email: str | None,
    ) -> dict[str, Any]:
        repo = self._repos[key]
        commit = _commit(message, author or "", email or "", repo.head)
        for resource, data in files:
            mime = mimetypes.guess_type(resource)[0] or "application/octet-stream"
            if self._folder is not None:
                path = self._folder.joinpath(*key, *resource.split("/"))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + ".tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)  # a crash leaves the old file or the new one, never half
            else:
                self._blobs[(*key, resource)] = data
            repo.files[resource] = _Entry(len(data), oxen_hash(data), mime, commit)
            self._stats.files_uploaded += 1
        repo.head = commit
        return commit

    def _load(self, folder: Path) -> None:
        """Take over the repositories and files an earlier run left in `folder`."""
        for marker in folder.glob(f"*/*/{_MARKER}"):
            repo_dir = marker.parent
            settings = json.loads(marker.read_text() or "{}")
            repo = _Repo(settings=settings if isinstance(settings, dict) else {})
            # One commit stands for the history the earlier run made [guess: not kept].
            commit = _commit("Files kept by an earlier run", "", "", None)
            for path in repo_dir.rglob("*"):
                if path == marker or not path.is_file() or path.name.endswith(".tmp"):
                    continue
                resource = path.relative_to(repo_dir).as_posix()
                data = path.read_bytes()
                mime = mimetypes.guess_type(resource)[0] or "application/octet-stream"
                repo.files[resource] = _Entry(len(data), oxen_hash(data), mime, commit)
                repo.head = commit
            self._repos[(repo_dir.parent.name, repo_dir.name)] = repo


def _seed_files(value: object) -> list[tuple[str, bytes, tuple[str | None, str | None]]]:
    """The create body's `files`: `(resource, bytes, (author, email))` each [liboxen]."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Refused(400, f"Invalid files: {value!r}")
    seeds = []
    for item in value:
        path = item.get("path") if isinstance(item, dict) else None
        contents = item.get("contents") if isinstance(item, dict) else None
        if not isinstance(path, str) or not path:
            raise _Refused(400, f"Invalid files item: {item!r}")
        if isinstance(contents, str):
            data = contents.encode()
        elif isinstance(contents, list) and all(
            isinstance(b, int) and 0 <= b < 256 for b in contents
        ):
            data = bytes(contents)
        else:
            raise _Refused(400, f"Invalid contents of {path!r}: give a string or bytes")
        user = item.get("user") if isinstance(item.get("user"), dict) else {}
        resource = f"{DEFAULT_BRANCH}/{_checked_path(path.strip('/'), what='path')}"
        seeds.append((resource, data, (user.get("name"), user.get("email"))))
    return seeds


async def _read_form(request: web.Request) -> tuple[dict[str, str], list[tuple[str, str, bytes]]]:
    """The PUT's multipart form: its text fields, and its file parts as
    `(field, filename, bytes)`: one `file`, or one or more `files[]`, not both [liboxen]."""
    if request.content_type != "multipart/form-data":
        raise _Refused(400, "Expected a multipart/form-data body with a 'file' or 'files[]' field")
    form: dict[str, str] = {}
    parts: list[tuple[str, str, bytes]] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        name = getattr(part, "name", None)
        if not isinstance(part, BodyPartReader) or name not in (*_TEXT_FIELDS, "file", "files[]"):
            raise _Refused(400, f"Unknown form field: {name!r}")
        if name in ("file", "files[]"):
            if name == "file" and any(field_ == "file" for field_, _, _ in parts):
                raise _Refused(400, "Form field 'file' given twice")
            parts.append((name, part.filename or "", bytes(await part.read())))
        elif name in form:
            raise _Refused(400, f"Form field {name!r} given twice")
        else:
            form[name] = await part.text()
    if not parts:
        raise _Refused(400, "Missing file data: expected `file` or `files[]` multipart parts")
    if len({field_ for field_, _, _ in parts}) > 1:
        raise _Refused(400, "Ambiguous multipart payload: use either `file` or `files[]`")
    return form, parts

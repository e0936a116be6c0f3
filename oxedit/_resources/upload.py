"""Hosted inputs: local images uploaded once to an Oxen repository, and sent as its file URL.

A data URI travels in every enqueue body, and the API echoes it in every row of every list
afterwards, so a 1.4 MB photo costs ~1.9 MB per row each time a job is reconciled. Uploaded
once, it costs its URL. Oxen's repository file API [doc: File Upload Example] does it in three
requests, at most, per distinct image:

1. `GET /api/repos/{ns}/{repo}/meta/main/{path}`: is it there already? (no file bytes). The
   route oxen-server serves and the official client calls is `/meta/`; the docs' page says
   `/metadata/`. A server with only one answers 404 on the other, which alone cannot tell "no
   such file" from "no such route": so `/meta/` is asked first, then `/metadata/`, and the
   first that finds a file is the only one asked from then on.
2. `POST /api/repos`, once per `Uploader`, only when a file is missing: 200 created, or 409,
   the repository exists: both fine. It asks for a private repository (`is_public: false`)
   unless told otherwise: inputs are users' photos, and the hub's default is not documented.
3. `PUT /api/repos/{ns}/{repo}/file/main/{path}`, a multipart form with the file.

The path is the bytes' SHA-256 (`oxedit-inputs/<hex>.<ext>`), so the same image always has
the same URL: an image used by 500 prompts is uploaded once, a re-run finds everything there,
and two processes uploading the same image write the same bytes to the same path, which makes
the upload idempotent: it is retried like a GET. All requests go to the API host (the hub
hosts the repositories), so the key goes nowhere else.

Example:
    ```python
    uploader = Uploader(api, "ox/inputs")
    url = await uploader.url_for(Path("cat.png").read_bytes())
    ```
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import os
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import msgspec

from .. import _constants as C
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    ClientStateError,
    ConfigurationError,
    InvalidRequestError,
    OxeditError,
    status_error,
    unexpected_status,
)
from .._http.api import Api
from .._http.retry import Verdict, classify
from .._response import Response, is_success, parse_retry_after
from .inputs import sniff_mime

__all__ = ["UploadStats", "Uploader", "parse_repo"]

log = logging.getLogger("oxedit")

# Oxen names: letters, digits, `-`, `_`, `.` [guess: the hub's rule is not documented].
_REPO = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)/([A-Za-z0-9][A-Za-z0-9._-]*)")
# A repeated upload of the same bytes to the same path is harmless, and so is a repeated
# repository creation (it answers 409): both are retried as the idempotent requests they are.
_IDEMPOTENT = "PUT"
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
# The metadata routes, in the order asked: oxen-server's and the official client's, then the
# docs page's [liboxen 0.54 services/meta.rs; docs.oxen.ai get-entry-metadata].
_METADATA_ROUTES = ("meta", "metadata")


def parse_repo(value: object) -> tuple[str, str]:
    """`(namespace, name)` of an `upload_repo` value such as `"ox/inputs"`.

    Raises:
        InvalidRequestError: it is not `namespace/repo`.
    """
    match = _REPO.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidRequestError(
            f"upload_repo={value!r} is not an Oxen repository: give it as 'namespace/repo' "
            "(your user name or an organisation, a slash, a repository name, e.g. 'ox/inputs'); "
            "it is created if missing"
        )
    return match[1], match[2]


def resolve_upload_repo(value: str | None) -> str | None:
    """The `upload_repo` setting: the argument, else `OXEN_UPLOAD_REPO`, else None (inputs
    sent inline); checked here, before anything is sent."""
    if value is None:
        value = os.environ.get("OXEN_UPLOAD_REPO") or None
        if value is None:
            return None
        try:
            parse_repo(value)
        except InvalidRequestError as exc:
            raise ConfigurationError(f"OXEN_UPLOAD_REPO: {exc}") from None
        return value
    parse_repo(value)
    return value


@dataclass
class UploadStats:
    """What an `Uploader` did: for progress displays and tests.

    Attributes:
        uploaded: Images uploaded (one `PUT` that succeeded each).
        skipped: Images found in the repository already (nothing sent).
        bytes_uploaded: Bytes of the images uploaded.
        bytes_skipped: Bytes of the images found there already.
        in_progress: Distinct images being checked or uploaded now.
        retries: Upload requests repeated after a refusal or a lost connection.
    """

    uploaded: int = 0
    skipped: int = 0
    bytes_uploaded: int = 0
    bytes_skipped: int = 0
    in_progress: int = 0
    retries: int = 0


class _Entry(msgspec.Struct, frozen=True, kw_only=True):
    size: int | None = None


class _Metadata(msgspec.Struct, frozen=True, kw_only=True):
    entry: _Entry | None = None


_metadata_decoder: msgspec.json.Decoder[_Metadata] = msgspec.json.Decoder(_Metadata)
_json = msgspec.json.Encoder()


class Uploader:
    """Uploads images to one repository, once each; `url_for` gives the URL to send.

    Concurrent calls for the same bytes share one upload; at most `concurrency` distinct
    images are checked or uploaded at once. Close it with `aclose()` (uploads still running
    are cancelled).

    Example:
        ```python
        uploader = Uploader(api, "ox/inputs")
        try:
            url = await uploader.url_for(data)
        finally:
            await uploader.aclose()
        ```
    """

    def __init__(
        self,
        api: Api,
        repo: str,
        *,
        concurrency: int = C.UPLOAD_CONCURRENCY,
        public: bool = False,
    ) -> None:
        self.namespace, self.name = parse_repo(repo)
        if not isinstance(public, bool):
            raise InvalidRequestError(f"upload_repo_public={public!r} must be True or False")
        self.public = public
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise InvalidRequestError(f"concurrency={concurrency!r} must be a whole number >= 1")
        self._api = api
        self.stats = UploadStats()
        self._slots = asyncio.Semaphore(concurrency)
        self._uploads: dict[str, asyncio.Task[str]] = {}  # by SHA-256: one per distinct image
        self._repo_ready: asyncio.Task[None] | None = None
        self._base = f"/api/repos/{quote(self.namespace, safe='')}/{quote(self.name, safe='')}"
        # The metadata route that found a file here; until one has, both are asked. The CLI
        # seeds it with the route `oxedit doctor` found this hub answers (`_cli/findings.py`).
        self.metadata_route: str | None = None

    def using(self, api: Api) -> Uploader:
        """This uploader (the same uploads, stats and slots), sending through `api` from now
        on: a `with_options` client's uploads follow its own settings."""
        view = copy.copy(self)
        view._api = api
        return view

    def path_for(self, data: bytes) -> str:
        """Where `data` goes in the repository: `oxedit-inputs/<sha256>.<ext>`."""
        mime = sniff_mime(data)
        if mime is None:
            raise InvalidRequestError(
                f"image bytes are not a jpeg, png, gif or webp image (start with {data[:8]!r}); "
                "convert them to one of those formats"
            )
        return f"{C.UPLOAD_DIRECTORY}/{hashlib.sha256(data).hexdigest()}.{_EXTENSIONS[mime]}"

    def url_of(self, path: str) -> str:
        """The URL the API serves the repository file `path` at."""
        return f"{self._api.transport.base_url}{self._route('file', path)}"

    async def url_for(self, data: bytes) -> str:
        """The URL of `data` in the repository, uploading it first unless it is there.

        Raises:
            InvalidRequestError: `data` is not a jpeg, png, gif or webp image.
            APIStatusError: the repository refused (e.g. `PermissionDeniedError` for a
                namespace the key may not write to), after retries where they can help.
            TransportError: no answer, after retries.
        """
        data = bytes(data)
        path = self.path_for(data)
        task = self._uploads.get(path)
        if task is None:
            task = asyncio.create_task(self._ensure(path, data), name=f"oxedit-upload {path}")
            self._uploads[path] = task
            task.add_done_callback(self._forget_failure)
        # Only the upload keeps the bytes: a caller waiting for it (an image shared by many
        # items of a batch) holds none, so memory does not grow with the items waiting.
        del data
        # Shielded: one caller giving up (cancelled) must not cancel the upload the others
        # wait for; `aclose()` owns it.
        return await asyncio.shield(task)

    def _forget_failure(self, task: asyncio.Task[str]) -> None:
        # A failed upload is not remembered: the next call for those bytes tries again.
        if task.cancelled() or task.exception() is not None:
            for path, known in list(self._uploads.items()):
                if known is task:
                    del self._uploads[path]

    async def aclose(self) -> None:
        """Cancel the uploads still running and wait for them to end."""
        tasks: list[asyncio.Task[Any]] = [t for t in self._uploads.values() if not t.done()]
        if self._repo_ready is not None and not self._repo_ready.done():
            tasks.append(self._repo_ready)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, OxeditError):
                await task

    # -- the three requests ---------------------------------------------------------------------

    async def _ensure(self, path: str, data: bytes) -> str:
        self.stats.in_progress += 1
        try:
            async with self._slots:
                if await self._exists(path, len(data)):
                    self.stats.skipped += 1
                    self.stats.bytes_skipped += len(data)
                else:
                    await self._upload(path, data)
                    self.stats.uploaded += 1
                    self.stats.bytes_uploaded += len(data)
        finally:
            self.stats.in_progress -= 1
        return self.url_of(path)

    def _route(self, kind: str, path: str) -> str:
        return f"{self._base}/{kind}/{C.UPLOAD_BRANCH}/{quote(path)}"

    async def _exists(self, path: str, size: int) -> bool:
        """Whether the file is in the repository with this size (a file of another size at
        a content-addressed path is a broken upload: it is replaced)."""
        routes = (self.metadata_route,) if self.metadata_route else _METADATA_ROUTES
        for kind in routes:
            try:
                found = await self._api.call(
                    "GET",
                    self._route(kind, path),
                    route=f"/api/repos/{{namespace}}/{{repo}}/{kind}/{{path}}",
                    what=f"check for {path!r} in {self.namespace}/{self.name}",
                    decoder=_metadata_decoder,
                )
            except APIStatusError as exc:
                # No such file, no such repository yet, or no such route on this server.
                if exc.status_code in (404, 405):
                    continue
                raise
            if found.entry is not None:
                self.metadata_route = kind
                return found.entry.size in (None, size)
        return False

    async def _upload(self, path: str, data: bytes) -> None:
        await self._ensure_repo()
        name, email = C.UPLOAD_AUTHOR
        body, content_type = multipart(
            [
                ("file", data, path.rpartition("/")[2], sniff_mime(data)),
                ("message", f"oxedit: input image {path}".encode(), None, None),
                ("name", name.encode(), None, None),
                ("email", email.encode(), None, None),
            ]
        )
        target = f"upload of {path!r} to {self.namespace}/{self.name}"
        try:
            await self._send(
                "PUT",
                self._route("file", path),
                body,
                route="/api/repos/{namespace}/{repo}/file/{path}",
                what=target,
                content_type=content_type,
            )
        except OxeditError as exc:
            # The first PUT may have landed with its answer lost, or another process stored
            # the same bytes meanwhile; then a refusal of this one does not matter.
            if getattr(exc, "status_code", None) in (401, 403, None):
                raise  # no answer at all: the check would fail the same way
            try:
                landed = await self._exists(path, len(data))
            except OxeditError:
                landed = False
            if not landed:
                raise

    async def _ensure_repo(self) -> None:
        """Create the repository once per uploader; 409 (it exists) is as good as 200."""
        if self._repo_ready is None or (
            self._repo_ready.done()
            and (self._repo_ready.cancelled() or self._repo_ready.exception() is not None)
        ):
            self._repo_ready = asyncio.create_task(self._create_repo(), name="oxedit-upload-repo")
            self._repo_ready.add_done_callback(_retrieve)
        await asyncio.shield(self._repo_ready)

    async def _create_repo(self) -> None:
        name, email = C.UPLOAD_AUTHOR
        body = _json.encode(
            {
                "namespace": self.namespace,
                "name": self.name,
                "user": {"name": name, "email": email},
                "description": "Input images uploaded by oxedit, one file per distinct image",
                "is_public": self.public,
            }
        )
        await self._send(
            "POST",
            "/api/repos",
            body,
            route="/api/repos",
            what=f"create repository {self.namespace}/{self.name}",
            done=frozenset({409}),
        )

    async def _send(
        self,
        method: str,
        path: str,
        body: bytes,
        *,
        route: str,
        what: str,
        content_type: str = "application/json",
        done: frozenset[int] = frozenset(),
    ) -> Response:
        """Send until it succeeds (any 2xx, or a status in `done`), retrying refusals and
        lost connections with the client's `RetryPolicy`."""
        api = self._api
        retrying = api.retrying(on_retry=self._count_retry)
        async for _ in retrying:
            try:
                resp = await api.send(method, path, body, route=route, content_type=content_type)
            except ClientStateError:
                raise
            except APIConnectionError as exc:
                retrying.failed(exc, Verdict.RETRY)
                continue
            if is_success(resp.status) or resp.status in done:
                return resp
            if resp.status < 400:
                raise unexpected_status(resp, what)
            retrying.failed(
                status_error(resp, what=what),
                # Idempotent, whatever the method: see `_IDEMPOTENT`.
                classify(_IDEMPOTENT, resp.status),
                parse_retry_after(resp.headers.get("Retry-After")),
            )
        raise AssertionError("unreachable: the loop returns or raises")

    def _count_retry(self, error: BaseException) -> None:
        self.stats.retries += 1


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a shared task's failure as seen: its waiters may all have been cancelled."""
    if not task.cancelled():
        task.exception()


def multipart(
    fields: list[tuple[str, bytes, str | None, str | None]],
) -> tuple[bytes, str]:
    """A `multipart/form-data` body of `(name, value, filename, content type)` fields, and
    its `Content-Type` (RFC 7578)."""
    boundary = f"oxedit-{uuid.uuid4().hex}"
    parts = []
    for name, value, filename, content_type in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\n"
        parts.append(head.encode() + b"\r\n" + value + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"

"""`oxedit doctor`: check, against a hub, each assumption oxedit makes where the docs, the
spec and the official client disagree or are silent.

Each check is one `Check`: what oxedit assumes, what the server did, a verdict (`ok`,
`differs`, `unknown`: could not tell) and what oxedit does about it. What a check learns that
the client can use at run time goes into `Report.learned` (see `findings`).

Read-only by default: every request is a GET, but for one edit request that is refused before
anything runs (an unknown model, see `_edit_field`). `spend=True` adds one generation of the
cheapest per-image model, which is billed. The key goes to the API host only, through the
client's own transport; nothing here prints or stores it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote, urlsplit

import msgspec
from PIL import Image

from .. import _constants as C
from .._bulk.cost import money, unit_cost
from .._client import Client
from .._exceptions import (
    APIStatusError,
    AuthenticationError,
    OxeditError,
    PermissionDeniedError,
    status_error,
)
from .._http.sse import ServerSentEvent, SSEDecoder
from .._http.transport import Transport
from .._models import Generation, Model, json_encoder
from .._resources.edit import names_field
from .._resources.inputs import sniff_mime

__all__ = ["DIFFERS", "OK", "UNKNOWN", "Check", "Doctor", "Options", "Report", "probe_image"]

OK: Final = "ok"
DIFFERS: Final = "differs"
UNKNOWN: Final = "unknown"
#: How a verdict reads in the table.
LABELS: Final = {OK: "OK", DIFFERS: "differs", UNKNOWN: "could not tell"}

_ANY: Final = msgspec.json.Decoder()
_ROW_FIELDS: Final = (
    "generation_id",
    "model_name",
    "status",
    "result_url",
    "error_message",
    "enqueued_at",
    "started_at",
    "completed_at",
    "prompt",
    "media_type",
)
_EVENT_FIELDS: Final = ("generation_id", "status", "media_type", "model", "url")
# A model id no hub has: the edit endpoint must refuse it before running anything.
_NO_MODEL: Final = "oxedit-doctor-probe-no-such-model"
# The local server edits by keyword ("invert"); a real model reads it as an instruction.
_PROMPT: Final = "Invert the colours of this image"
_REMEMBERED: Final = "remembered for `oxedit` commands on this URL"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    check: str
    assumes: str
    observed: str
    verdict: str
    remedy: str


@dataclass
class Report:
    base_url: str
    checks: list[Check] = field(default_factory=list)
    learned: dict[str, Any] = field(default_factory=dict)
    spent: str | None = None  # the generation's id, when one was made

    @property
    def exit_code(self) -> int:
        return 1 if any(c.verdict == DIFFERS for c in self.checks) else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "exit_code": self.exit_code,
            "checks": [asdict(c) for c in self.checks],
            "learned": self.learned,
            "generation_id": self.spent,
        }

    def add(self, check: str, assumes: str, observed: str, verdict: str, remedy: str) -> None:
        self.checks.append(Check(check, assumes, observed, verdict, remedy))


@dataclass(frozen=True)
class Options:
    """What to check. `keepalive_timeout`: how long to wait for a `: keep-alive` on an idle
    stream (the documented interval plus slack by default); `generation_timeout`: how long the
    `spend` generation may take."""

    keepalive_timeout: float = C.DOCTOR_KEEPALIVE_TIMEOUT
    generation_timeout: float = C.DOCTOR_GENERATION_TIMEOUT
    upload_to: str | None = None
    spend: bool = False


#: Asked before spending: (model id, its per-image price) -> go ahead?
Confirm = Callable[[str, Decimal], Awaitable[bool]]


def probe_image() -> bytes:
    """The image doctor sends: a small PNG gradient, the same bytes every run (so an upload
    of it is found the next time)."""
    image = Image.new("RGB", (64, 64))
    image.putdata([(x * 4, y * 4, 128) for y in range(64) for x in range(64)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


class _Stream:
    """The event stream, read in the background: when keep-alives and events came."""

    def __init__(self) -> None:
        self.opened: float | None = None
        self.keepalives: list[float] = []
        self.events: list[tuple[float, ServerSentEvent]] = []
        self.error: OxeditError | None = None
        self.content_type = ""
        self.changed = asyncio.Event()

    async def read(self, transport: Transport) -> None:
        try:
            async with transport.stream("/api/events") as chunks:
                self.opened = time.monotonic()
                self.changed.set()
                decoder = SSEDecoder()
                pending = b""
                async for chunk in chunks:
                    now = time.monotonic()
                    # Comments are what the decoder skips: spot them in the raw lines.
                    *lines, pending = (pending + chunk).split(b"\n")
                    self.keepalives += [now for ln in lines if ln.startswith(b":")]
                    self.events += [(now, e) for e in decoder.feed(chunk)]
                    self.changed.set()
        except OxeditError as exc:
            self.error = exc
        finally:
            self.changed.set()

    async def until(self, ready: Callable[[], bool], seconds: float) -> bool:
        """Wait at most `seconds` for `ready()` (re-checked as the stream moves)."""
        deadline = time.monotonic() + seconds
        while not ready():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self.changed.wait()
        return True


class Doctor:
    """Runs the checks with an open `Client` (built without doctor's earlier findings)."""

    def __init__(self, client: Client, options: Options) -> None:
        self.client = client
        self.api = client._tracker.api
        uploader = client._tracker.uploader
        if options.upload_to is None and uploader is not None:  # from OXEN_UPLOAD_REPO
            options = replace(options, upload_to=f"{uploader.namespace}/{uploader.name}")
        self.options = options
        self.report = Report(base_url=client.base_url)
        self._stream = _Stream()
        self._models: list[Model] = []

    async def _get(self, path: str, route: str, **params: str) -> Any:
        return await self.api.call("GET", path, route=route, params=params or None, decoder=_ANY)

    async def run(self, confirm: Confirm | None = None) -> Report:
        reader = asyncio.create_task(self._stream.read(self.api.transport), name="oxedit-doctor")
        try:
            if await self._key():
                await self._catalogue()
                await self._edit_field()
                await self._events()
                if self.options.upload_to:
                    await self._repository()
                if self.options.spend:
                    await self._spend(confirm)
                await self._history()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        return self.report

    # -- read-only ------------------------------------------------------------------------------

    async def _key(self) -> bool:
        add = self.report.add
        assumes = "Bearer key accepted; GET /api/ai/queue is {count, generations}"
        try:
            listed = await self._get("/api/ai/queue", "/api/ai/queue")
        except (AuthenticationError, PermissionDeniedError) as exc:
            add(
                "key",
                assumes,
                f"refused: HTTP {exc.status_code}",
                DIFFERS,
                "nothing works without it: set OXEN_API_KEY (or `oxen config --auth`) to a "
                "key of this hub; the other checks were skipped",
            )
            return False
        except OxeditError as exc:
            add(
                "key",
                assumes,
                f"no usable answer: {exc}",
                UNKNOWN,
                "check the base URL and the network; the other checks were skipped",
            )
            return False
        rows = listed.get("generations") if isinstance(listed, dict) else None
        if isinstance(rows, list) and isinstance(listed.get("count"), int):
            add("key, queue list", assumes, f"accepted; {len(rows)} active row(s)", OK, "-")
        else:
            shape = sorted(listed) if isinstance(listed, dict) else type(listed).__name__
            add(
                "key, queue list",
                assumes,
                f"accepted; the list is {shape}",
                DIFFERS,
                "reconciliation reads `generations` of the list: without it, jobs finish by "
                "their events and per-id GETs only; report this",
            )
        add(
            "key's namespace",
            "the queue lists the key's own namespace by default [doc]",
            "no documented route names it",
            UNKNOWN,
            "org-billed jobs (target_namespace) are looked up with namespace=ORG and "
            "reconciled through the queue, events or not",
        )
        return True

    async def _catalogue(self) -> None:
        add = self.report.add
        try:
            self._models = await self.client.models()
        except OxeditError as exc:
            add(
                "models list",
                "GET /api/ai/models is {object: list, data: [model]}",
                f"{exc}",
                DIFFERS,
                "requests are checked with oxedit's offline table; cost estimates are unknown",
            )
            return
        editors = [m for m in self._models if _edits_images(m)]
        add(
            "models list",
            "GET /api/ai/models is {object: list, data: [model]}",
            f"{len(self._models)} models, {len(editors)} take and make images",
            OK if editors else DIFFERS,
            "-" if editors else "no edit model listed: oxedit has nothing to send",
        )
        ids = {m.id for m in self._models}
        model_id = C.DEFAULT_MODEL if C.DEFAULT_MODEL in ids or not editors else editors[0].id
        assumes = f"GET /api/ai/models/{model_id} has request_schema (JSON Schema)"
        try:
            model = await self.client.model(model_id)
        except OxeditError as exc:
            add(
                "model schema",
                assumes,
                f"{exc}",
                DIFFERS,
                "requests are checked with oxedit's offline table (or sent unchecked)",
            )
            return
        props = model.schema.get("properties")
        if isinstance(props, dict) and "prompt" in props:
            add(
                "model schema",
                assumes,
                f"{len(props)} parameters: {', '.join(sorted(props))}",
                OK,
                "-",
            )
        else:
            add(
                "model schema",
                assumes,
                "no request_schema with properties",
                DIFFERS,
                "requests are checked with oxedit's offline table (or sent unchecked)",
            )
        price = unit_cost(model)
        pricing = model.pricing
        assumes = "pricing {method: per_image, cost_per_image} (the amount is not documented)"
        if price is not None:
            add(
                "model pricing",
                assumes,
                f"{model_id}: {money(price)} per image",
                OK,
                "cost estimates and --max-cost use it",
            )
        else:
            add(
                "model pricing",
                assumes,
                f"{model_id}: {pricing or 'none'}",
                DIFFERS,
                "its cost is unknown to estimates: give --unknown-cost USD to cap a batch",
            )

    async def _edit_field(self) -> None:
        """The edit endpoint's image field, from a request it must refuse: an unknown model
        (nothing runs, nothing is billed). A server that wants `image` names it first."""
        assumes = "POST /api/ai/images/edit takes `input_image` [doc] (the spec says `image`)"
        body = json_encoder.encode(
            {"model": _NO_MODEL, "prompt": _PROMPT, "input_image": "https://example.com/x.png"}
        )
        try:
            resp = await self.api.send(
                "POST", "/api/ai/images/edit", body, route="/api/ai/images/edit"
            )
        except OxeditError as exc:
            self.report.add(
                "edit image field",
                assumes,
                f"no answer: {exc}",
                UNKNOWN,
                "the client tries `input_image`, then `image` on a 400 naming it",
            )
            return
        text = resp.body[:300].decode("utf-8", "replace")
        if 200 <= resp.status < 300:
            observed, verdict = f"HTTP {resp.status} for an unknown model", UNKNOWN
            remedy = "the client tries `input_image`, then `image` on a 400 naming it"
        else:
            error = status_error(resp, what="probe")
            if isinstance(error, APIStatusError) and names_field(error, "image"):
                observed, verdict = f"HTTP {resp.status}: {error.message}", DIFFERS
                remedy = f"sends `image` ({_REMEMBERED}; the client also learns it on a 400)"
                self.report.learned["edit_field"] = "image"
            else:
                observed, verdict, remedy = f"HTTP {resp.status}: {text}", OK, "-"
                self.report.learned["edit_field"] = "input_image"
        self.report.add("edit image field", assumes, observed, verdict, remedy)

    async def _events(self) -> None:
        stream, wait = self._stream, self.options.keepalive_timeout
        add = self.report.add
        assumes = f"GET /api/events is text/event-stream; `: keep-alive` within {wait:g} s"
        await stream.until(lambda: stream.opened is not None or stream.error is not None, wait)
        if stream.opened is None:
            add(
                "event stream",
                assumes,
                f"{stream.error or 'no answer'}",
                DIFFERS,
                "without events, jobs are found finished through the queue (reconciliation): "
                "slower, still correct",
            )
            return
        opened = stream.opened
        came = await stream.until(lambda: bool(stream.keepalives), wait)
        if came:
            after = stream.keepalives[0] - opened
            add(
                "event stream",
                assumes,
                f"open; a keep-alive after {after:.1f} s",
                OK,
                f"{C.STREAM_IDLE_TIMEOUT:g} s of silence is taken as a dead stream",
            )
        else:
            add(
                "event stream",
                assumes,
                f"open; no keep-alive in {wait:g} s"
                + (f" ({stream.error})" if stream.error else ""),
                DIFFERS,
                f"an idle stream is taken as dead after {C.STREAM_IDLE_TIMEOUT:g} s of silence "
                "(Timeouts.stream_idle): oxedit reconnects and reconciles pending jobs through "
                "the queue, so jobs still finish; nothing to change",
            )

    async def _repository(self) -> None:
        add, repo = self.report.add, self.options.upload_to
        uploader = self.client._tracker.uploader
        assert uploader is not None and repo is not None  # the client was made with it
        data = probe_image()
        try:
            await uploader.url_for(data)  # creates the repository, uploads once (hashed path)
        except OxeditError as exc:
            add(
                "repository upload",
                f"POST /api/repos and PUT .../file/ work on {repo}",
                f"{exc}",
                DIFFERS,
                "uploads fail: drop --upload-to / OXEN_UPLOAD_REPO (inputs go inline as data URIs)",
            )
            return
        add(
            "repository upload",
            f"POST /api/repos and PUT .../file/ work on {repo}",
            "the probe image is in the repository",
            OK,
            "-",
        )
        path = uploader.path_for(data)
        base = f"/api/repos/{quote(uploader.namespace, safe='')}/{quote(uploader.name, safe='')}"
        status = {}
        # In the uploader's order: oxen-server's and the official client's, then the docs'.
        for kind in ("meta", "metadata"):
            try:
                await self._get(
                    f"{base}/{kind}/{C.UPLOAD_BRANCH}/{quote(path)}",
                    f"/api/repos/{{namespace}}/{{repo}}/{kind}/{{path}}",
                )
                status[kind] = "200"
            except APIStatusError as exc:
                status[kind] = str(exc.status_code)
            except OxeditError as exc:
                status[kind] = f"no answer ({exc})"
        observed = f"/meta/: {status['meta']}, /metadata/: {status['metadata']}"
        assumes = (
            "GET .../meta/main/PATH (oxen-server's, the official client's) or "
            ".../metadata/main/PATH [doc] answers"
        )
        # The uploader keeps to the first route that finds a file; what answered here seeds
        # it (`_cli/findings.py`), so later commands ask only that one from the start.
        found = next((kind for kind in ("meta", "metadata") if status[kind] == "200"), None)
        if found is not None:
            add("repository metadata route", assumes, observed, OK, "-")
            self.report.learned["metadata_route"] = found
        else:
            add(
                "repository metadata route",
                assumes,
                observed,
                DIFFERS,
                "the uploader cannot see what is there: every input is uploaded again each "
                "run (correct, only slower); report this",
            )

    async def _history(self) -> None:
        add = self.report.add
        route = "/api/ai/generations"
        assumes = (
            "GET /api/ai/generations?page=&page_size= is "
            "{generations: [row + cost], total_cost} [spec]"
        )
        try:
            first = await self._get(route, route, page="1", page_size="1")
        except OxeditError as exc:
            add(
                "history page",
                assumes,
                f"{exc}",
                DIFFERS,
                "no history: client.history() fails, and a lost enqueue is looked for in the "
                "queue lists only",
            )
            return
        rows, key = _rows(first)
        if key == "generations" and "total_cost" in first:
            costed = all(isinstance(r, dict) and "cost" in r for r in rows)
            add(
                "history page",
                assumes,
                f"generations ({len(rows)} row(s)), total_cost" + ("" if costed else "; no cost"),
                OK if costed else DIFFERS,
                "-" if costed else "costs read as unknown (never zero)",
            )
        elif key is not None:
            add(
                "history page",
                assumes,
                f"rows under `{key}`",
                DIFFERS,
                "reads rows under `generations` or `data`; a missing total_cost is unknown",
            )
        else:
            shape = sorted(first) if isinstance(first, dict) else type(first).__name__
            add(
                "history page",
                assumes,
                f"{shape}",
                DIFFERS,
                "the history cannot be read: client.history() is empty; report this",
            )
        await self._history_numbering(route, rows)

    async def _history_numbering(self, route: str, page1: list[Any]) -> None:
        assumes = "history pages count from 1 (page=1 is the newest)"
        add = self.report.add
        try:
            zero = await self._get(route, route, page="0", page_size="1")
        except APIStatusError as exc:
            if exc.status_code in (400, 422):
                add(
                    "history page numbering",
                    assumes,
                    f"page=0 refused ({exc.status_code})",
                    OK,
                    "-",
                )
                self.report.learned["history_first_page"] = 1
            else:
                add("history page numbering", assumes, f"page=0: {exc}", UNKNOWN, "counts from 1")
            return
        except OxeditError as exc:
            add("history page numbering", assumes, f"page=0: {exc}", UNKNOWN, "counts from 1")
            return
        page0, _ = _rows(zero)
        if not page0:
            if page1:
                add("history page numbering", assumes, "page=0 is empty, page=1 is not", OK, "-")
                self.report.learned["history_first_page"] = 1
            else:
                add(
                    "history page numbering",
                    assumes,
                    "the history is empty",
                    UNKNOWN,
                    "counts from 1; run doctor again once the history has a generation "
                    "(e.g. with --spend)",
                )
            return
        if page1 and _row_id(page0[0]) == _row_id(page1[0]):
            add("history page numbering", assumes, "page=0 is page=1 again", OK, "-")
            self.report.learned["history_first_page"] = 1
            return
        add(
            "history page numbering",
            assumes,
            "page=0 has the newest row" + ("" if page1 else ", page=1 is empty"),
            DIFFERS,
            f"counts pages from 0 ({_REMEMBERED}); a library Client reads page 1 as the "
            "second page",
        )
        self.report.learned["history_first_page"] = 0

    # -- spending -------------------------------------------------------------------------------

    async def _cheapest(self) -> tuple[Model, Decimal] | None:
        priced = sorted(
            (
                (price, m.id, m)
                for m in self._models
                if _edits_images(m)
                if (price := unit_cost(m)) is not None
            ),
            key=lambda t: (t[0], t[1]),
        )
        for price, model_id, _ in priced:
            try:
                model = await self.client.model(model_id)
            except OxeditError:
                continue
            required = set(model.schema.get("required") or ())
            if required <= {"prompt", "input_image"}:
                return model, price
        return None

    async def _spend(self, confirm: Confirm | None) -> None:
        add = self.report.add
        found = await self._cheapest()
        if found is None:
            add(
                "generation",
                "a per-image priced edit model exists",
                "none found",
                UNKNOWN,
                "nothing was spent",
            )
            return
        model, price = found
        if confirm is not None and not await confirm(model.id, price):
            add("generation", "-", "not confirmed", UNKNOWN, "nothing was spent")
            return
        stream = self._stream
        seen = len(stream.events)
        started = time.monotonic()
        try:
            job = await self.client.submit(prompt=_PROMPT, image=probe_image(), model=model.id)
        except OxeditError as exc:
            add(
                "enqueue",
                "POST /api/ai/queue answers {generations: [{generation_id}]}",
                f"{exc}",
                DIFFERS,
                "nothing can be generated; report this",
            )
            return
        enqueued = time.monotonic()
        self.report.spent = job.id
        where = f" (input from {self.options.upload_to})" if self.options.upload_to else ""
        add(
            "enqueue",
            "POST /api/ai/queue answers {generations: [{generation_id}]}",
            f"{model.id}{where}: {job.id} in {enqueued - started:.1f} s",
            OK,
            "-",
        )
        try:
            generation = await job.wait(timeout=self.options.generation_timeout)
        except OxeditError as exc:
            add(
                "generation",
                "it succeeds",
                f"{exc}",
                DIFFERS,
                "see the error; a hosted input a job cannot read fails it: try without --upload-to"
                if self.options.upload_to
                else "see the error",
            )
            return
        add(
            "generation",
            "it succeeds",
            f"succeeded after {time.monotonic() - started:.1f} s",
            OK,
            "-",
        )
        await self._event_shape(job.id, seen, enqueued)
        await self._row(job.id)
        await self._result(generation)
        await self._cost(job.id, price)

    async def _event_shape(self, generation_id: str, seen: int, enqueued: float) -> None:
        stream = self._stream
        assumes = "event media_generation_completed {" + ", ".join(_EVENT_FIELDS) + "}"

        def ours() -> dict[str, Any] | None:
            for _, event in stream.events[seen:]:
                if event.event == "media_generation_completed":
                    with contextlib.suppress(msgspec.DecodeError):
                        data = _ANY.decode(event.data)
                        if isinstance(data, dict) and data.get("generation_id") == generation_id:
                            return data
            return None

        await stream.until(lambda: ours() is not None, C.DOCTOR_EVENT_GRACE)
        data = ours()
        if data is None:
            self.report.add(
                "completion event",
                assumes,
                f"none in {C.DOCTOR_EVENT_GRACE:g} s after the job ended",
                DIFFERS,
                "jobs are found finished through the queue (reconciliation): "
                f"later, up to {C.STALE_AFTER:g} s, still correct",
            )
            return
        at = next(t for t, e in stream.events[seen:] if generation_id.encode() in e.data)
        missing = [f for f in _EVENT_FIELDS if f not in data]
        timing = f"{at - enqueued:+.1f} s after the enqueue answer"
        if missing:
            self.report.add(
                "completion event",
                assumes,
                f"{timing}; missing {', '.join(missing)}",
                DIFFERS,
                "an event without `url` leaves a download without a URL: read the "
                "row (client.get) for it; report this",
            )
        else:
            extra = sorted(set(data) - set(_EVENT_FIELDS))
            more = f"; also {', '.join(extra)}" if extra else ""
            self.report.add("completion event", assumes, f"{timing}{more}", OK, "-")

    async def _row(self, generation_id: str) -> None:
        assumes = "GET /api/ai/queue/{id} is the bare row {" + ", ".join(_ROW_FIELDS[:5]) + ", ...}"
        try:
            row = await self._get(
                f"/api/ai/queue/{quote(generation_id, safe='')}", "/api/ai/queue/{id}"
            )
        except OxeditError as exc:
            self.report.add("generation row", assumes, f"{exc}", DIFFERS, "report this")
            return
        if not isinstance(row, dict):
            self.report.add("generation row", assumes, type(row).__name__, DIFFERS, "report this")
            return
        missing = [f for f in _ROW_FIELDS if f not in row]
        if not missing:
            self.report.add("generation row", assumes, f"all {len(_ROW_FIELDS)} fields", OK, "-")
        else:
            self.report.add(
                "generation row",
                assumes,
                f"missing {', '.join(missing)}",
                DIFFERS,
                "missing fields read as unknown (None); `url` stands in for `result_url`",
            )

    async def _result(self, generation: Generation) -> None:
        add = self.report.add
        assumes = "the result URL is presigned on a file host, no key needed"
        url = generation.url or ""
        host = urlsplit(url).netloc
        own = host == urlsplit(self.client.base_url).netloc
        keyless = Transport(
            base_url=self.client.base_url,
            api_key="-",
            timeouts=self.client.timeouts,
            limits=self.client.limits,
        )
        keyless._auth = {}  # no key, not even a stand-in, on any hop
        await keyless.open()
        try:
            resp = await keyless.download(url)
            bare = f"HTTP {resp.status}" + ("" if sniff_mime(resp.body) else " (not an image)")
            needs_key = not (200 <= resp.status < 300 and sniff_mime(resp.body))
        except OxeditError as exc:
            bare, needs_key = f"no answer ({exc})", True
        finally:
            await keyless.close()
        try:
            await self.client.read(generation)
            read = "downloads"
        except OxeditError as exc:
            read = f"download failed: {exc}"
        where = "the API host" if own else host
        observed = f"on {where}; without the key: {bare}; oxedit {read}"
        if not own and not needs_key:
            add("result URL", assumes, observed, OK, "-")
        elif not own:
            add(
                "result URL",
                assumes,
                observed,
                DIFFERS,
                "cannot be fixed in oxedit: it never sends the key to a host other than the "
                "API's, so results cannot be downloaded; report this",
            )
        elif read == "downloads":
            add(
                "result URL",
                assumes,
                observed,
                DIFFERS,
                "sends the key with downloads from the API host (only there): they work",
            )
        else:
            add("result URL", assumes, observed, DIFFERS, "report this")

    async def _cost(self, generation_id: str, price: Decimal) -> None:
        assumes = f"GET /api/ai/generations/{{id}} has its cost: the estimate, {money(price)}"
        try:
            entry = await self.client.history_entry(generation_id)
        except OxeditError as exc:
            self.report.add(
                "history cost",
                assumes,
                f"{exc}",
                DIFFERS,
                "a batch's --max-cost counts the estimate for such jobs",
            )
            return
        if entry.cost == price:
            self.report.add("history cost", assumes, money(entry.cost), OK, "-")
        elif entry.cost is None:
            self.report.add(
                "history cost",
                assumes,
                "no cost",
                DIFFERS,
                "a batch's --max-cost counts the estimate for such jobs",
            )
        else:
            self.report.add(
                "history cost",
                assumes,
                money(entry.cost),
                DIFFERS,
                "estimates come from the models' pricing and are off: keep a margin on --max-cost",
            )


def _edits_images(model: Model) -> bool:
    caps = model.capabilities
    return "image" in caps.get("input", []) and "image" in caps.get("output", [])


def _rows(page: Any) -> tuple[list[Any], str | None]:
    """A history page's rows, and the key they were under."""
    if isinstance(page, dict):
        for key in ("generations", "data"):
            if isinstance(page.get(key), list):
                return page[key], key
    return [], None


def _row_id(row: Any) -> Any:
    return row.get("generation_id") if isinstance(row, dict) else row

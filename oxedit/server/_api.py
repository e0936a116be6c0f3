"""The `/api` routes of the local server, and the store of generations behind them.

Shapes follow Oxen's published inference API docs and the hub's OpenAPI spec to the letter:
the server is the SDK's test bed, so it never bends the API to make a client's life easier.
Request bodies are validated in `_validation`; with a state folder, every state change is
also recorded through `_store` before anyone can hear of it.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from ._billing import History, credits_refusal
from ._constants import USER_NAMESPACE
from ._edits import EditError
from ._events import EventBroker
from ._faults import Faults
from ._files import FileHost
from ._jobs import ACTIVE, STATUSES, Generation, WorkerPool
from ._liveness import bad_enqueue_answer, drip, get_fault
from ._ratelimit import TokenBucket
from ._responses import (
    ApiError,
    decode_json,
    encoder,
    invalid_params,
    json_response,
    message_error,
    not_found,
    typed_error,
    unauthenticated,
)
from ._schemas import MODELS, Model
from ._stats import ServerStats
from ._store import StateStore
from ._validation import edit_request, queue_request

__all__ = ["Api"]

logger = logging.getLogger("oxedit.testing")

# Query filter -> the generation's value it is compared with.
_LIST_FILTERS: dict[str, Callable[[Generation], object]] = {
    "model": lambda g: g.model.id,
    "media_type": lambda g: "image",
    # [doc] A generation is in the namespace it was billed to (`target_namespace`), else the
    # user's; the list shows the user's namespace unless `namespace=` names another.
    "namespace": lambda g: g.targets.get("target_namespace") or USER_NAMESPACE,
    "repo": lambda g: g.targets.get("target_repo"),
    "folder": lambda g: g.targets.get("target_directory"),
}
_MODELS_BODY = encoder.encode({"object": "list", "data": list(MODELS.values())})
_MAX_DOWNLOAD = 64 * 1024 * 1024
# Routes whose answers `Faults.drip_interval` slows down.
_DRIP_ROUTES = frozenset(
    {"POST /api/ai/queue", "GET /api/ai/queue", "GET /api/ai/queue/{generation_id}"}
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Api:
    """Handlers of the `/api` routes, over one in-memory store of generations."""

    def __init__(
        self,
        *,
        api_key: str,
        faults: Faults,
        stats: ServerStats,
        workers: int,
        store: StateStore | None = None,
    ) -> None:
        self.api_key = api_key
        self.faults = faults
        self._bucket = TokenBucket()
        self.stats = stats
        self.generations: dict[str, Generation] = {}
        self._blocking: dict[str, Generation] = {}  # results of /images/edit, for the files
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.store = store
        self.files = FileHost(
            faults, stats, self._result_of, secret=store.secret if store is not None else None
        )
        self.broker = EventBroker(faults, stats, self.files.presign)
        self.pool = WorkerPool(
            workers, faults, self._fetch, self._finished, self._silent_cancel, self._started
        )
        self._session: aiohttp.ClientSession | None = None
        self._late: set[asyncio.Task[None]] = set()  # enqueues committed after their cut

    def app(self) -> web.Application:
        # Data URIs of real photos exceed aiohttp's 1 MiB default; the docs set no limit.
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_post("/api/ai/queue", self.enqueue)
        r.add_get("/api/ai/queue", self.list_generations)
        r.add_get("/api/ai/queue/{generation_id}", self.get_generation)
        r.add_delete("/api/ai/queue/{generation_id}", self.cancel)
        r.add_get("/api/events", self.broker.stream)
        r.add_post("/api/ai/images/edit", self.edit)
        r.add_get("/api/ai/models", self.list_models)
        r.add_get("/api/ai/models/{model_id}", self.get_model)
        history = History(self)
        r.add_get("/api/ai/generations", history.list)
        r.add_get("/api/ai/generations/{generation_id}", history.get)
        return app

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        if self.store is not None:
            self._reload(self.store)
        self.pool.start()

    def _reload(self, store: StateStore) -> None:
        """Take over the rows of an earlier run; the ones it left active run again, once."""
        for gen in store.load():
            self.generations[gen.id] = gen
            if gen.status in ACTIVE:
                # Whatever it had done died with the process: it starts over, from the queue.
                gen.status, gen.started_at = "queued", None
                store.update(gen)
                self.pool.submit(gen)
                self._active += 1
                self.stats.generations_resumed += 1
        if self._active:
            self._idle.clear()

    async def stop(self) -> None:
        for task in self._late:
            task.cancel()
        self.broker.cancel_delayed()
        await self.pool.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- store ----------------------------------------------------------------------------------

    def row(self, gen: Generation) -> dict[str, Any]:
        return gen.row(self.files.presign(gen) if gen.status == "succeeded" else None)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    def _result_of(self, gen_id: str) -> Generation | None:
        gen = self.generations.get(gen_id) or self._blocking.get(gen_id)
        store = self.store
        if store is not None and gen is not None and gen.result is None and gen.visible:
            gen.result = store.read_result(gen)  # a result of an earlier run (None if none)
        return gen

    def _started(self, gen: Generation) -> None:
        if gen.visible and self.store is not None:
            self.store.update(gen)

    def _finished(self, gen: Generation) -> None:
        if not gen.visible:
            if gen.future is not None and not gen.future.done():
                gen.future.set_result(None)
            return
        if self.store is not None:
            self.store.update(gen)  # before the event: a client never hears of unsaved news
        self._active -= 1
        if not self._active:
            self._idle.set()
        self.broker.completed(gen)

    async def _fetch(self, url: str) -> bytes:
        assert self._session is not None
        # A hub file URL of this very host is read as the user whose job it is [guess: doctor
        # --spend --upload-to checks it], so
        # with the key; any other host gets none.
        own = self.files.api_url and url.startswith(f"{self.files.api_url}/api/repos/")
        headers = {"Authorization": f"Bearer {self.api_key}"} if own else None
        try:
            async with self._session.get(url, headers=headers) as resp:
                status = resp.status
                data = bytearray()  # `read(n)` gives what has come, up to n: read to the end
                while chunk := await resp.content.read(_MAX_DOWNLOAD + 1 - len(data)):
                    data += chunk
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise EditError(f"input_image could not be downloaded: {exc!r}") from None
        if status != 200:
            raise EditError(f"input_image could not be downloaded: HTTP {status}")
        if len(data) > _MAX_DOWNLOAD:
            raise EditError("input_image is larger than 64 MiB")
        return bytes(data)

    # -- middleware -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical if resource is not None else request.path}"
        self.stats.requests_by_route[route] += 1
        resp = await self._answer(request, handler)
        if isinstance(resp, web.Response) and isinstance(resp.body, bytes):
            self.stats.response_bytes_by_route[route] += len(resp.body)
        success = self.faults.success_status
        if success != 200 and resp.status == 200 and isinstance(resp, web.Response):
            resp.set_status(success)  # [spec] says 200; a client must take any 2xx
        interval = self.faults.drip_interval
        if interval is not None and route in _DRIP_ROUTES and isinstance(resp, web.Response):
            return await drip(request, resp, interval)
        return resp

    async def _answer(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._authorized(request.headers.get("Authorization", "")):
            return unauthenticated()
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response
        except web.HTTPNotFound:
            return typed_error(404, "resource_not_found", title=f"Not found: {request.path}")
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            type_ = "invalid_params" if exc.status < 500 else "unknown_error"
            resp = typed_error(exc.status, type_, title=exc.reason)
            if "Allow" in exc.headers:
                resp.headers["Allow"] = exc.headers["Allow"]
            return resp
        except Exception:
            logger.exception("error handling %s %s", request.method, request.path)
            return typed_error(500, "unknown_error", title="Internal server error")

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        )

    # -- queue ----------------------------------------------------------------------------------

    async def enqueue(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults
        limit = faults.enqueue_rate_limit
        limited = limit is not None and not self._bucket.take(limit, faults.enqueue_burst)
        refused = faults.refuse_enqueues > 0
        if refused:
            faults.refuse_enqueues -= 1
        if limited or refused or faults.roll(faults.enqueue_429_rate):
            self.stats.rate_limited += limited
            headers = (
                None if faults.retry_after is None else {"Retry-After": str(faults.retry_after)}
            )
            return message_error(429, "Rate limit exceeded", headers)
        if faults.roll(faults.enqueue_5xx_rate):
            return typed_error(503, "unknown_error", title="Service temporarily unavailable")
        model, params, targets, count = queue_request(decode_json(await request.read()))
        refusal = credits_refusal(faults, self.stats.generations_created, count)
        if refusal is not None:
            return refusal
        transport = request.transport
        if (
            faults.commit_delay is not None
            and transport is not None
            and faults.roll(faults.lost_response_rate)
        ):
            # A load balancer gives up on the request while the backend goes on with it: the
            # client's connection is cut now, the rows are committed later (and counted as
            # work in progress meanwhile, so `wait_idle` waits for them).
            transport.close()
            self._active += count
            self._idle.clear()
            delay = faults.draw(faults.commit_delay)
            task = asyncio.get_running_loop().create_task(
                self._commit_late(delay, model, params, targets, count)
            )
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            return web.Response(status=502)  # never reaches the client: the socket is closed
        gens = self._commit(model, params, targets, count)
        self._active += count
        self._idle.clear()
        # Built now: the status at creation, even if the response is then held back.
        resp = bad_enqueue_answer(faults, [g.id for g in gens]) or json_response(
            {"generations": [{"generation_id": g.id, "status": "queued"} for g in gens]}
        )
        if faults.roll(faults.event_before_response_rate):
            await self.broker.wait_delivered(gens)
        if (
            faults.commit_delay is None
            and faults.roll(faults.lost_response_rate)
            and request.transport is not None
        ):
            # Created, but the client never hears of it: the ambiguous enqueue of the docs.
            request.transport.close()
        return resp

    def _commit(
        self, model: Model, params: dict[str, Any], targets: dict[str, str], count: int
    ) -> list[Generation]:
        gens = [Generation(str(uuid.uuid4()), model, params, targets) for _ in range(count)]
        if self.store is not None:
            self.store.insert(gens)  # committed before the answer: a kill -9 cannot lose them
        for gen in gens:
            self.generations[gen.id] = gen
            self.pool.submit(gen)
        self.stats.generations_created += count
        self.stats.generations_created_per_request.append(count)
        return gens

    async def _commit_late(
        self,
        delay: float,
        model: Model,
        params: dict[str, Any],
        targets: dict[str, str],
        count: int,
    ) -> None:
        """`Faults.commit_delay`: the rows of an enqueue whose connection was cut, committed
        `delay` seconds later (their `enqueued_at` is the commit's time, as a backend's is)."""
        await asyncio.sleep(delay)
        self._commit(model, params, targets, count)

    async def list_generations(self, request: web.Request) -> web.StreamResponse:
        broken = get_fault(self.faults)
        if broken is not None:
            return broken
        query = request.query
        for key in query:
            if key != "status" and key not in _LIST_FILTERS:
                raise invalid_params(f"Unknown query parameter '{key}'")
        statuses = {s for v in query.getall("status", []) for s in v.split(",") if s}
        for status in statuses:
            if status not in STATUSES:
                raise invalid_params(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        wanted = statuses or ACTIVE
        filters = [(_LIST_FILTERS[k], query[k]) for k in _LIST_FILTERS if k in query]
        if "namespace" not in query:
            filters.append((_LIST_FILTERS["namespace"], USER_NAMESPACE))
        rows = []
        for gen in self.generations.values():
            if gen.status not in wanted:
                continue
            if all(value_of(gen) == value for value_of, value in filters):
                rows.append(self.row(gen))
        return json_response({"count": len(rows), "generations": rows})

    async def get_generation(self, request: web.Request) -> web.StreamResponse:
        broken = get_fault(self.faults)
        if broken is not None:
            return broken
        return json_response(self.row(self._generation(request)))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        gen = self._generation(request)
        # The docs: "only active rows are affected". A finished row is left as it is, and the
        # call still succeeds.
        if gen.status in ACTIVE:
            self._cancel_active(gen)
        return json_response({"status": "success", "generation_id": gen.id})

    def _cancel_active(self, gen: Generation) -> None:
        gen.finish("cancelled")
        if self.store is not None:
            self.store.update(gen)
        self._active -= 1
        if not self._active:
            self._idle.set()
        self.broker.notify()

    def kill_and_retry(self, gen: Generation) -> Generation:
        """[spec v0.257.0] Cancel an active generation and re-create it as a new row whose
        `retried_from_id` names it. (The spec gives the row field, not how a retry is asked
        for [guess], so no doctor check can ask for one: tests call
        `LocalServer.kill_and_retry`.) The original sends no event."""
        if gen.status not in ACTIVE:
            raise ValueError(f"generation {gen.id} is {gen.status}; only active ones are retried")
        self._cancel_active(gen)
        # Kept with the targets: echoed at top level of the row, and persisted with them.
        targets = {**gen.targets, "retried_from_id": gen.id}
        successor = Generation(str(uuid.uuid4()), gen.model, gen.params, targets)
        if self.store is not None:
            self.store.insert([successor])
        self.generations[successor.id] = successor
        self.pool.submit(successor)
        self._active += 1
        self._idle.clear()
        self.stats.generations_created += 1
        return successor

    def _silent_cancel(self, gen: Generation) -> None:
        """Someone else (another process of the same user) cancelled `gen`: no event."""
        if gen.visible and gen.status in ACTIVE:
            self.stats.silent_cancels += 1
            self._cancel_active(gen)

    def _generation(self, request: web.Request) -> Generation:
        gen_id = request.match_info["generation_id"]
        gen = self.generations.get(gen_id)
        if gen is None:
            raise not_found(f"Generation not found: {gen_id}")
        return gen

    # -- blocking edit --------------------------------------------------------------------------

    async def edit(self, request: web.Request) -> web.StreamResponse:
        body = decode_json(await request.read())
        model, params = edit_request(body, self.faults.edit_field)
        response_format = body.get("response_format", "url")
        if response_format not in ("url", "b64_json"):
            raise invalid_params(
                f"response_format must be url or b64_json, got {response_format!r}"
            )
        targets = {k: body[k] for k in ("target_namespace",) if k in body}
        # Runs on the same worker pool as the queue, but is no queue row and sends no event.
        gen = Generation(str(uuid.uuid4()), model, params, targets, visible=False)
        gen.future = asyncio.get_running_loop().create_future()
        self._blocking[gen.id] = gen
        self.pool.submit(gen)
        await asyncio.shield(gen.future)  # a client hanging up must not cancel the job
        if gen.status == "failed":
            assert gen.error_message is not None
            if gen.failure_is_params:
                raise invalid_params(gen.error_message)
            return typed_error(500, "unknown_error", title=gen.error_message)
        assert gen.result is not None and gen.completed_at is not None
        image = (
            {"url": self.files.presign(gen)}
            if response_format == "url"
            else {"b64_json": base64.b64encode(gen.result).decode()}
        )
        return json_response({"model": model.id, "created": gen.completed_at, "images": [image]})

    # -- models ---------------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=_MODELS_BODY, content_type="application/json")

    async def get_model(self, request: web.Request) -> web.StreamResponse:
        model_id = request.match_info["model_id"]
        if self.faults.refuse_models > 0:
            self.faults.refuse_models -= 1
            return typed_error(503, "unknown_error", title="Service temporarily unavailable")
        model = MODELS.get(model_id)
        if model is None:
            raise not_found(f"Model not found: {model_id}")
        return json_response(model)

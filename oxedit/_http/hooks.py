"""Event hooks: callbacks an application registers to observe requests and settled jobs.

Hooks are plain (synchronous) callables, called inline: a hook on every request or settle must
be cheap, and a coroutine would need a task per call that nobody awaits. A hook that wants to
do I/O schedules it itself (`asyncio.get_running_loop().create_task(...)`). A hook that raises
is logged on the `oxedit` logger and skipped; it never breaks a request or a job.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .._exceptions import InvalidRequestError, OxeditError
from .._models import Generation

__all__ = ["EventHooks", "JobSettled", "RequestInfo", "ResponseInfo"]

log = logging.getLogger("oxedit")

HookName = Literal["request", "response", "settled"]
_NAMES: tuple[HookName, ...] = ("request", "response", "settled")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """An HTTP request about to be sent (the `request` hook's argument).

    Attributes:
        method: "GET", "POST", "DELETE".
        url: The full URL, query string excluded; headers are not given (one holds the key).
    """

    method: str
    url: str


@dataclass(frozen=True, slots=True)
class ResponseInfo:
    """An HTTP response received (the `response` hook's argument).

    Attributes:
        method: The request's method.
        url: The request's URL, query string excluded.
        status_code: The HTTP status.
        elapsed: Seconds from sending the request to its whole body read (for the event
            stream, to its headers).
    """

    method: str
    url: str
    status_code: int
    elapsed: float


@dataclass(frozen=True, slots=True)
class JobSettled:
    """A job settled, once per job (the `settled` hook's argument).

    Attributes:
        generation_id: The id the job was enqueued as (`Job.id`).
        status: "succeeded", "failed" or "cancelled", or "error" when the job ended with an
            `OxeditError` instead (an expired row, the client closed, a refused stream).
        outcome: The final `Generation`, or that error.
        elapsed: Seconds from the enqueue's answer to the settle.
    """

    generation_id: str
    status: str
    outcome: Generation | OxeditError
    elapsed: float


def _call_all(hooks: tuple[Callable[[Any], object], ...], arg: object) -> None:
    for hook in hooks:
        try:
            hook(arg)
        except Exception:
            # Observability must never cost a request or a job.
            log.exception("event hook %r failed on %r", hook, arg)


class EventHooks:
    """The checked hooks of one client; each list is empty when none were given, so the
    callers' `if hooks.request:` is the whole cost of not using them."""

    __slots__ = ("request", "response", "settled")

    def __init__(self, hooks: Mapping[str, Sequence[Callable[..., object]]] | None = None) -> None:
        self.request: tuple[Callable[[RequestInfo], object], ...] = ()
        self.response: tuple[Callable[[ResponseInfo], object], ...] = ()
        self.settled: tuple[Callable[[JobSettled], object], ...] = ()
        if hooks is None:
            return
        if not isinstance(hooks, Mapping):
            raise InvalidRequestError(
                f"event_hooks={hooks!r} must be a dict like {{'request': [fn], 'settled': [fn]}}"
            )
        for name, callables in hooks.items():
            if name not in _NAMES:
                raise InvalidRequestError(
                    f"event_hooks has an unknown hook {name!r}; the hooks are {', '.join(_NAMES)}"
                )
            if isinstance(callables, str | bytes) or not isinstance(callables, Sequence):
                raise InvalidRequestError(
                    f"event_hooks[{name!r}]={callables!r} must be a list of callables"
                )
            for hook in callables:
                if not callable(hook):
                    raise InvalidRequestError(f"event_hooks[{name!r}]: {hook!r} is not callable")
                if inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
                    getattr(hook, "__call__", None)  # noqa: B004 - an instance with async __call__
                ):
                    raise InvalidRequestError(
                        f"event_hooks[{name!r}]: {hook!r} is a coroutine function; hooks are "
                        "called synchronously (schedule a task from a plain function for I/O)"
                    )
            setattr(self, name, tuple(callables))

    def on_request(self, method: str, url: str) -> None:
        _call_all(self.request, RequestInfo(method, url))

    def on_response(self, method: str, url: str, status: int, elapsed: float) -> None:
        _call_all(self.response, ResponseInfo(method, url, status, elapsed))

    def settle_callback(self) -> Callable[[str, Generation | OxeditError, float], None] | None:
        """What the registry calls when a job settles; None when no `settled` hook is set."""
        if not self.settled:
            return None
        hooks = self.settled

        def settled(generation_id: str, outcome: Generation | OxeditError, elapsed: float) -> None:
            status = outcome.status if isinstance(outcome, Generation) else "error"
            _call_all(hooks, JobSettled(generation_id, status, outcome, elapsed))

        return settled

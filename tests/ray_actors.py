"""Actors the Ray tests use, in a module Ray's worker processes can import."""

from __future__ import annotations

from typing import Any

import ray

import oxedit.ray

REGISTRY = "oxedit-test-actors"


class Registry:
    """Holds the handles of the `KillableEdit` actors, for the test to kill one."""

    def __init__(self) -> None:
        self.handles: list[Any] = []

    def register(self, handle: Any) -> None:
        self.handles.append(handle)

    def all(self) -> list[Any]:
        return self.handles


class KillableEdit(oxedit.ray.Edit):
    """`oxedit.ray.Edit` that says where it is, once, so a test can `ray.kill` it."""

    registered = False

    async def __call__(self, batch: Any) -> dict[str, list[Any]]:
        if not self.registered:
            self.registered = True
            registry: Any = ray.get_actor(REGISTRY, namespace="oxedit")
            registry.register.remote(ray.get_runtime_context().current_actor)
        return await super().__call__(batch)

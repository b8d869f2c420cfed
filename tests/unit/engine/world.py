"""A tiny in-memory external system for engine unit tests: named objects, call counts, faults."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.engine import Done, Outcome, ResourceRef, Step, StepContext, TransientError


class Gone(Exception):
    not_found = True


class Refused(Exception):
    transient = False


@dataclass
class World:
    objects: dict[str, str] = field(default_factory=dict)
    creates: Counter[str] = field(default_factory=Counter)
    deletes: Counter[str] = field(default_factory=Counter)
    faults: dict[str, list[BaseException]] = field(default_factory=dict)
    """Errors to raise, in order, on the next calls of an object name."""

    def _fault(self, name: str) -> None:
        queue = self.faults.get(name)
        if queue:
            raise queue.pop(0)

    def create(self, name: str) -> str:
        self._fault(name)
        if name in self.objects:
            raise Refused(f"{name} exists")
        self.creates[name] += 1
        self.objects[name] = f"id-{name}"
        return self.objects[name]

    def delete(self, name: str) -> None:
        self._fault(f"delete:{name}")
        if name not in self.objects:
            raise Gone(name)
        self.deletes[name] += 1
        del self.objects[name]


class Make(Step):
    """Create a named object in the world."""

    def __init__(self, world: World, name: str, after: Sequence[str] | None = None) -> None:
        self.world = world
        self.name = name
        self.after = after
        self.resource = ResourceRef("thing", name)

    async def observe(self, ctx: StepContext) -> Outcome | None:
        found = self.world.objects.get(self.name)
        return None if found is None else Done({"id": found}, external_id=found)

    async def do(self, ctx: StepContext) -> Outcome:
        async with ctx.external("world"):
            object_id = self.world.create(self.name)
        return Done({"id": object_id}, external_id=object_id)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        self.world.delete(self.name)


def flaky(times: int) -> list[BaseException]:
    return [TransientError("server busy") for _ in range(times)]

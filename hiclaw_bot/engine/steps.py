"""What a flow is made of: steps that observe, do and undo, each naming what it creates.

A step's contract (ARCHITECTURE §3):

* ``observe`` looks at the world by deterministic name and returns :class:`Done` when the step's
  effect is already there (then the engine adopts it and never calls ``do``), or None.
* ``do`` makes the effect happen and returns what it produced (ids, not secrets).
* ``undo`` reverses it for an abort or a delete; an error whose ``not_found`` flag is set means
  "already gone" and counts as success.

A step that ``destroys`` its resource inverts the sense: ``observe`` returns Done when the object
is already gone, and the ledger moves it to ``deleting`` then ``deleted`` instead of ``intended``
then ``created``.

Every step must be safe to run again after a crash: the engine may call ``observe`` and ``do``
more than once, but never calls ``do`` again once its result is committed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from hiclaw_bot.engine.retry import RetryPolicy
from storage import Operation, Secret, Store, token_hex


@dataclass(frozen=True)
class ResourceRef:
    """An external object by its deterministic name: the idempotency key of a step."""

    kind: str
    name: str
    owner: str | None = None
    """Defaults to the operation's subject."""


@dataclass(frozen=True)
class Done:
    """A step's effect is in place."""

    output: Mapping[str, Any] = field(default_factory=dict)
    external_id: str | None = None
    spec_hash: str | None = None


@dataclass(frozen=True)
class Skipped:
    """The step does not apply to this operation (say, no gateway configured)."""

    reason: str


Outcome = Done | Skipped


class StepContext:
    """What a step sees: its operation, earlier steps' outputs, secrets and a timer for calls."""

    def __init__(self, op: Operation, store: Store, outputs: dict[str, Mapping[str, Any]],
                 calls: list[tuple[str, float]] | None = None) -> None:
        self.op = op
        self.store = store
        self.outputs = outputs
        self.external_seconds = 0.0
        self.calls: list[tuple[str, float]] = [] if calls is None else calls
        """Every external call timed so far, as (system, seconds): the per-system latency metrics
        read them from the step's events, so the engine itself never imports a metrics library."""

    @property
    def params(self) -> Mapping[str, Any]:
        return self.op.params

    def output(self, step: str) -> Mapping[str, Any]:
        """The output of an earlier step (empty if it was skipped)."""
        return self.outputs.get(step, {})

    async def secret(self, name: str, *, owner: str | None = None,
                     generate: Callable[[], str] = token_hex) -> Secret:
        """A secret owned by the subject, created and committed on first use, reused ever after."""
        return await self.store.secrets.get_or_create(owner or self.op.subject, name, generate=generate)

    @asynccontextmanager
    async def external(self, system: str) -> AsyncIterator[None]:
        """Time a call to an external system; the step's ``external_ms`` is the sum of these."""
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.external_seconds += elapsed
            self.calls.append((system, elapsed))


class Step:
    """Base class of a step; subclasses override :meth:`do` and usually :meth:`observe`/:meth:`undo`."""

    name: str = ""
    after: Sequence[str] | None = None
    """Steps that must be done first. None: the step before it in the flow (sequential)."""
    resource: ResourceRef | None = None
    destroys: bool = False
    undo_adopted: bool = False
    """Whether an abort may undo an object that existed before this operation."""
    retry: RetryPolicy | None = None
    """This step's own attempts and backoff (kopf-style, declared on the step); None: the engine's."""
    timeout: float | None = None
    """The longest this step keeps retrying transient errors, in seconds on the engine's clock,
    counted from its first attempt; past it the step fails as when its attempts run out."""

    async def observe(self, ctx: StepContext) -> Outcome | None:
        return None

    async def do(self, ctx: StepContext) -> Outcome:
        raise NotImplementedError

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class FuncStep(Step):
    """A step assembled from functions, for flows that read better as a list than as classes."""

    def __init__(
        self,
        name: str,
        do: Callable[[StepContext], Awaitable[Outcome]],
        *,
        observe: Callable[[StepContext], Awaitable[Outcome | None]] | None = None,
        undo: Callable[[StepContext, Mapping[str, Any]], Awaitable[None]] | None = None,
        after: Sequence[str] | None = None,
        resource: ResourceRef | None = None,
        destroys: bool = False,
        undo_adopted: bool = False,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        self.name = name
        self._do = do
        self._observe = observe
        self._undo = undo
        self.after = after
        self.resource = resource
        self.destroys = destroys
        self.undo_adopted = undo_adopted
        self.retry = retry
        self.timeout = timeout

    async def observe(self, ctx: StepContext) -> Outcome | None:
        return None if self._observe is None else await self._observe(ctx)

    async def do(self, ctx: StepContext) -> Outcome:
        return await self._do(ctx)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        if self._undo is not None:
            await self._undo(ctx, output)


def dependencies(steps: Sequence[Step]) -> dict[str, tuple[str, ...]]:
    """Each step's prerequisites, checked: unique names, known and earlier prerequisites."""
    seen: set[str] = set()
    deps: dict[str, tuple[str, ...]] = {}
    previous: str | None = None
    for step in steps:
        if not step.name or step.name in seen:
            raise ValueError(f"step names must be unique and non-empty: {step.name!r}")
        wanted = tuple(step.after) if step.after is not None else ((previous,) if previous else ())
        unknown = [d for d in wanted if d not in seen]
        if unknown:
            raise ValueError(f"step {step.name!r} depends on unknown or later steps {unknown}")
        deps[step.name] = wanted
        seen.add(step.name)
        previous = step.name
    return deps

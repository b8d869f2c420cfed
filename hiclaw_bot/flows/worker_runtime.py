"""The worker's runtime on its backend: the spec it runs, and the steps that make, start, stop,
update and wait for it.

:func:`worker_spec` is the one place a worker's params become what the backend runs; the drift
reconciler compares its hash with what a backend reports, so both must build it the same way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from backends import NotFound, Resources, WorkerSpec, WorkerState
from backends.base import parse_quantity
from hiclaw_bot.agent.env import StorageAccess
from hiclaw_bot.engine import Done, Outcome, PermanentError, ResourceRef, StepContext
from hiclaw_bot.flows import names
from hiclaw_bot.flows import worker_env as env_rule
from hiclaw_bot.flows.params import WorkerParams
from hiclaw_bot.flows.runtimes import ReadyContext, profile, profile_of
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_identity import worker_storage
from hiclaw_bot.flows.worker_steps import WorkerStep
from hiclaw_bot.types import WorkerPhase


def check_env(services: Services, params: WorkerParams) -> None:
    """Refuse, before the backend sees it, an environment the worker env rule refuses (whatever asked)."""
    why = env_rule.refusal(dict(params.env), services.config.worker_env)
    if why is not None:
        raise PermanentError(why)


def worker_spec(services: Services, worker: str, params: WorkerParams, storage: StorageAccess) -> WorkerSpec:
    """What the backend runs: its runtime's command and image, and the environment that tells the
    worker where its files are, with the worker's own key (``storage``), never the bot's (the
    runtime's variables win over the user's ``--env``)."""
    runtime = profile(params.runtime)
    env = {**dict(params.env), **runtime.env(services.config, storage, worker)}
    command = params.command or runtime.command(services.config)
    defaults = services.config.backend.resources
    cpus, memory = params.cpus or str(defaults.cpus), params.memory or str(defaults.memory)
    return WorkerSpec(name=worker, image=str(params.image), env=env,
                      command=[str(arg) for arg in command] if command else None,
                      labels={"role": str(params.role)},
                      resources=Resources(cpu_limit=cpus, memory_limit=memory,
                                          cpu_request=_at_most(defaults.cpus_request, cpus),
                                          memory_request=_at_most(defaults.memory_request, memory)))


def _at_most(request: str, limit: str) -> str:
    return request if parse_quantity(request) <= parse_quantity(limit) else limit


async def spec_of(services: Services, ctx: StepContext, worker: str, params: WorkerParams) -> WorkerSpec:
    return worker_spec(services, worker, params, await worker_storage(services, ctx.store, worker))


class Runtime(WorkerStep):
    """Create and start the worker on the backend (adopting one that runs the same spec)."""

    name = "runtime"

    def __init__(self, services: Services, worker: str, params: WorkerParams, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.params = params
        self.resource = ResourceRef("worker_runtime", names.container(worker))

    async def observe(self, ctx: StepContext) -> Outcome | None:
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        backend = await self.backend()
        async with ctx.external("backend"):
            status = await backend.status(self.worker)
        if status.state in (WorkerState.RUNNING, WorkerState.STARTING) and status.spec_hash == spec.spec_hash:
            return Done({"spec_hash": spec.spec_hash}, external_id=names.container(self.worker),
                        spec_hash=spec.spec_hash)
        return None

    async def do(self, ctx: StepContext) -> Outcome:
        check_env(self.services, self.params)
        backend = await self.backend()
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        async with ctx.external("backend"):
            ref = await backend.create(spec, replace=True)
            await backend.start(self.worker)
        return Done({"spec_hash": ref.spec_hash}, external_id=ref.external_id, spec_hash=ref.spec_hash)

    async def undo(self, ctx: StepContext, output: Mapping[str, Any]) -> None:
        backend = await self.backend()
        async with ctx.external("backend"):
            await backend.delete(self.worker)


class Ready(WorkerStep):
    """Wait until the worker is up, as its runtime's profile judges it: the reference agent reports
    a sync after this start, OpenClaw's gateway answers its health check. Joining the room proves
    nothing: the room step joins the worker's account itself, as runtimes that do not auto-join need."""

    name = "ready"
    interval = 0.2

    async def do(self, ctx: StepContext) -> Outcome:
        config = self.services.config
        row = await ctx.store.workers.get(self.worker)
        runtime = profile_of(row.spec if row is not None else {})
        timeout = runtime.ready_timeout(config)
        deadline = time.monotonic() + timeout
        detail = ""
        backend = await self.backend()
        while True:
            async with ctx.external("backend"):
                status = await backend.status(self.worker)
            if status.state is WorkerState.FAILED:
                raise PermanentError(f"the worker's runtime failed: {status.detail or 'no detail'}; "
                                     f"see !worker logs {self.worker}")
            if status.state is WorkerState.RUNNING:
                probe_ctx = ReadyContext(self.worker, backend, self.services.objects, status.started_at)
                async with ctx.external("worker"):
                    probe = await runtime.probe(config, probe_ctx)
                if probe.ready:
                    return Done({"ready": runtime.name})
                detail = probe.detail
            if time.monotonic() > deadline:
                raise PermanentError(
                    f"{self.worker} did not become ready within {timeout:.0f}s "
                    f"(runtime {runtime.name}: {status.state}{', ' + detail if detail else ''}); "
                    f"see !worker logs {self.worker}"
                )
            async with ctx.external("worker"):  # waiting for the worker to boot is the worker's time
                await asyncio.sleep(self.interval if runtime.name == "reference" else 2.0)


class Stop(WorkerStep):
    name = "stop"

    async def observe(self, ctx: StepContext) -> Outcome | None:
        backend = await self.backend()
        async with ctx.external("backend"):
            status = await backend.status(self.worker)
        return Done() if status.state in (WorkerState.STOPPED, WorkerState.NOT_FOUND) else None

    async def do(self, ctx: StepContext) -> Outcome:
        backend = await self.backend()
        async with ctx.external("backend"):
            await backend.stop(self.worker)
        return Done()


class Start(WorkerStep):
    name = "start"

    async def do(self, ctx: StepContext) -> Outcome:
        backend = await self.backend()
        async with ctx.external("backend"):
            try:
                await backend.start(self.worker)
            except NotFound:
                raise PermanentError(f"{self.worker} has no runtime on the backend; "
                                     f"!worker update {self.worker} recreates it") from None
        return Done()


class Update(WorkerStep):
    """Apply a new runtime spec through the backend (in place, or new-beside-old on Docker).

    A runtime that vanished is created again, and one found stopped (by a crash, or by hand) is
    started, unless the worker was asleep before the update: the update leaves the worker as it
    found it (``restore`` puts a sleeper back), so its ``ready`` step has something to wait for.
    """

    name = "runtime_update"

    def __init__(self, services: Services, worker: str, params: WorkerParams, **kwargs: Any) -> None:
        super().__init__(services, worker, **kwargs)
        self.params = params

    async def observe(self, ctx: StepContext) -> Outcome | None:
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        backend = await self.backend()
        async with ctx.external("backend"):
            status = await backend.status(self.worker)
        if status.spec_hash != spec.spec_hash:
            return None
        if status.state is not WorkerState.RUNNING and not await self._asleep(ctx):
            return None
        return Done({"spec_hash": spec.spec_hash})

    async def do(self, ctx: StepContext) -> Outcome:
        check_env(self.services, self.params)
        spec = await spec_of(self.services, ctx, self.worker, self.params)
        backend = await self.backend()
        async with ctx.external("backend"):
            try:
                await backend.update(self.worker, spec)
            except NotFound:
                await backend.create(spec, replace=True)
            if not await self._asleep(ctx):
                await backend.start(self.worker)  # a no-op when it runs already
        return Done({"spec_hash": spec.spec_hash}, spec_hash=spec.spec_hash)

    async def _asleep(self, ctx: StepContext) -> bool:
        row = await ctx.store.workers.get(self.worker)
        return row is not None and row.previous_state == WorkerPhase.SLEEPING

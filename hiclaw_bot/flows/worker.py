"""Worker operations as ordered steps (ARCHITECTURE §4).

``worker.create``::

    register ─► secrets ─┬► account ─► room ─► humans ────────────┐
                         ├► gateway_consumer ─► gateway_auth ───┴► config ─┐
                         ├► skills ────────────────────────────────────────┤
                         └► storage_identity ──────────────────────────────┴► runtime ─► ready ─► record

``storage_identity`` gives the worker its own object-store key (:mod:`~hiclaw_bot.flows.worker_identity`);
the runtime's environment carries that key, never the bot's.

The gateway and skills branches do not wait for Matrix, so they run side by side; ``humans`` invites
to the new room the humans who may talk to the worker (:mod:`hiclaw_bot.flows.access`). ``worker.delete``
first takes a team member out of its team (``leave_team``), then undoes the same resources in
reverse, each "already gone" counting as done, and then forgets the worker.
Sleep, wake, restart and update are short flows of their own; every one is a normal engine operation, so
it is checkpointed, resumable and serialised with anything else that touches the same worker.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from hiclaw_bot.engine import Done, Engine, Outcome, PermanentError, Remove, Skipped, Step, StepContext
from hiclaw_bot.flows.access import forget_room
from hiclaw_bot.flows.notices import Notify
from hiclaw_bot.flows.params import SleepParams, WakeParams, WorkerParams
from hiclaw_bot.flows.rendering import WriteConfig, push_config
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.skills import Skills
from hiclaw_bot.flows.worker_identity import StorageIdentity
from hiclaw_bot.flows.worker_runtime import Ready, Runtime, Start, Stop, Update
from hiclaw_bot.flows.worker_steps import (
    Account,
    GatewayAuth,
    GatewayConsumer,
    HumanAccess,
    Mark,
    Record,
    Room,
    Secrets,
    WorkerStep,
)
from hiclaw_bot.types import Role, RoomId, WorkerPhase
from storage import Operation

CREATE = "worker.create"
SLEEP = "worker.sleep"
WAKE = "worker.wake"
UPDATE = "worker.update"
DELETE = "worker.delete"
REPAIR = "worker.repair"
RESTART = "worker.restart"

def subject(worker: str) -> str:
    return f"worker:{worker}"


def spec_of(op: Operation) -> WorkerParams:
    """A create's, update's, repair's or delete's params, typed; an older row's missing keys default."""
    return WorkerParams.of(op.params)


def full_spec(op: Operation, what: str) -> WorkerParams:
    """The params of an operation that (re)makes the runtime, which needs the model and image."""
    params = spec_of(op)
    if params.model is None or params.image is None:
        raise PermanentError(f"{what} needs the worker's full spec")
    return params


class Register(WorkerStep):
    """Record the worker (``Pending``) so status and quotas see it from the first moment."""

    name = "register"

    def __init__(self, services: Services, worker: str, params: WorkerParams) -> None:
        super().__init__(services, worker)
        self.params = params

    async def do(self, ctx: StepContext) -> Outcome:
        if await ctx.store.workers.get(self.worker) is None:
            p = self.params
            await ctx.store.workers.insert(
                self.worker, backend=p.backend or self.services.backend.name,
                backend_instance=self.services.config.backend.instance, state=WorkerPhase.PENDING,
                desired_state=WorkerPhase.RUNNING, team=p.team, role=p.role, image=p.image, model=p.model,
                spec=dict(p.spec), idle_timeout_s=p.idle_timeout, user_id=self.user_id,
            )
        return Done()


class LeaveTeam(WorkerStep):
    """A team member being deleted leaves its team first: out of the team room, out of its leader's
    config and AGENTS.md, so the leader never delegates to a worker that is gone.

    The row's team is cleared last, so a crash before it repeats the whole step (each part is
    idempotent) and one after it finds nothing left to do. A leader leaves only with its team.
    """

    name = "leave_team"

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is None or row.team is None:
            return Skipped("not in a team")
        if row.role == Role.TEAM_LEADER:
            return Skipped("a leader leaves with its team")
        team = await ctx.store.teams.get(row.team)
        if team is not None and team.room_id is not None:
            async with ctx.external("matrix"):
                await self.services.matrix.kick(RoomId(team.room_id), self.user_id, reason=f"{self.worker} deleted")
                await self.services.matrix.merge_power_levels(RoomId(team.room_id), {self.user_id: None})
        if team is not None and await ctx.store.workers.get(team.leader) is not None:
            others = await ctx.store.workers.all(team=row.team)
            members = [w for w in others if w.name not in (team.leader, self.worker)]
            await push_config(self.services, ctx, team.leader, members)
        spec = {key: value for key, value in row.spec.items() if key not in ("team", "leader")}
        await ctx.store.workers.update(self.worker, team=None, role=Role.WORKER, spec=spec)
        return Done({"team": row.team})


class Forget(WorkerStep):
    """The last step of a delete: the worker's row and secrets go once every resource is gone."""

    name = "forget"

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is not None and row.room_id is not None:
            await forget_room(ctx, row.room_id)  # the room was emptied by remove_room
        await ctx.store.workers.delete(self.worker)
        await ctx.store.secrets.delete(ctx.op.subject)
        return Done()


class Restore(WorkerStep):
    """The last step of an update: back to the state the worker had before (stopped again if asleep)."""

    name = "restore"

    def __init__(self, services: Services, worker: str, params: WorkerParams) -> None:
        super().__init__(services, worker)
        self.params = params

    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        previous = (row.previous_state if row else None) or WorkerPhase.RUNNING
        if previous == WorkerPhase.SLEEPING:
            backend = await self.backend()
            async with ctx.external("backend"):
                await backend.stop(self.worker)
        p = self.params
        await ctx.store.workers.update(self.worker, state=previous, previous_state=None, observed_state=previous,
                                       image=p.image, model=p.model, spec=dict(p.spec))
        return Done({"state": previous})


class ReadyUnlessAsleep(Ready):
    async def do(self, ctx: StepContext) -> Outcome:
        row = await ctx.store.workers.get(self.worker)
        if row is not None and row.previous_state == WorkerPhase.SLEEPING:
            return Skipped("the worker was asleep; it stays asleep")
        return await super().do(ctx)


def create_steps(services: Services, op: Operation) -> Sequence[Step]:
    params = full_spec(op, "a create")
    worker = params.name
    return [
        Register(services, worker, params),
        Secrets(services, worker),
        Account(services, worker),
        Room(services, worker, leader=params.leader),
        HumanAccess(services, worker),
        GatewayConsumer(services, worker, after=("secrets",)),
        GatewayAuth(services, worker, list(params.mcp), after=("gateway_consumer",)),
        WriteConfig(services, worker, params, after=("room", "gateway_auth")),
        Skills(services, worker, list(params.skills), team=params.team, leader=params.role is Role.TEAM_LEADER,
               after=("secrets",)),
        StorageIdentity(services, worker, params.team, after=("secrets",)),
        Runtime(services, worker, params, after=("config", "skills", "storage_identity", "humans")),
        Ready(services, worker),
        Record(services, worker, WorkerPhase.RUNNING),
    ]


def delete_steps(services: Services, op: Operation) -> Sequence[Step]:
    params = spec_of(op)
    worker = params.name
    if params.image is None:  # a half-made worker: its runtime, if any, goes whatever its image
        params = replace(params, image=services.config.backend.default_image)
    made = [
        Account(services, worker),
        Room(services, worker),
        GatewayConsumer(services, worker),
        GatewayAuth(services, worker, []),
        WriteConfig(services, worker, params),
        StorageIdentity(services, worker, params.team),
        Runtime(services, worker, params),
    ]
    return [Mark(services, worker, WorkerPhase.DELETING), LeaveTeam(services, worker),
            *(Remove(step) for step in reversed(made)), Forget(services, worker)]


def sleep_steps(services: Services, op: Operation) -> Sequence[Step]:
    """An idle sleep (``idle_s`` in the params) ends with a notice in the worker's room."""
    params = SleepParams.of(op.params)
    worker = params.name
    steps: list[Step] = [Stop(services, worker), Record(services, worker, WorkerPhase.SLEEPING)]
    if params.idle_s is not None:
        steps.append(Notify(services, worker, idle_s=params.idle_s))
    return steps


def wake_steps(services: Services, op: Operation) -> Sequence[Step]:
    """A wake for a mention (``missed`` in the params) ends pointing the worker at what it missed."""
    params = WakeParams.of(op.params)
    worker = params.name
    steps: list[Step] = [Start(services, worker), Ready(services, worker),
                         Record(services, worker, WorkerPhase.RUNNING)]
    if params.missed is not None:
        steps.append(Notify(services, worker, missed=params.missed))
    return steps


def restart_steps(services: Services, op: Operation) -> Sequence[Step]:
    """Stop the runtime and start it again (a sleeping worker is simply woken): a stuck agent gets a
    fresh process with the same spec, files and room. A crash between the two resumes at the start."""
    worker = WakeParams.of(op.params).name
    return [Stop(services, worker), Start(services, worker), Ready(services, worker),
            Record(services, worker, WorkerPhase.RUNNING)]


def repair_steps(services: Services, op: Operation) -> Sequence[Step]:
    """Recreate a runtime that vanished behind our back, from the worker's recorded spec, and put it
    back in its recorded state (``state`` in the params): the drift reconciler's repair. An update
    would not do: it recreates a missing runtime stopped, as an update keeps the running state."""
    params = full_spec(op, "a repair")
    worker = params.name
    if params.state is WorkerPhase.SLEEPING:
        return [Runtime(services, worker, params), Stop(services, worker),
                Record(services, worker, WorkerPhase.SLEEPING)]
    return [Runtime(services, worker, params), Ready(services, worker), Record(services, worker, WorkerPhase.RUNNING)]


def update_steps(services: Services, op: Operation) -> Sequence[Step]:
    params = full_spec(op, "an update")
    worker = params.name
    return [
        Mark(services, worker, WorkerPhase.UPDATING),
        StorageIdentity(services, worker, params.team),
        WriteConfig(services, worker, params),
        Update(services, worker, params),
        ReadyUnlessAsleep(services, worker),
        Restore(services, worker, params),
    ]


FLOWS: dict[str, tuple[Callable[[Services, Operation], Sequence[Step]], Callable[[Mapping[str, Any]], object]]] = {
    CREATE: (create_steps, WorkerParams.of), UPDATE: (update_steps, WorkerParams.of),
    REPAIR: (repair_steps, WorkerParams.of), SLEEP: (sleep_steps, SleepParams.of), WAKE: (wake_steps, WakeParams.of),
    RESTART: (restart_steps, WakeParams.of),
}


def register_worker_flows(engine: Engine, services: Services) -> None:
    """Teach the engine the worker operations, bound to ``services``, each with its params' parser."""
    for kind, (make, parse) in FLOWS.items():
        engine.register(kind, partial(make, services), parse=parse)
    engine.register(DELETE, partial(delete_steps, services), supersedes_failed=True, parse=WorkerParams.of)

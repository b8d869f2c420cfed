"""The rules of a worker's life, in one place: what may be created, changed, woken, put to sleep
or deleted.

Each ``plan_*``/``check_*`` function reads what it needs, changes nothing, and either returns the
params of the operation to submit or raises :class:`~hiclaw_bot.types.Refused` with the reason in
people's words. Chat answers a refusal as a reply, the API as a 4xx; lifecycle and teams call the
same functions, so no front end keeps a rule of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from backends import BackendError, InvalidSpec, WorkerBackend, WorkerState
from backends.base import parse_quantity
from hiclaw_bot.config import HigressConfig, parse_duration
from hiclaw_bot.flows import accounts
from hiclaw_bot.flows import worker_env as env_rule
from hiclaw_bot.flows.models import check_model
from hiclaw_bot.flows.quota import check_quota
from hiclaw_bot.flows.runtimes import profile
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.skills import check_skills
from hiclaw_bot.types import Refused, WorkerPhase
from storage import Store, Team, Worker

_LIMIT_EXAMPLES = {"cpus": "0.5 or 500m", "memory": "512Mi or 2Gi"}


@dataclass(frozen=True)
class CreateRequest:
    """What someone asked for in ``!worker create`` (None: the config's default)."""

    name: str
    model: str | None = None
    image: str | None = None
    team: str | None = None
    runtime: str | None = None
    skills: Sequence[str] = ()
    mcp: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    idle_timeout: str | None = None
    cpus: str | None = None
    memory: str | None = None
    backend: str | None = None


@dataclass(frozen=True)
class CreatePlan:
    """A create that may go ahead: its params, and the team it joins (made by the team's operation)."""

    params: dict[str, Any]
    team: Team | None


async def plan_create(services: Services, store: Store, request: CreateRequest) -> CreatePlan:
    """Check a create against every rule, in the order people hear about them."""
    config, name = services.config, request.name
    if await store.workers.get(name) is not None:
        raise Refused(f"A worker named `{name}` already exists: `!worker status {name}`.")
    taken = await accounts.refusal(services, store, name)
    if taken is not None:
        raise Refused(taken[:1].upper() + taken[1:] + ".")
    model = request.model or config.quotas.default_model
    await check_model(config, services.gateway, model)
    team_row = await store.teams.get(request.team) if request.team is not None else None
    if request.team is not None and team_row is None:
        raise Refused(f"There is no team named `{request.team}`.")
    check_skills(request.skills)
    check_mcp(services, request.mcp)
    check_env(services, request.env, verb="created")
    await check_quota(config, store, request.team)
    if request.backend is not None and request.backend not in services.backends:
        raise Refused(f"Backend `{request.backend}` is not offered here; offered: {', '.join(services.backends)}.")
    try:
        idle_s = parse_duration(request.idle_timeout) if request.idle_timeout is not None else None
    except ValueError:
        raise Refused("`--idle-timeout` takes a duration such as 30m or 12h.") from None
    limits = check_limits(cpus=request.cpus, memory=request.memory)
    runtime = request.runtime or config.runtimes.default
    params: dict[str, Any] = {
        "name": name, "model": model, "runtime": runtime,
        "image": request.image or profile(runtime).image(config),
        "team": request.team, "skills": list(request.skills), "mcp": list(request.mcp),
        "env": dict(request.env), "idle_timeout": idle_s, **limits,
    }
    if request.backend is not None:
        params["backend"] = request.backend
    return CreatePlan(params, team_row)


def check_mcp(services: Services, mcp: Sequence[str]) -> None:
    """Refuse MCP servers the gateway's configuration does not offer."""
    gateway = services.config.gateway
    allowed = gateway.mcp_servers if isinstance(gateway, HigressConfig) else []
    not_allowed = sorted(set(mcp) - set(allowed))
    if not_allowed:
        listing = ", ".join(allowed) if allowed else "none (gateway.mcp_servers is empty)"
        raise Refused(f"MCP server(s) not allowed here: {', '.join(not_allowed)}. Allowed: {listing}.")


def check_env(services: Services, env: Mapping[str, str], *, verb: str) -> None:
    """Refuse an environment the worker env rule refuses (``verb``: what did not happen)."""
    why = env_rule.refusal(dict(env), services.config.worker_env)
    if why is not None:
        raise Refused(f"Not {verb}: {why}.")


def check_limits(*, cpus: str | None, memory: str | None) -> dict[str, str]:
    """``--cpus``/``--memory`` as Kubernetes quantities, checked before anything starts."""
    limits: dict[str, str] = {}
    for key, value in (("cpus", cpus), ("memory", memory)):
        if value is None:
            continue
        try:
            if parse_quantity(value) <= 0:
                raise InvalidSpec("spec", "not positive")
        except InvalidSpec:
            raise Refused(f"`--{key}` takes a positive quantity such as {_LIMIT_EXAMPLES[key]}.") from None
        limits[key] = value
    return limits


def spec_params(row: Worker) -> dict[str, Any]:
    """The full spec a worker runs, from its row: what an update or delete starts from."""
    return {**row.spec, "model": row.model, "image": row.image}


async def plan_update(services: Services, row: Worker, *, model: str | None = None, image: str | None = None,
                      env: Mapping[str, str] | None = None, cpus: str | None = None,
                      memory: str | None = None) -> dict[str, Any]:
    """The params of ``worker.update``: the row's spec with the asked changes, each checked."""
    changes: dict[str, Any] = {key: value for key, value in (("model", model), ("image", image)) if value is not None}
    if env:
        check_env(services, env, verb="changed")
        changes["env"] = {**dict(row.spec.get("env") or {}), **dict(env)}
    changes.update(check_limits(cpus=cpus, memory=memory))
    if not changes:
        raise Refused("Nothing to change: give `--model`, `--image`, `--env KEY=VALUE`, `--cpus` or `--memory`.")
    if "model" in changes:
        await check_model(services.config, services.gateway, changes["model"])
    return {**spec_params(row), **changes, "name": row.name}


async def check_wake(row: Worker, backend: WorkerBackend, *, idle: bool = True) -> None:
    """Refuse waking a worker that runs already: its row and its runtime agree, and (``idle``) no
    operation holds it (one that does is busy, which the engine answers)."""
    if idle and row.state == WorkerPhase.RUNNING and await _runs(backend, row.name) is True:
        raise Refused(f"{row.name} is already running.")


async def check_sleep(row: Worker, backend: WorkerBackend, *, idle: bool = True) -> None:
    """Refuse putting to sleep a worker that sleeps already, by its row and its runtime."""
    if idle and row.state == WorkerPhase.SLEEPING and await _runs(backend, row.name) is False:
        raise Refused(f"{row.name} is already asleep.")


def wakes_on_mention(row: Worker | None) -> bool:
    """Whether a mention wakes the worker: only a sleeping one (a busy or running one is left be)."""
    return row is not None and row.state == WorkerPhase.SLEEPING


async def _runs(backend: WorkerBackend, name: str) -> bool | None:
    """Whether the runtime runs; None when the backend cannot say (a stale row must not block)."""
    try:
        return (await backend.status(name)).state is WorkerState.RUNNING
    except BackendError:
        return None


async def check_delete(store: Store, name: str) -> None:
    """Refuse deleting a worker that is not there, or one that leads a team."""
    if await store.workers.get(name) is None and await store.ops.holder(accounts.worker_subject(name)) is None:
        raise Refused(f"There is no worker named `{name}`.")
    led = [t.name for t in await store.teams.all() if t.leader == name]
    if led:
        raise Refused(f"`{name}` leads team `{led[0]}`; delete the team first: "
                      f"`!team delete {led[0]} --with-workers` deletes it with its workers.")

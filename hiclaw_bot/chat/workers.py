"""The ``!worker`` commands: check everything a person could get wrong, then start an operation.

Validation happens here, before any external call: a name that exists, a model that is not
allowed, a full quota or an unknown team get a reply that says so and change nothing. What is
left (accounts, rooms, gateway, storage, runtime) is the flows' work, run durably by the engine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from backends import BackendError, ExecTimeout, InvalidSpec, WorkerState
from backends.base import parse_quantity
from hiclaw_bot.chat.arguments import NAME, PAIR, TEXT, Choice, Integer, ListOf, option, positional
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.models import model_refusal
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import Reply, escape, spoken_duration, table
from hiclaw_bot.chat.resolve import team_worker_limit
from hiclaw_bot.clients.errors import ClientError
from hiclaw_bot.config import Config, HigressConfig, parse_duration
from hiclaw_bot.flows import accounts, names
from hiclaw_bot.flows import team as team_flows
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows import worker_env as env_rule
from hiclaw_bot.flows.runtimes import PROFILES, profile
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker_steps import builtin_skills
from hiclaw_bot.types import Refused
from storage import Worker

LOG_TAIL_DEFAULT = 100
LOG_TAIL_MAX = 2000
"""Lines ``!worker logs --tail`` may ask for: the backend reads them from the end of the log."""
LOG_LIMIT = 3500
"""Characters of logs or exec output a reply carries (the tail: the end is what matters)."""
EXEC_TIMEOUT = 30.0
LIST_DEFAULT = 50
LIST_MAX = 200
"""Rows of ``!worker list``: a Matrix event is at most 64 KiB, and 200 rows in text and HTML fit."""


def _tail(text: str, limit: int = LOG_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"… ({len(text) - limit} earlier characters cut)\n" + text[-limit:]


def _code(title: str, text: str) -> Reply:
    body = text.rstrip() or "(nothing)"
    return Reply(f"{title}\n{body}", f"<p>{escape(title)}</p><pre><code>{escape(body)}</code></pre>")


class WorkerCommands:
    def __init__(self, services: Services) -> None:
        self.services = services

    @property
    def config(self) -> Config:
        return self.services.config

    async def _row(self, ctx: CommandContext) -> Worker:
        name = ctx.args.get("name", str)
        row = await ctx.store.workers.get(name)
        if row is None:
            raise Refused(f"There is no worker named `{name}`. `!worker list` shows them.")
        return row

    # -- create ---------------------------------------------------------------------------------

    async def create(self, ctx: CommandContext) -> Reply | None:
        name = ctx.args.get("name", str)
        quotas = self.config.quotas
        if await ctx.store.workers.get(name) is not None:
            return Reply.of(f"A worker named `{name}` already exists: `!worker status {name}`.")
        taken = await accounts.refusal(self.services, ctx.store, name)
        if taken is not None:
            return Reply.of(taken[:1].upper() + taken[1:] + ".")
        model = ctx.args.optional("model", str) or quotas.default_model
        refusal = await model_refusal(self.config, self.services.gateway, model)
        if refusal is not None:
            return refusal
        team = ctx.args.optional("team", str)
        team_row = await ctx.store.teams.get(team) if team is not None else None
        if team is not None and team_row is None:
            return Reply.of(f"There is no team named `{team}`.")
        skills: list[str] = ctx.args.values.get("skills") or []
        unknown = sorted(set(skills) - set(builtin_skills()))
        if unknown:
            return Reply.of(f"Unknown skill(s): {', '.join(unknown)}. Known: {', '.join(builtin_skills())}.")
        mcp: list[str] = ctx.args.values.get("mcp") or []
        allowed_mcp = self.config.gateway.mcp_servers if isinstance(self.config.gateway, HigressConfig) else []
        not_allowed = sorted(set(mcp) - set(allowed_mcp))
        if not_allowed:
            listing = ", ".join(allowed_mcp) if allowed_mcp else "none (gateway.mcp_servers is empty)"
            return Reply.of(f"MCP server(s) not allowed here: {', '.join(not_allowed)}. Allowed: {listing}.")
        env = dict(ctx.args.values.get("env") or {})
        bad_env = env_rule.refusal(env, self.config.worker_env)
        if bad_env is not None:
            return Reply.of(f"Not created: {bad_env}.")
        refusal = await self._quota(ctx, team)
        if refusal is not None:
            return refusal
        backend = ctx.args.optional("backend", str)
        if backend is not None and backend not in self.services.backends:
            return Reply.of(f"Backend `{backend}` is not offered here; offered: {', '.join(self.services.backends)}.")
        idle = ctx.args.optional("idle_timeout", str)
        try:
            idle_s = parse_duration(idle) if idle is not None else None
        except ValueError:
            return Reply.of("`--idle-timeout` takes a duration such as 30m or 12h.")
        limits = _limits(ctx)
        runtime = ctx.args.optional("runtime", str) or self.config.runtimes.default
        params: dict[str, Any] = {
            "name": name, "model": model, "runtime": runtime,
            "image": ctx.args.optional("image", str) or profile(runtime).image(self.config),
            "team": team, "skills": skills,
            "mcp": mcp,
            "env": env, "idle_timeout": idle_s, **limits,
        }
        if backend is not None:
            params["backend"] = backend
        if team_row is not None:
            # Made by the team's own operation, so the team room, power levels and the leader's
            # config take the new worker in too.
            await ctx.start(team_flows.ADD, team_flows.subject(team_row.name),
                            {"name": team_row.name, "worker": name, "leader": team_row.leader, "create": params})
            return None
        await ctx.start(flows.CREATE, flows.subject(name), params)
        return None

    async def _quota(self, ctx: CommandContext, team: str | None) -> Reply | None:
        total = self.config.quotas.max_workers
        if total is not None and await ctx.store.workers.count() >= total:
            return Reply.of(f"The installation is at its limit of {total} workers (quotas.max_workers).")
        if team is not None:
            limit = team_worker_limit(self.config, team, await ctx.store.teams.get(team))
            if limit is not None and await ctx.store.workers.count(team=team) >= limit:
                return Reply.of(f"Team `{team}` is at its limit of {limit} workers.")
        return None

    # -- reading --------------------------------------------------------------------------------

    async def list_workers(self, ctx: CommandContext) -> Reply:
        rows = await ctx.store.workers.all()
        if ctx.actor.kind.scoped:  # a leader, team member or viewer sees its teams' workers only
            rows = [w for w in rows if w.team is not None and w.team in ctx.actor.teams]
        if not rows:
            return Reply.of("No workers yet. Create one with `!worker create NAME`.")
        state, team = ctx.args.optional("state", str), ctx.args.optional("team", str)
        chosen = [w for w in rows if (state is None or w.state.casefold() == state.casefold())
                  and (team is None or w.team == team)]
        if not chosen:
            return Reply.of(f"None of the {len(rows)} worker(s) matches. `!worker list` shows them all.")
        limit = ctx.args.get("limit", int)
        shown = chosen[:limit]
        counts = Counter(w.state for w in chosen)
        title = f"{len(chosen)} worker(s): " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        now = time.time()
        listing = table(
            ["name", "team", "state", "backend", "image", "last active"],
            [[w.name, w.team or "–", w.state, w.backend, w.image or "–",
              f"{spoken_duration(now - w.last_active_at)} ago" if w.last_active_at else "–"] for w in shown],
            title=title,
        )
        if len(chosen) <= limit:
            return listing
        more = Reply.of(f"… and {len(chosen) - limit} more: narrow it with `--state` or `--team`, "
                        f"or raise `--limit` (at most {LIST_MAX}).")
        return Reply(f"{listing.text}\n{more.text}", f"{listing.html}<p>{more.html}</p>")

    async def status(self, ctx: CommandContext) -> Reply:
        row = await self._row(ctx)
        try:
            observed = await self.services.backend_for(row).status(row.name)
            runtime = f"{observed.state}" + (f" ({observed.detail})" if observed.detail else "")
        except BackendError as exc:
            runtime = f"unknown ({exc})"
        holder = await ctx.store.ops.holder(flows.subject(row.name))
        lines = [
            f"Worker {row.name}: {row.state} (wanted: {row.desired_state})",
            f"runtime: {row.spec.get('runtime') or 'reference'}, {runtime} on {row.backend}, image {row.image}",
            f"model: {row.model}; team: {row.team or '–'}; room: {row.room_id or '–'}",
        ]
        access = await self._gateway_access(row.name)
        if access:
            lines.append(access)
        if holder is not None:
            where = f" at step {holder.failed_step}" if holder.failed_step else ""
            lines.append(f"operation {holder.op_id} ({holder.kind}) is {holder.state}{where}"
                         + (f": {holder.error}" if holder.error else ""))
            if holder.state == "failed":
                lines.append(f"`!op retry {holder.op_id}` resumes it; `!op abort {holder.op_id}` undoes it.")
        return Reply.of("\n".join(lines))

    async def _gateway_access(self, worker: str) -> str:
        """Whether the worker's consumer is on the AI routes it should be on: a consumer taken off
        one (by hand in the console, say) gets 401 for every model call, and the worker goes mute."""
        gateway, settings = self.services.gateway, self.config.gateway
        if gateway is None or settings.kind != "higress":
            return ""
        try:
            allow = await gateway.route_allow_lists()
        except ClientError as exc:
            return f"gateway: unknown ({exc})"
        wanted = sorted(allow) if settings.routes == "all" else sorted(settings.routes)
        consumer = names.consumer(worker)
        missing = [route for route in wanted if consumer not in allow.get(route, ())]
        if not missing:
            return f"gateway: {consumer} may call the model ({', '.join(wanted) or 'no AI route'})"
        return (f"gateway: ⚠ {consumer} is not authorized on AI route(s) {', '.join(missing)}: "
                f"its model calls get 401")

    async def logs(self, ctx: CommandContext) -> Reply:
        row = await self._row(ctx)
        tail = ctx.args.get("tail", int)
        try:
            text = await self.services.backend_for(row).logs(row.name, tail=tail)
        except BackendError as exc:
            return Reply.of(f"No logs for {row.name}: {exc}")
        return _code(f"Last {tail} lines of {row.name}:", _tail(text))

    async def run_in_worker(self, ctx: CommandContext) -> Reply:
        row = await self._row(ctx)
        if not ctx.argv:
            return Reply.of(f"Give the command after `--`: `!worker exec {row.name} -- ls -la`.")
        try:
            result = await self.services.backend_for(row).exec(row.name, list(ctx.argv), EXEC_TIMEOUT)
        except ExecTimeout:
            return Reply.of(f"The command did not finish within {EXEC_TIMEOUT:.0f}s.")
        except BackendError as exc:
            return Reply.of(f"Cannot run it in {row.name}: {exc}")
        output = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
        return _code(f"exit code {result.exit_code}", _tail(output))

    # -- changing -------------------------------------------------------------------------------

    async def wake(self, ctx: CommandContext) -> Reply | None:
        row = await self._row(ctx)
        if row.state == flows.RUNNING and await self._running(row):
            return Reply.of(f"{row.name} is already running.")
        await ctx.start(flows.WAKE, flows.subject(row.name), {"name": row.name})
        return None

    async def sleep(self, ctx: CommandContext) -> Reply | None:
        row = await self._row(ctx)
        if row.state == flows.SLEEPING and not await self._running(row):
            return Reply.of(f"{row.name} is already asleep.")
        await ctx.start(flows.SLEEP, flows.subject(row.name), {"name": row.name})
        return None

    async def update(self, ctx: CommandContext) -> Reply | None:
        row = await self._row(ctx)
        changes: dict[str, Any] = {}
        for key in ("model", "image"):
            value = ctx.args.optional(key, str)
            if value is not None:
                changes[key] = value
        env = ctx.args.values.get("env") or {}
        if env:
            bad_env = env_rule.refusal(dict(env), self.config.worker_env)
            if bad_env is not None:
                return Reply.of(f"Not changed: {bad_env}.")
            changes["env"] = {**dict(row.spec.get("env") or {}), **dict(env)}
        limits = _limits(ctx)
        changes.update(limits)
        if not changes:
            return Reply.of("Nothing to change: give `--model`, `--image`, `--env KEY=VALUE`, `--cpus` or `--memory`.")
        refusal = await model_refusal(self.config, self.services.gateway, changes["model"]) \
            if "model" in changes else None
        if refusal is not None:
            return refusal
        params = {**_spec(row), **changes, "name": row.name}
        await ctx.start(flows.UPDATE, flows.subject(row.name), params)
        return None

    async def delete_refusal(self, ctx: CommandContext) -> Reply | None:
        """Why ``!worker delete`` cannot go ahead (checked before asking for ``!confirm`` and again after)."""
        name = ctx.args.get("name", str)
        if await ctx.store.workers.get(name) is None and await ctx.store.ops.holder(flows.subject(name)) is None:
            return Reply.of(f"There is no worker named `{name}`.")
        led = [t.name for t in await ctx.store.teams.all() if t.leader == name]
        if led:
            return Reply.of(f"`{name}` leads team `{led[0]}`; delete the team first: "
                            f"`!team delete {led[0]} --with-workers` deletes it with its workers.")
        return None

    async def delete(self, ctx: CommandContext) -> Reply | None:
        refusal = await self.delete_refusal(ctx)
        if refusal is not None:
            return refusal
        name = ctx.args.get("name", str)
        row = await ctx.store.workers.get(name)
        params = {**(_spec(row) if row else {}), "name": name}
        await ctx.start(flows.DELETE, flows.subject(name), params)
        return None

    async def _running(self, row: Worker) -> bool:
        try:
            return (await self.services.backend_for(row).status(row.name)).state is WorkerState.RUNNING
        except BackendError:
            return False


def _spec(row: Worker) -> Mapping[str, Any]:
    return {**row.spec, "model": row.model, "image": row.image}


def register_worker_commands(registry: Registry, services: Services) -> None:
    commands = WorkerCommands(services)
    target = TargetSpec("worker", "name")
    existing = TargetSpec("worker", "name", must_exist=True)
    worker = positional("name", NAME, "the worker")
    registry.command(
        "worker", "create", permission=Permission.PROVISION,
        summary="Create a worker and start it", handler=commands.create,
        target=TargetSpec("worker", "name", team_arg="team"),
        args=[worker, option("model", TEXT, "the model (default from the config)"),
              option("image", TEXT, "the runtime image"), option("team", NAME, "the team it joins"),
              option("runtime", Choice(*sorted(PROFILES)), "the worker runtime (default from the config)"),
              option("skills", ListOf(NAME), "skills to install"), option("mcp", ListOf(NAME), "MCP servers"),
              option("env", PAIR, "an environment variable", many=True),
              option("idle_timeout", TEXT, "sleep after this long idle, e.g. 2h"), *_limit_options(),
              option("backend", TEXT, "where it runs: one of backend.available (default backend.kind)")],
    )
    registry.command("worker", "list", permission=Permission.READ,
                     summary="Workers and their state", handler=commands.list_workers,
                     aliases=("worker ls", "workers"),
                     args=[option("state", TEXT, "only workers in this state, e.g. Sleeping"),
                           option("team", NAME, "only this team's workers"),
                           option("limit", Integer(1, LIST_MAX), f"how many rows (default {LIST_DEFAULT})",
                                  default=LIST_DEFAULT)])
    registry.command("worker", "status", permission=Permission.READ,
                     summary="One worker: state, runtime, current operation",
                     handler=commands.status, target=target, args=[worker])
    registry.command("worker", "wake", permission=Permission.OPERATE,
                     summary="Start a sleeping worker", handler=commands.wake,
                     target=existing, args=[worker])
    registry.command("worker", "sleep", permission=Permission.OPERATE,
                     summary="Stop a worker; its files and room stay", handler=commands.sleep,
                     target=existing, args=[worker])
    registry.command("worker", "update", permission=Permission.OPERATE,
                     summary="Change a worker's model, image or environment",
                     handler=commands.update, target=existing,
                     args=[worker, option("model", TEXT, "the new model"), option("image", TEXT, "the new image"),
                           option("env", PAIR, "set an environment variable", many=True), *_limit_options()])
    registry.command("worker", "delete", permission=Permission.PROVISION,
                     summary="Delete a worker and everything made for it",
                     handler=commands.delete, target=existing, args=[worker], precheck=commands.delete_refusal,
                     confirm="deletes worker {name}: its runtime, files, gateway access and room alias; "
                             "a team member also leaves its team")
    registry.command("worker", "logs", permission=Permission.OPERATE,
                     summary="The end of a worker's logs", handler=commands.logs,
                     target=target, args=[worker, option("tail", Integer(1, LOG_TAIL_MAX),
                                                          f"how many lines (default {LOG_TAIL_DEFAULT})",
                                                          default=LOG_TAIL_DEFAULT)])
    registry.command("worker", "exec", summary="Run a command inside a worker (admins only)",
                     handler=commands.run_in_worker, target=target, args=[worker], raw="COMMAND…",
                     permission=Permission.MANAGE)


def _limit_options() -> list[Any]:
    return [option("cpus", TEXT, "CPU limit, e.g. 0.5 or 500m (default from the config)"),
            option("memory", TEXT, "memory limit, e.g. 512Mi or 2Gi (default from the config)")]


def _limits(ctx: CommandContext) -> dict[str, str]:
    """``--cpus``/``--memory`` as Kubernetes quantities, checked before anything starts."""
    limits: dict[str, str] = {}
    for key, example in (("cpus", "0.5 or 500m"), ("memory", "512Mi or 2Gi")):
        value = ctx.args.optional(key, str)
        if value is None:
            continue
        try:
            if parse_quantity(value) <= 0:
                raise InvalidSpec("spec", "not positive")
        except InvalidSpec:
            raise Refused(f"`--{key}` takes a positive quantity such as {example}.") from None
        limits[key] = value
    return limits

"""The ``!worker`` commands: check everything a person could get wrong, then start an operation.

Validation happens here, before any external call: a name that exists, a model that is not
allowed, a full quota or an unknown team get a reply that says so and change nothing. What is
left (accounts, rooms, gateway, storage, runtime) is the flows' work, run durably by the engine.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from backends import BackendError, ExecTimeout
from hiclaw_bot.chat import wording
from hiclaw_bot.chat.arguments import NAME, PAIR, TEXT, Choice, Integer, ListOf, option, positional
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import Reply, escape, spoken_duration, table
from hiclaw_bot.clients.errors import ClientError
from hiclaw_bot.config import Config
from hiclaw_bot.flows import names
from hiclaw_bot.flows import team as team_flows
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows import worker_rules as rules
from hiclaw_bot.flows.runtimes import PROFILES
from hiclaw_bot.flows.services import Services
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
        request = rules.CreateRequest(
            name=ctx.args.get("name", str), model=ctx.args.optional("model", str),
            image=ctx.args.optional("image", str), team=ctx.args.optional("team", str),
            runtime=ctx.args.optional("runtime", str), skills=ctx.args.values.get("skills") or [],
            mcp=ctx.args.values.get("mcp") or [], env=dict(ctx.args.values.get("env") or {}),
            idle_timeout=ctx.args.optional("idle_timeout", str), cpus=ctx.args.optional("cpus", str),
            memory=ctx.args.optional("memory", str), backend=ctx.args.optional("backend", str))
        plan = await rules.plan_create(self.services, ctx.store, request)
        name, params = request.name, plan.params
        if plan.team is not None:
            # Made by the team's own operation, so the team room, power levels and the leader's
            # config take the new worker in too.
            await ctx.start(team_flows.ADD, team_flows.subject(plan.team.name),
                            {"name": plan.team.name, "worker": name, "leader": plan.team.leader, "create": params})
            return None
        await ctx.start(flows.CREATE, flows.subject(name), params)
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
        await rules.check_wake(row, self.services.backend_for(row))
        await ctx.start(flows.WAKE, flows.subject(row.name), {"name": row.name})
        return None

    async def sleep(self, ctx: CommandContext) -> Reply | None:
        row = await self._row(ctx)
        await rules.check_sleep(row, self.services.backend_for(row))
        await ctx.start(flows.SLEEP, flows.subject(row.name), {"name": row.name})
        return None

    async def restart(self, ctx: CommandContext) -> Reply | None:
        row = await self._row(ctx)
        await ctx.start(flows.RESTART, flows.subject(row.name), {"name": row.name})
        return None

    async def update(self, ctx: CommandContext) -> Reply | None:
        row = await self._row(ctx)
        params = await rules.plan_update(
            self.services, row, model=ctx.args.optional("model", str), image=ctx.args.optional("image", str),
            env=ctx.args.values.get("env") or {}, cpus=ctx.args.optional("cpus", str),
            memory=ctx.args.optional("memory", str))
        await ctx.start(flows.UPDATE, flows.subject(row.name), params)
        return None

    async def delete_refusal(self, ctx: CommandContext) -> Reply | None:
        """Why ``!worker delete`` cannot go ahead (checked before asking for ``!confirm`` and again after)."""
        try:
            await rules.check_delete(ctx.store, ctx.args.get("name", str))
        except Refused as exc:
            return Reply.of(exc.reason)
        return None

    async def delete(self, ctx: CommandContext) -> Reply | None:
        refusal = await self.delete_refusal(ctx)
        if refusal is not None:
            return refusal
        name = ctx.args.get("name", str)
        row = await ctx.store.workers.get(name)
        params = {**(rules.spec_params(row) if row else {}), "name": name}
        await ctx.start(flows.DELETE, flows.subject(name), params)
        return None


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
    registry.command("worker", "restart", permission=Permission.OPERATE,
                     summary="Stop a worker and start it again (a sleeping one is woken)",
                     handler=commands.restart, target=existing, args=[worker])
    wording.declare(flows.RESTART, wording.Phrases("restarting {name}", "{name} is running", "restarted"))
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

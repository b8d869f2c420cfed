"""The ``!team`` commands: check everything a person could get wrong, then start a team operation.

Everything that can be refused is refused here, before any external call: a team that exists, a
leader named twice, a worker that is busy, in another team, or exists without ``--adopt``, an
unknown worker to add, a model that is not allowed, a quota that would be exceeded (the reply
names the limit). The flows (:mod:`hiclaw_bot.flows.team`) then do the work durably.
"""

from __future__ import annotations

from typing import Any

from hiclaw_bot.chat.arguments import INT, NAME, TEXT, Choice, ListOf, flag, option, positional
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import Reply, table
from hiclaw_bot.config import Config
from hiclaw_bot.flows import accounts
from hiclaw_bot.flows import team as flows
from hiclaw_bot.flows import worker as worker_flows
from hiclaw_bot.flows.models import check_model
from hiclaw_bot.flows.quota import check_room_in_team, check_team_size, team_worker_limit
from hiclaw_bot.flows.runtimes import PROFILES, profile
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import Refused
from storage import Team, Worker


class TeamCommands:
    def __init__(self, config: Config, services: Services | None = None) -> None:
        self.config = config
        self.services = services
        """For the account check of new workers' names (None: left to the account step), and the
        gateway, asked which models its AI route serves (see :mod:`hiclaw_bot.flows.models`)."""
        self.gateway = services.gateway if services is not None else None

    async def _team(self, ctx: CommandContext) -> Team:
        name = ctx.args.get("name", str)
        team = await ctx.store.teams.get(name)
        if team is None:
            raise Refused(f"There is no team named `{name}`. `!team list` shows them.")
        return team

    async def _busy(self, ctx: CommandContext, worker: str) -> Reply | None:
        holder = await ctx.store.ops.holder(worker_flows.subject(worker))
        if holder is None:
            return None
        return Reply.of(f"Worker `{worker}` is busy with operation {holder.op_id} ({holder.kind}, {holder.state}); "
                        f"wait for it or settle it first (`!op show {holder.op_id}`).")

    # -- create ---------------------------------------------------------------------------------

    async def create(self, ctx: CommandContext) -> Reply | None:
        name, leader = ctx.args.get("name", str), ctx.args.get("leader", str)
        members: list[str] = ctx.args.values.get("workers") or []
        adopt = bool(ctx.args.values.get("adopt"))
        if await ctx.store.teams.get(name) is not None:
            return Reply.of(f"A team named `{name}` already exists: `!team status {name}`.")
        if await ctx.store.ops.holder(flows.subject(name)) is not None:
            return Reply.of(f"Team `{name}` is being changed by another operation: `!op list`.")
        if leader in members:
            return Reply.of(f"`{leader}` cannot be both the leader and a member of team `{name}`.")
        repeated = sorted({w for w in members if members.count(w) > 1})
        if repeated:
            return Reply.of(f"Each worker may be named once; repeated: {', '.join(repeated)}.")
        existing: list[str] = []
        for worker in [leader, *members]:
            refusal = await self._busy(ctx, worker)
            if refusal is not None:
                return refusal
            row = await ctx.store.workers.get(worker)
            if row is None:
                continue
            if row.team is not None:
                return Reply.of(f"Worker `{worker}` is in team `{row.team}`; a worker is in one team at most.")
            existing.append(worker)
        if existing and not adopt:
            return Reply.of(f"Worker(s) {', '.join(f'`{w}`' for w in existing)} already exist. Add `--adopt` to "
                            f"take them into the team as they are, or choose other names.")
        if self.services is not None:
            for worker in [leader, *members]:
                taken = None if worker in existing else await accounts.refusal(self.services, ctx.store, worker)
                if taken is not None:
                    return Reply.of(taken[:1].upper() + taken[1:] + ".")
        model = ctx.args.optional("model", str) or self.config.quotas.default_model
        max_workers = ctx.args.optional("max_workers", int)
        limit = max_workers if max_workers is not None else team_worker_limit(self.config, name, None)
        await check_model(self.config, self.gateway, model)
        await check_team_size(self.config, ctx.store, name, size=1 + len(members),
                              new=1 + len(members) - len(existing), team_limit=limit)
        runtime = ctx.args.optional("runtime", str) or self.config.runtimes.default
        leader_runtime = ctx.args.optional("leader_runtime", str) or runtime
        params: dict[str, Any] = {
            "name": name, "leader": leader, "workers": members, "model": model, "runtime": runtime,
            "leader_runtime": leader_runtime,
            "image": ctx.args.optional("image", str) or profile(runtime).image(self.config),
            "adopt": existing, "max_workers": max_workers,
        }
        await ctx.start(flows.CREATE, flows.subject(name), params)
        return None

    # -- membership -----------------------------------------------------------------------------

    async def add(self, ctx: CommandContext) -> Reply | None:
        team = await self._team(ctx)
        worker = ctx.args.get("worker", str)
        row = await ctx.store.workers.get(worker)
        if row is None:
            return Reply.of(f"There is no worker named `{worker}`. To create one in the team: "
                            f"`!worker create {worker} --team {team.name}`.")
        if row.team == team.name:
            return Reply.of(f"`{worker}` is already in team `{team.name}`.")
        if row.team is not None:
            return Reply.of(f"Worker `{worker}` is in team `{row.team}`; a worker is in one team at most.")
        refusal = await self._busy(ctx, worker)
        if refusal is not None:
            return refusal
        await check_room_in_team(self.config, ctx.store, team)
        await ctx.start(flows.ADD, flows.subject(team.name), {"name": team.name, "worker": worker})
        return None

    async def remove(self, ctx: CommandContext) -> Reply | None:
        team = await self._team(ctx)
        worker = ctx.args.get("worker", str)
        if worker == team.leader:
            return Reply.of(f"`{worker}` leads team `{team.name}`; a team keeps its leader until "
                            f"`!team delete {team.name}`.")
        row = await ctx.store.workers.get(worker)
        if row is None or row.team != team.name:
            return Reply.of(f"`{worker}` is not in team `{team.name}`.")
        await ctx.start(flows.REMOVE, flows.subject(team.name),
                        {"name": team.name, "worker": worker, "leader": team.leader})
        return None

    # -- reading --------------------------------------------------------------------------------

    async def list_teams(self, ctx: CommandContext) -> Reply:
        rows = await ctx.store.teams.all()
        if ctx.actor.kind.scoped:
            rows = [t for t in rows if t.name in ctx.actor.teams]
        if not rows:
            return Reply.of("No teams yet. Create one with `!team create NAME --leader WORKER`.")
        cells = []
        for team in rows:
            members = [w for w in await ctx.store.workers.all(team=team.name) if w.name != team.leader]
            cells.append([team.name, team.state, team.leader, str(len(members)),
                          "–" if team.max_workers is None else str(team.max_workers)])
        return table(["team", "state", "leader", "workers", "max"], cells, title=f"{len(rows)} team(s)")

    async def status(self, ctx: CommandContext) -> Reply:
        team = await self._team(ctx)
        workers = await ctx.store.workers.all(team=team.name)
        if not any(w.name == team.leader for w in workers):
            leader = await ctx.store.workers.get(team.leader)
            workers = [*([leader] if leader else []), *workers]
        holder = await ctx.store.ops.holder(flows.subject(team.name))
        limit = team_worker_limit(self.config, team.name, team)
        title = (f"Team {team.name}: {team.state}; leader {team.leader}; "
                 f"{len(workers)} worker(s)" + (f" of at most {limit}" if limit is not None else "")
                 + f"; room {team.room_id or '–'}; leader DM {team.leader_dm_room_id or '–'}")
        if holder is not None:
            title += f"\noperation {holder.op_id} ({holder.kind}) is {holder.state}" + (
                f" at step {holder.failed_step}: {holder.error}" if holder.failed_step else "")
        return table(["worker", "role", "state", "model"], [_row(w, team) for w in workers], title=title)

    # -- delete ---------------------------------------------------------------------------------

    async def delete(self, ctx: CommandContext) -> Reply | None:
        name = ctx.args.get("name", str)
        team = await ctx.store.teams.get(name)
        holder = await ctx.store.ops.holder(flows.subject(name))
        if team is None and (holder is None or holder.kind != flows.CREATE):
            return Reply.of(f"There is no team named `{name}`.")
        leader = team.leader if team is not None else str(holder.params["leader"]) if holder else ""
        members = sorted({w.name for w in await ctx.store.workers.all(team=name)} - {leader})
        params = {"name": name, "leader": leader, "workers": members,
                  "with_workers": bool(ctx.args.values.get("with_workers"))}
        await ctx.start(flows.DELETE, flows.subject(name), params)
        return None


def _row(worker: Worker, team: Team) -> list[str]:
    return [worker.name, "leader" if worker.name == team.leader else "worker", worker.state, worker.model or "–"]


def register_team_commands(registry: Registry, config: Config, services: Services | None = None) -> None:
    commands = TeamCommands(config, services)
    team = positional("name", NAME, "the team")
    target = TargetSpec("team", "name")
    registry.command(
        "team", "create", permission=Permission.MANAGE,
        summary="Create a team: its leader, workers and rooms", handler=commands.create,
        target=target,
        args=[team, option("leader", NAME, "the leader worker", required=True),
              option("workers", ListOf(NAME), "the member workers, a,b,c"),
              option("model", TEXT, "the model of new workers (default from the config)"),
              option("image", TEXT, "the runtime image of new workers"),
              option("runtime", Choice(*sorted(PROFILES)), "the runtime of new workers (default from the config)"),
              option("leader_runtime", Choice(*sorted(PROFILES)), "the leader's runtime, if other than --runtime"),
              option("max_workers", INT, "the team's worker quota (default from the config)"),
              flag("adopt", "take existing teamless workers into the team")],
    )
    registry.command("team", "add", permission=Permission.MANAGE,
                     summary="Put an existing worker in a team", handler=commands.add,
                     target=target, args=[team, positional("worker", NAME, "the worker")])
    registry.command("team", "remove", permission=Permission.MANAGE,
                     summary="Take a worker out of a team; it keeps running",
                     handler=commands.remove, target=target, args=[team, positional("worker", NAME, "the worker")])
    registry.command("team", "list", permission=Permission.READ,
                     summary="All teams", handler=commands.list_teams, aliases=("teams",))
    registry.command("team", "status", permission=Permission.READ,
                     summary="One team: leader, workers, rooms, current operation",
                     handler=commands.status, target=target, args=[team])
    registry.command(
        "team", "delete", permission=Permission.MANAGE,
        summary="Delete a team's rooms; its workers stay unless --with-workers",
        handler=commands.delete, target=target,
        args=[team, flag("with_workers", "delete the leader and the workers too")],
        confirm="deletes team {name}: its rooms are renamed \"[deleted]\" and lose their aliases; its workers "
                "stay as teamless workers unless --with-workers (then they are deleted); its shared files stay",
    )

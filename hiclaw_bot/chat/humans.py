"""The ``!human`` commands: check what a person could get wrong, then start an operation.

Everything a reply can refuse is refused here, before any operation or external write: a bad name,
level or address, an unknown team, a human who exists already, or credentials that would have no
safe way to travel. Without ``--email`` the password can only be handed to the admin in a direct
chat, so ``!human create`` typed anywhere else without ``--email`` is refused: the one message that
carries a password must never land in a room others read.
"""

from __future__ import annotations

from typing import Any

from hiclaw_bot.chat.arguments import NAME, TEXT, ArgError, ArgType, Choice, ListOf, option, positional
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import Reply, table
from hiclaw_bot.flows import human as flows
from hiclaw_bot.flows import names
from hiclaw_bot.flows.human_steps import ACCOUNT, LEVELS
from hiclaw_bot.flows.services import Services
from hiclaw_bot.types import Refused, RoomId

MAX_DISPLAY_NAME = 100


class Email(ArgType):
    """One plain mail address."""

    metavar = "EMAIL"

    def convert(self, text: str) -> str:
        try:
            return flows.parse_email(text)
        except flows.InvalidEmail:
            raise ArgError("expected one plain mail address like name@example.org") from None


class HumanCommands:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def create(self, ctx: CommandContext) -> Reply | None:
        name = ctx.args.get("name", str)
        if await ctx.store.humans.get(name) is not None:
            holder = await ctx.store.ops.holder(flows.subject(name))
            if holder is not None and holder.state == "failed":
                op_id = holder.op_id
                return Reply.of(f"Human `{name}` is half made: operation {op_id} failed at {holder.failed_step}. "
                                f"`!op retry {op_id}` resumes it; `!op abort {op_id}` undoes it.")
            return Reply.of(f"A human named `{name}` already exists: `!human list` shows them.")
        user_id = names.user_id(name, ctx.config.matrix.server_name)
        known = await ctx.store.ledger.get(ACCOUNT, user_id)
        if await ctx.store.workers.get(name) is not None or name == ctx.config.matrix.bot.localpart \
                or (known is not None and known.owner != flows.subject(name)):
            return Reply.of(f"`{name}` is the account of a worker or of the bot itself; choose another name.")
        if await self.services.matrix.is_deactivated(user_id):
            return Reply.of(f"{user_id} was deactivated and cannot be used again; choose another name.")
        if ctx.config.matrix.registration.mode == "appservice":
            return Reply.of("Human accounts need passwords, which appservice registration cannot give; "
                            "configure matrix.registration as `token` or `shared_secret`.")
        await self._check_teams(ctx)
        await self._check_workers(ctx, ctx.args.get("level", str))
        display_name = ctx.args.optional("display_name", str)
        if display_name is not None and (not display_name.strip() or len(display_name) > MAX_DISPLAY_NAME
                                         or not display_name.isprintable()):
            return Reply.of(f"`--display-name` takes one line of at most {MAX_DISPLAY_NAME} printable characters.")
        email = ctx.args.optional("email", str)
        if email is not None and not ctx.config.mail.enabled:
            return Reply.of("Mail is not configured here (mail.enabled), so `--email` cannot be used; "
                            "send the command without it in a direct chat with me to get the credentials there.")
        if email is None and not await self._direct_chat(ctx):
            return Reply.of("Without `--email` the password is given to you in a direct chat with me only: "
                            "send the command there, or add `--email ADDRESS`.")
        params: dict[str, Any] = {
            "name": name, "level": ctx.args.get("level", str), "teams": ctx.args.values.get("teams") or [],
            "workers": ctx.args.values.get("workers") or [], "email": email, "display_name": display_name,
        }
        await ctx.start(flows.CREATE, flows.subject(name), params)
        return None

    async def invite(self, ctx: CommandContext) -> Reply | None:
        name = ctx.args.get("name", str)
        row = await ctx.store.humans.get(name)
        if row is None:
            return Reply.of(f"There is no human named `{name}`. `!human list` shows them.")
        await self._check_teams(ctx)
        await self._check_workers(ctx, row.level)
        teams, workers = ctx.args.values.get("teams"), ctx.args.values.get("workers")
        await ctx.start(flows.INVITE, flows.subject(name), {"name": name, "teams": teams or None,
                                                             "workers": workers or None})
        return None

    async def list_humans(self, ctx: CommandContext) -> Reply:
        rows = await ctx.store.humans.all()
        if not rows:
            return Reply.of("No humans yet. Add one with `!human create USER`.")
        return table(["name", "user", "level", "teams", "workers", "email", "state"],
                     [[h.name, h.user_id, h.level, ", ".join(h.teams) or "–", ", ".join(h.workers) or "–",
                       h.email or "–", h.state] for h in rows],
                     title=f"{len(rows)} human(s)")

    async def delete(self, ctx: CommandContext) -> Reply | None:
        name = ctx.args.get("name", str)
        if await ctx.store.humans.get(name) is None and await ctx.store.ops.holder(flows.subject(name)) is None:
            return Reply.of(f"There is no human named `{name}`.")
        await ctx.start(flows.DELETE, flows.subject(name), {"name": name})
        return None

    async def _check_teams(self, ctx: CommandContext) -> None:
        """``--teams`` names existing teams."""
        teams: list[str] = ctx.args.values.get("teams") or []
        unknown = [team for team in teams if await ctx.store.teams.get(team) is None]
        if unknown:
            raise Refused(f"Unknown team(s): {', '.join(unknown)}. `!team list` shows them.")

    async def _check_workers(self, ctx: CommandContext, level: str) -> None:
        """``--workers`` names existing workers, and only for a ``team`` human (an admin talks to
        every worker already, a viewer to none)."""
        workers: list[str] = ctx.args.values.get("workers") or []
        if not workers:
            return
        if level != "team":
            raise Refused(f"`--workers` is for a human of level `team`: an `{level}` human talks to "
                          + ("every worker already." if level == "admin" else "no worker (it reads only)."))
        unknown = [worker for worker in workers if await ctx.store.workers.get(worker) is None]
        if unknown:
            raise Refused(f"Unknown worker(s): {', '.join(unknown)}. `!worker list` shows them.")

    async def _direct_chat(self, ctx: CommandContext) -> bool:
        """Whether the room holds the sender and the bot alone, nobody else even invited, and is not one of ours."""
        if await ctx.resolver.known_room(ctx.room_id):
            return False
        members = set(await self.services.matrix.members(RoomId(ctx.room_id)))
        return members == {self.services.bot_user_id, ctx.sender}


def register_human_commands(registry: Registry, services: Services) -> None:
    commands = HumanCommands(services)
    target = TargetSpec("human", "name")
    human = positional("name", NAME, "the account's user name (its Matrix localpart)")
    teams = option("teams", ListOf(NAME), "the teams whose rooms it joins")
    workers = option("workers", ListOf(NAME), "workers it may talk to besides its teams' (level team)")
    registry.command(
        "human", "create", permission=Permission.MANAGE,
        summary="Add a human member: account, rooms by level, credentials",
        handler=commands.create, target=target,
        args=[human, option("email", Email(), "mail the credentials there (else: to you, in this direct chat)"),
              option("level", Choice(*LEVELS),
                     "admin: every room; team: its teams' rooms; viewer (the default): reads only", default="viewer"),
              teams, workers, option("display_name", TEXT, "the name others see")],
    )
    registry.command("human", "invite", permission=Permission.MANAGE,
                     summary="Invite a human again to the rooms of its level",
                     handler=commands.invite, target=target,
                     args=[human, option("teams", ListOf(NAME), "replace its teams first"),
                           option("workers", ListOf(NAME), "replace the workers it may talk to first")])
    registry.command("human", "list", permission=Permission.MANAGE,
                     summary="All human members", handler=commands.list_humans, aliases=("humans",))
    registry.command("human", "delete", permission=Permission.MANAGE,
                     summary="Remove a human: out of our rooms, account deactivated",
                     handler=commands.delete, target=target, args=[human],
                     confirm="removes human {name} from every room it was invited to and deactivates its account")

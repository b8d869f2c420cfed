"""What a command is: its declaration (words, arguments, permission, target) and its handler's type.

A leaf of the chat layer: it knows the argument and permission vocabularies and how to render a
reply, and nothing of the registry, the dispatcher or what a handler receives. That is why
:class:`Command` is generic in its handler's argument: the registry binds it to
:class:`~hiclaw_bot.chat.context.CommandContext` (``Command[CommandContext]``), so the context can
name the command it runs without the two modules importing each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from hiclaw_bot.chat.arguments import Arg
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.replies import Reply

Ctx = TypeVar("Ctx")
"""What a handler receives (in the bot: :class:`~hiclaw_bot.chat.context.CommandContext`)."""

Handler = Callable[[Ctx], Awaitable[Reply | None]]
"""A command's behaviour: gets the context, returns the answer (None when the operation it started
answers through its progress message, or when there is nothing to add)."""

_WHO = {
    Permission.MEMBER: "anyone the bot knows",
    Permission.READ: "admins and members (scoped to their teams)",
    Permission.OPERATE: "admins, and team leaders or team-level members on their own team",
    Permission.PROVISION: "admins, and team leaders within their team's quota",
    Permission.MANAGE: "admins only",
}


@dataclass(frozen=True)
class TargetSpec:
    """Which argument names the command's target, for the permission check.

    ``team_arg`` names an argument holding the team of a target that does not exist yet (the team
    a new worker will join).
    """

    kind: Literal["worker", "team", "human", "op"]
    arg: str
    team_arg: str | None = None
    must_exist: bool = False
    """An unknown target is answered at once, before any confirmation is asked for."""


@dataclass(frozen=True)
class Command(Generic[Ctx]):
    noun: str
    verb: str | None
    summary: str
    handler: Handler[Ctx]
    permission: Permission
    args: tuple[Arg, ...] = ()
    target: TargetSpec | None = None
    confirm: str | None = None
    """Set for destructive commands: what will happen, shown when asking for ``!confirm CODE``.
    ``{name}`` fields are filled from the arguments."""
    raw: str | None = None
    """The metavar of raw argv after ``--`` (``COMMAND…``); None: the command takes none."""
    aliases: tuple[str, ...] = ()
    precheck: Handler[Ctx] | None = None
    """For a confirmed command: run before asking for ``!confirm``; a reply refuses at once (nobody
    confirms something that would then be refused)."""

    @property
    def name(self) -> str:
        return self.noun if self.verb is None else f"{self.noun} {self.verb}"

    def usage(self) -> str:
        parts = [f"!{self.name}", *(arg.usage() for arg in self.args)]
        if self.raw is not None:
            parts += ["--", self.raw]
        return " ".join(parts)

    def help(self) -> Reply:
        lines = [f"`{self.usage()}`", self.summary]
        described = [arg for arg in self.args if arg.help]
        for arg in described:
            lines.append(f"  {arg.usage().strip('[]')}: {arg.help}")
        if self.aliases:
            lines.append("Also: " + ", ".join(f"`!{a}`" for a in self.aliases))
        lines.append(f"Who: {_WHO[self.permission]}.")
        if self.confirm is not None:
            lines.append("Asks for `!confirm CODE` before it acts.")
        return Reply.of("\n".join(lines))

"""The command registry: every command, its arguments, permission and handler, in one place.

Layers register their commands through :meth:`Registry.command` (the chat layer's own ``!help``,
``!op`` and ``!confirm``; the worker, team and human commands when the flows are wired)::

    registry.command("worker", "wake", summary="Start a sleeping worker",
                     permission=Permission.OPERATE, args=[positional("name", NAME, "the worker")],
                     target=TargetSpec("worker", "name"), handler=wake)

From that one declaration come the lookup of what people type (aliases included, collisions refused
at registration), the binding of typed arguments, the permission check on the right target, the
confirmation step of destructive commands, "did you mean" for typos, and ``!help`` itself.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from hiclaw_bot.chat import command as declared
from hiclaw_bot.chat.arguments import Arg
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.grammar import Token
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.replies import Reply, table

Command = declared.Command[CommandContext]
"""A command of this bot: its handler gets a :class:`CommandContext`."""
Handler = declared.Handler[CommandContext]


@dataclass(frozen=True)
class Found:
    command: Command
    words: tuple[Token, ...]
    """The words after the command's name: its arguments."""


@dataclass(frozen=True)
class Unknown:
    typed: str
    suggestions: tuple[str, ...]
    noun_commands: tuple[Command, ...] = ()
    """When the noun is known (``!worker`` alone, ``!worker frob``): its commands."""


class Registry:
    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}
        self._phrases: dict[tuple[str, ...], Command] = {}

    def command(self, noun: str, verb: str | None = None, *, summary: str, handler: Handler,
                permission: Permission, args: Sequence[Arg] = (), target: TargetSpec | None = None,
                confirm: str | None = None, raw: str | None = None, aliases: Iterable[str] = (),
                precheck: Handler | None = None) -> Command:
        """Register a command; ``aliases`` are whole phrases (``"worker ls"``, ``"h"``).

        ``permission`` is the command's only declaration of who may run it: ``!help``, the
        dispatcher's check and README's table (checked by a test) all read it from here.
        """
        command = Command(noun, verb, summary, handler, permission, tuple(args), target, confirm, raw,
                          tuple(aliases), precheck)
        _check(command)
        phrases = [tuple(command.name.split())] + [tuple(a.split()) for a in command.aliases]
        for phrase in phrases:
            if not phrase or len(phrase) > 2:
                raise ValueError(f"{' '.join(phrase)!r}: a command is one or two words")
            taken = self._phrases.get(phrase)
            if taken is not None:
                raise ValueError(f"!{' '.join(phrase)} is already the command !{taken.name}")
        for phrase in phrases:
            self._phrases[phrase] = command
        self._commands[command.name] = command
        return command

    def __iter__(self) -> Iterator[Command]:
        return iter(sorted(self._commands.values(), key=lambda c: c.name))

    def get(self, name: str) -> Command | None:
        return self._phrases.get(tuple(name.split()))

    def resolve(self, words: Sequence[Token]) -> Found | Unknown:
        """The command the words name (two-word names first, then one-word ones)."""
        texts = [w.text.casefold() if not w.quoted else "" for w in words[:2]]
        if len(texts) == 2 and (command := self._phrases.get((texts[0], texts[1]))) is not None:
            return Found(command, tuple(words[2:]))
        if texts and (command := self._phrases.get((texts[0],))) is not None:
            return Found(command, tuple(words[1:]))
        typed = " ".join(w.text for w in words[:2])
        return Unknown(typed, self.suggest(typed), self.of_noun(texts[0] if texts else ""))

    def starter(self, kind: str) -> Command | None:
        """The command that starts operations of ``kind``: the one its words name (``worker.wake`` →
        ``!worker wake``), so a new command and its operation kind need no table. None for a kind no
        command names: the bot's own (``worker.repair``) and ``gc.sweep``, answered to as an admin's."""
        return self._commands.get(kind.replace(".", " "))

    def of_noun(self, noun: str) -> tuple[Command, ...]:
        return tuple(c for c in self if c.noun == noun)

    def suggest(self, typed: str) -> tuple[str, ...]:
        phrases = sorted({" ".join(p) for p in self._phrases})
        close = difflib.get_close_matches(typed.casefold(), phrases, n=3, cutoff=0.6)
        if not close and " " in typed:
            close = difflib.get_close_matches(typed.casefold().split()[0], phrases, n=3, cutoff=0.6)
        return tuple(close)

    # -- help -----------------------------------------------------------------------------------

    def overview(self) -> Reply:
        """``!help``: every command with its summary."""
        rows = [[f"!{c.name}", c.summary] for c in self]
        text = table(["command", "what it does"], rows, title="Commands:")
        footer = Reply.of("`!help COMMAND` shows a command's arguments, e.g. `!help op retry`.")
        return Reply(f"{text.text}\n{footer.text}", f"{text.html}<p>{footer.html}</p>")

    def noun_help(self, noun: str, commands: Sequence[Command]) -> Reply:
        rows = [[c.usage(), c.summary] for c in commands]
        return table(["usage", "what it does"], rows, title=f"!{noun} commands:")


def unknown_reply(unknown: Unknown) -> Reply:
    """"Did you mean …?" for a command nobody registered."""
    if unknown.noun_commands and " " not in unknown.typed.strip():
        noun = unknown.noun_commands[0].noun
        listing = ", ".join(f"`!{c.name}`" for c in unknown.noun_commands)
        return Reply.of(f"`!{noun}` needs a subcommand: {listing}. `!help {noun}` explains them.")
    if not unknown.typed.strip():
        return Reply.of("That is an empty command. `!help` lists every command.")
    text = f"I don't know the command `!{unknown.typed}`."
    if unknown.suggestions:
        text += " Did you mean " + " or ".join(f"`!{s}`" for s in unknown.suggestions) + "?"
    text += " `!help` lists every command."
    return Reply.of(text)


def _check(command: Command) -> None:
    names = [arg.name for arg in command.args]
    if len(set(names)) != len(names):
        raise ValueError(f"!{command.name}: argument names must be unique")
    greedy = [arg for arg in command.args if arg.many and not arg.option]
    if greedy and [a for a in command.args if not a.option][-1] is not greedy[0]:
        raise ValueError(f"!{command.name}: only the last positional argument may take many words")
    if command.target is not None and command.target.arg not in names:
        raise ValueError(f"!{command.name}: the target argument {command.target.arg!r} is not declared")

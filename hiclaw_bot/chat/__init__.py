"""The Matrix-facing layer: sync loop, command grammar and registry, permissions, replies and progress.

The public surface, for whoever wires the bot (``cli``, ``devstack``):

* :class:`Bot` — ``Bot(config, store, engine, registry=...)``; ``await bot.start()`` / ``stop()``;
* :class:`Registry` and :func:`default_registry` — ``registry.command(noun, verb, summary=…, args=[…],
  permission=Permission.OPERATE, target=TargetSpec("worker", "name"), handler=…)``;
* the argument builders (:func:`positional`, :func:`option`, :func:`flag` and the types
  ``NAME``, ``INT``, ``TEXT``, :class:`Choice`, :class:`ListOf`, ``PAIR`` …);
* :class:`CommandContext` (what a handler receives) and :class:`Reply` (what it returns); a handler
  refuses by raising :class:`hiclaw_bot.types.Refused`.
"""

from hiclaw_bot.chat.arguments import (
    BOOL,
    INT,
    NAME,
    PAIR,
    TEXT,
    Arg,
    Args,
    ArgType,
    Choice,
    Integer,
    KeyValue,
    ListOf,
    flag,
    option,
    positional,
)
from hiclaw_bot.chat.bot import Bot
from hiclaw_bot.chat.builtin import default_registry
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext, Incoming
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Command, Handler, Registry
from hiclaw_bot.chat.replies import Reply, table

__all__ = [
    "BOOL", "INT", "NAME", "PAIR", "TEXT", "Arg", "ArgType", "Args", "Bot", "Choice", "Command", "CommandContext",
    "Handler", "Incoming", "Integer", "KeyValue", "ListOf", "Permission", "Registry", "Reply", "TargetSpec",
    "default_registry", "flag", "option", "positional", "table",
]

"""The commands the chat layer owns: ``!help``, ``!op list|show|retry|abort`` and ``!confirm``.

They need nothing but the registry, the engine and the store, so they exist from the first start;
the worker, team and human commands are registered beside them by whoever wires the flows in.
"""

from __future__ import annotations

import time

from hiclaw_bot.chat.arguments import INT, TEXT, Choice, Integer, option, positional
from hiclaw_bot.chat.command import TargetSpec
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.grammar import Token
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.progress import render
from hiclaw_bot.chat.registry import Found, Registry, unknown_reply
from hiclaw_bot.chat.replies import Reply, duration, table
from hiclaw_bot.engine import OperationNotFound
from storage import TERMINAL_OP_STATES, Operation

_SCOPED_LOOKBACK = 500
OP_STATES = ("queued", "running", "failed", "compensating", "succeeded", "compensated", "cancelled")


def default_registry() -> Registry:
    """A registry holding the built-in commands."""
    registry = Registry()
    register_builtins(registry)
    return registry


def register_builtins(registry: Registry) -> None:
    async def help_(ctx: CommandContext) -> Reply:
        topic = ctx.args.get("topic", list)
        if not topic:
            return registry.overview()
        found = registry.resolve([Token(str(word).lstrip("!")) for word in topic])
        if isinstance(found, Found):
            return found.command.help()
        if found.noun_commands and len(topic) == 1:
            return registry.noun_help(found.noun_commands[0].noun, found.noun_commands)
        return unknown_reply(found)

    registry.command("help", permission=Permission.MEMBER, summary="List the commands, or explain one", handler=help_,
                     aliases=("h", "?"),
                     args=[positional("topic", TEXT, "a command, e.g. worker create", required=False, many=True)])
    registry.command("op", "list", permission=Permission.READ,
                     summary="Recent operations and where they stand", handler=op_list,
                     aliases=("op ls", "ops"),
                     args=[option("state", Choice(*OP_STATES), "only operations in this state"),
                           option("limit", Integer(1, 100), "how many (default 15)", default=15)])
    registry.command("op", "show", permission=Permission.READ, summary="One operation, step by step", handler=op_show,
                     target=TargetSpec("op", "id"),
                     args=[positional("id", INT, "the operation number")])
    registry.command("op", "retry", permission=Permission.OPERATE,
                     summary="Resume a failed operation at the step that failed", handler=op_retry,
                     target=TargetSpec("op", "id"),
                     args=[positional("id", INT, "the operation number")])
    registry.command("op", "abort", permission=Permission.OPERATE,
                     summary="Stop an operation and undo what it did", handler=op_abort,
                     target=TargetSpec("op", "id"),
                     confirm="stops operation {id} and undoes, in reverse, every step it completed",
                     args=[positional("id", INT, "the operation number")])
    registry.command("confirm", permission=Permission.MEMBER,
                     summary="Go ahead with a command that asked for confirmation", handler=confirm,
                     args=[positional("code", TEXT, "the code the bot gave you")])


async def _visible(ctx: CommandContext, op: Operation) -> bool:
    """Whether a team-scoped actor may see ``op`` (admins see everything)."""
    if not ctx.actor.kind.scoped:
        return True
    return await ctx.resolver.subject_team(op.subject) in ctx.actor.teams


async def op_list(ctx: CommandContext) -> Reply:
    state = ctx.args.optional("state", str)
    limit = ctx.args.get("limit", int)
    # Scoped actors see only their teams' operations: look further back to fill the page.
    fetch = _SCOPED_LOOKBACK if ctx.actor.kind.scoped else limit
    found = await ctx.store.ops.find(states=[state] if state else None, limit=fetch)
    ops = [op for op in found if await _visible(ctx, op)][:limit]
    if not ops:
        return Reply.of("No operations" + (f" in state {state}." if state else " yet."))
    now = time.time()
    rows = [[str(op.op_id), op.kind, op.subject, op.state, op.failed_step or "", duration(now - op.created_at) + " ago"]
            for op in ops]
    return table(["op", "kind", "subject", "state", "failed step", "started"], rows)


async def op_show(ctx: CommandContext) -> Reply:
    op = await _op(ctx)
    shown = render(op, await ctx.store.steps.of(op.op_id))
    facts = [f"by {op.actor or 'the system'}"]
    if op.error:
        facts.append(f"error: {op.error}")
    if op.state == "failed":
        facts.append(f"`!op retry {op.op_id}` resumes it; `!op abort {op.op_id}` undoes it")
    extra = Reply.of("; ".join(facts))
    return Reply(f"{shown.text}\n{extra.text}", f"{shown.html}<p>{extra.html}</p>")


async def op_retry(ctx: CommandContext) -> Reply:
    op = await ctx.engine.retry((await _op(ctx)).op_id)
    ctx.follow(op)
    return Reply.of(f"Resuming operation {op.op_id} ({op.kind} {op.subject}) at the step that failed.")


async def op_abort(ctx: CommandContext) -> Reply:
    op = await ctx.engine.abort((await _op(ctx)).op_id)
    ctx.follow(op)
    if op.state in TERMINAL_OP_STATES:
        return Reply.of(f"Operation {op.op_id} is {op.state}.")
    return Reply.of(f"Undoing operation {op.op_id} ({op.kind} {op.subject}); its progress message shows each step.")


async def confirm(ctx: CommandContext) -> Reply | None:
    code = ctx.args.get("code", str).strip().upper()
    pending = await ctx.store.confirmations.take(code, ctx.sender)
    if pending is None:
        return Reply.of(f"You have no pending confirmation {code}: codes expire after five minutes and work only "
                        f"for the person who got them.")
    ctx.run_confirmed(pending.command)
    return None


async def _op(ctx: CommandContext) -> Operation:
    op_id = ctx.args.get("id", int)
    op = await ctx.store.ops.get(op_id)
    if op is None:
        raise OperationNotFound(op_id)
    return op

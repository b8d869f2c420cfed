"""``!audit [--worker W] [--limit N]``: who asked for what, where, and what the bot decided.

The dispatcher writes one audit row for every command it answers (runs, refusals, usage errors,
unknown commands, confirmations asked and given, commands ignored as too old), and the API writes
one for every change it is asked to make; this command reads them back, newest first. It is an
admin's tool (MANAGE): the log names people, rooms and refusals across every team.
"""

from __future__ import annotations

import time

from hiclaw_bot.chat.arguments import NAME, Integer, option
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import Reply, duration, table

DEFAULT_LIMIT = 20


async def audit(ctx: CommandContext) -> Reply:
    worker = ctx.args.optional("worker", str)
    limit = ctx.args.get("limit", int)
    entries = await ctx.store.audit.recent_with_outcomes(subject=None if worker is None else f"worker:{worker}",
                                                         limit=limit)
    about = f" about worker {worker}" if worker else ""
    if not entries:
        return Reply.of(f"The audit log has no entries{about}.")
    now = time.time()
    rows = [[f"{duration(now - e.ts)} ago", e.actor, e.room_id or "–", e.command, e.subject or "–",
             "–" if e.op_id is None else f"{e.op_id} ({op_state or 'gone'})", e.decision, e.detail or ""]
            for e, op_state in entries]
    return table(["when", "who", "room", "command", "subject", "op", "decision", "detail"], rows,
                 title=f"The last {len(entries)} audit entries{about}, newest first:")


def register_audit_command(registry: Registry) -> None:
    registry.command("audit", permission=Permission.MANAGE,
                     summary="The audit log: every command and what was decided", handler=audit,
                     args=[option("worker", NAME, "only entries about this worker"),
                           option("limit", Integer(1, 200), f"how many (default {DEFAULT_LIMIT})",
                                  default=DEFAULT_LIMIT)])

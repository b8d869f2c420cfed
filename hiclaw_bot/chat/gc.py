"""``!gc [--dry-run]``: list what no worker or team owns under our names, delete it once confirmed.

Why not the registry's ``confirm=``: that asks before the handler runs, so the person would confirm
a deletion without having seen what it deletes, and ``--dry-run`` would need a code too. Here the
handler takes the inventory first and shows it; a plain ``!gc`` then leaves a confirmation
(:meth:`~hiclaw_bot.chat.context.CommandContext.ask_confirmation`, as the registry's does) whose stored
command is ``gc --expect <digest of that list>``. ``!confirm`` reruns it: a fresh inventory
must have the same digest, or nothing is deleted and the person is asked to look again. Only then
does the ``gc.sweep`` operation start, with exactly the list that was shown.

Listing every system takes a few calls per system (one per room the bot is in, for Matrix), so
this handler is slower than most; it is an admin's occasional command.
"""

from __future__ import annotations

from hiclaw_bot.chat.arguments import TEXT, flag, option
from hiclaw_bot.chat.confirmations import CONFIRM_TTL
from hiclaw_bot.chat.context import CommandContext
from hiclaw_bot.chat.permissions import Permission
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.replies import Reply, spoken_duration, table
from hiclaw_bot.flows.gc import SUBJECT, SWEEP
from hiclaw_bot.flows.inventory import Inventory, inventory
from hiclaw_bot.flows.services import Services


def listing(found: Inventory, note: str) -> Reply:
    """The orphans as a table, followed by ``note``."""
    counted = ", ".join(f"{count} {system}" for system, count in found.seen.items())
    if not found.orphans:
        return Reply.of(f"No orphans: everything under our names belongs to a worker or team we know ({counted}).")
    rows = [[o.system, o.name, o.where or "–"] for o in found.orphans]
    shown = table(["system", "object", "route"], rows, title=f"{len(found.orphans)} orphan(s), of {counted}:")
    tail = Reply.of(note)
    return Reply(f"{shown.text}\n{tail.text}", f"{shown.html}<p>{tail.html}</p>")


class GcCommand:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def gc(self, ctx: CommandContext) -> Reply | None:
        found = await inventory(self.services)
        if ctx.args.get("dry_run", bool) or not found.orphans:
            return listing(found, "Dry run: nothing was deleted. `!gc` proposes deleting them.")
        expect = ctx.args.optional("expect", str)
        if ctx.confirmed and expect is not None:
            if expect != found.digest():
                return Reply.of("The orphans changed since that list was shown, so nothing was deleted. "
                                "Send `!gc` again to see the current list.")
            await ctx.start(SWEEP, SUBJECT, {"orphans": [o.as_param() for o in found.orphans]})
            return None
        code = ctx.ask_confirmation(f"gc --expect {found.digest()}")
        return listing(found, f"⚠ To delete exactly these, send `!confirm {code}` within "
                              f"{spoken_duration(CONFIRM_TTL)}.")


def register_gc_command(registry: Registry, services: Services) -> None:
    command = GcCommand(services)
    registry.command("gc", permission=Permission.MANAGE,
                     summary="Find (and after !confirm delete) what no worker or team owns",
                     handler=command.gc,
                     args=[flag("dry_run", "only list the orphans"),
                           option("expect", TEXT, "the list a !confirm approves (the bot sets it)")])

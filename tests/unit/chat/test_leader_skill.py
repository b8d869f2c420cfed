"""The team-operations skill is the registry and the permission table, rendered: every command a
leader may send is in it with its syntax, and none it may not."""

from __future__ import annotations

from typing import Any, cast

from hiclaw_bot.chat import default_registry
from hiclaw_bot.chat.audit import register_audit_command
from hiclaw_bot.chat.gc import register_gc_command
from hiclaw_bot.chat.humans import register_human_commands
from hiclaw_bot.chat.leader_skill import render_team_operations
from hiclaw_bot.chat.permissions import TABLE, ActorKind, Permission, Rule
from hiclaw_bot.chat.registry import Registry
from hiclaw_bot.chat.teams import register_team_commands
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.config import Config
from hiclaw_bot.flows.services import Services


def product_registry() -> Registry:
    """Every command the app registers (handlers are never called here)."""
    services = cast(Services, None)
    config = cast(Config, None)
    registry = default_registry()
    register_worker_commands(registry, services)
    register_team_commands(registry, config)
    register_human_commands(registry, services)
    register_audit_command(registry)
    register_gc_command(registry, services)
    return registry


def test_the_skill_lists_exactly_what_a_leader_may_send() -> None:
    registry = product_registry()
    text = render_team_operations(registry)
    allowed: list[Any] = [c for c in registry if TABLE[c.permission][ActorKind.TEAM_LEADER] is not Rule.DENY]
    denied = [c for c in registry if TABLE[c.permission][ActorKind.TEAM_LEADER] is Rule.DENY]
    assert {"worker sleep", "worker wake", "worker create", "worker status"} <= {c.name for c in allowed}
    for command in allowed:
        assert f"| `{command.usage().replace('|', chr(92) + '|')}` |" in text, command.name
    table = text.split("| command |")[1].split("Not for you")[0]
    for command in denied:
        assert f"`!{command.name} " not in table, command.name
        assert f"`!{command.name}`" not in table, command.name
    assert "`!worker sleep <worker>`" in text
    assert "{team}" in text
    assert "{quota}" in text


def test_a_new_command_shows_up_without_touching_the_skill() -> None:
    registry = product_registry()

    async def handler(ctx: Any) -> None:
        return None

    registry.command("worker", "frobnicate", summary="Frobnicate a worker", handler=handler,
                     permission=Permission.OPERATE)
    registry.command("worker", "obliterate", summary="Obliterate a worker", handler=handler,
                     permission=Permission.MANAGE)
    text = render_team_operations(registry)
    assert "`!worker frobnicate`" in text.split("Not for you")[0]
    assert "`!worker obliterate`" in text.split("Not for you")[1]

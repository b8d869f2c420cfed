"""The orphan sweep: objects made by hand under our names in every system, found, shown, and
deleted after ``!confirm`` — and nothing of a live worker touched."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import sys

import yaml

from backends import WorkerSpec, WorkerState
from hiclaw_bot.chat.say import Conversation
from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.flows import names
from hiclaw_bot.flows.inventory import ALIAS, CONSUMER, PREFIX, ROUTE, RUNTIME, Orphan, inventory
from hiclaw_bot.types import RoomAlias
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import ask
from tests.integration.lifecycle.conftest import World


async def make_orphans(world: World) -> set[Orphan]:
    """One of each, as a crashed or hand-run tool would leave them."""
    services = world.services
    assert services.gateway is not None
    domain = services.domain
    ghost, team = unique("ghost"), unique("gteam")
    await services.matrix.ensure_room(names.worker_room_alias(ghost), name="left over")
    await services.matrix.ensure_room(names.team_room_alias(team), name="left over team")
    consumer = names.consumer(ghost)
    await services.gateway.ensure_consumer(consumer, secrets.token_hex(16))
    routes = await services.gateway.authorize(consumer, "all")
    await services.objects.put(f"{names.worker_prefix(ghost)}openclaw.json", b"{}")
    await services.objects.put(f"{names.team_prefix(team)}shared/notes.md", b"notes")
    await services.backend.create(WorkerSpec(name=ghost, image="hiclaw/worker-agent:1",
                                             command=[sys.executable, "-c", "pass"]))
    assert routes
    return {
        Orphan(ALIAS, names.full_alias(names.worker_room_alias(ghost), domain)),
        Orphan(ALIAS, names.full_alias(names.team_room_alias(team), domain)),
        Orphan(CONSUMER, consumer),
        *(Orphan(ROUTE, consumer, route) for route in routes),
        Orphan(PREFIX, names.worker_prefix(ghost)),
        Orphan(RUNTIME, ghost),  # not teams/<team>/: a deleted team's shared folder is kept on purpose
    }


async def test_gc_lists_exactly_the_orphans_and_deletes_them_after_confirm(world: World) -> None:
    live = unique("live")
    await world.create(live)
    orphans = await make_orphans(world)
    services = world.services

    assert set((await inventory(services)).orphans) == orphans

    # The periodic pass only reports them, once per distinct list, and deletes nothing.
    reports = await services.matrix.ensure_room(world.report_alias[1:].split(":")[0], name="Reports")
    for _ in range(2):
        assert set((await world.lifecycle.orphan_report_once()).orphans) == orphans
    said = [str(e.body) for e in await services.matrix.recent_messages(reports.room_id, limit=10)
            if e.sender == world.bot_user.user_id]
    assert [body for body in said if body.startswith("Orphan sweep")] == [
        f"Orphan sweep: {len(orphans)} object(s) under our names belong to no worker or team we know. "
        "`!gc --dry-run` lists them; `!gc` deletes them after a confirmation."]

    # The command line shows the same list.
    config_file = world.objects_dir.parent / "config.yaml"
    config_file.write_text(yaml.safe_dump(world.config_data))
    cli = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from hiclaw_bot.cli import main; main()", "gc", "--dry-run", "-c", str(config_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "COLUMNS": "250"})
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    assert f"{len(orphans)} orphan(s)" in out.decode()
    assert all(o.name in out.decode() for o in orphans), out.decode()

    async with world.bot(), Conversation(services.config.matrix.homeserver, world.owner_user.user_id,
                                         world.bot_user.user_id, device_id=f"T{secrets.token_hex(4)}") as talk:
        await talk.login(access_token=world.owner_user.access_token)
        await talk.open()

        _, answers = await ask(talk, "!gc --dry-run")
        shown = answers[-1].text
        assert f"{len(orphans)} orphan(s)" in shown
        assert all(o.name in shown for o in orphans)
        assert live not in shown
        assert "nothing was deleted" in shown
        assert set((await inventory(services)).orphans) == orphans  # the dry run changed nothing

        _, answers = await ask(talk, "!gc")
        code = re.search(r"!confirm ([A-Z0-9]{6})", answers[-1].text)
        assert code is not None, answers[-1].text
        _, answers = await ask(talk, f"!confirm {code.group(1)}", within=60)
        assert "✓ the leftovers are deleted — swept in " in answers[-1].text, answers[-1].text

    assert (await inventory(services)).orphans == []
    for orphan in orphans:
        if orphan.system == ALIAS:
            try:
                await services.matrix.resolve_alias(RoomAlias(orphan.name))
                raise AssertionError(f"{orphan.name} must be gone")
            except NotFoundError:
                pass
    ghosts = {o.name for o in orphans if o.system == RUNTIME}
    assert not ghosts & {s.name for s in await services.backend.list()}
    assert not {o.name for o in orphans if o.system == CONSUMER} & set(world.gateway.consumers)
    assert not any(o.name in allowed for o in orphans for allowed in world.gateway.route_allow.values())
    left = {p.relative_to(world.objects_dir).as_posix() for p in world.objects_dir.rglob("*") if p.is_file()}
    assert {p for p in left if live not in p and not p.startswith("teams/")} == set()
    assert any(p.startswith("teams/") and p.endswith("shared/notes.md") for p in left), "the team's work stays"

    # The live worker kept everything.
    alias = RoomAlias(names.full_alias(names.worker_room_alias(live), services.domain))
    assert await services.matrix.resolve_alias(alias)
    assert names.consumer(live) in world.gateway.consumers
    assert all(names.consumer(live) in allowed for allowed in world.gateway.route_allow.values())
    assert (world.objects_dir / names.worker_prefix(live) / "openclaw.json").exists()
    assert (await services.backend.status(live)).state is WorkerState.RUNNING

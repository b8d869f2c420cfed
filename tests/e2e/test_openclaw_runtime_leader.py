"""A Team Leader running real OpenClaw drives the bot: "Team Leader agent messages", end to end.

The leader's model (the simulator's echo model, scripted) answers an admin's request with a bot
command; OpenClaw posts it in the team room as the leader; the bot checks it against the leader's
permissions and runs it. The leader learnt the command from its ``team-operations`` skill, which
the bot rendered from its own registry and pushed to the leader only.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.openclaw_chat import answer_from, join, mention, no_worker_left_behind, openclaw_app
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import ChatSetup, ask, final_text

MATRIX_START = "[matrix] [default] starting provider"

__all__ = ["no_worker_left_behind"]  # the autouse fixture, imported to apply here


@pytest.mark.timeout(1200)  # OpenClaw takes ~1 min to start on two shared cores, a few times here
async def test_an_openclaw_leader_puts_a_member_to_sleep_through_the_bot(setup: ChatSetup, tmp_path: Path) -> None:
    async with openclaw_app(setup, tmp_path) as world:
        setup, gateway, app, talk = world.setup, world.gateway, world.app, world.talk
        team, lead, ann = unique("t"), unique("lead"), unique("ann")
        _, answers = await ask(talk, f"!team create {team} --leader {lead} --workers {ann} "
                                     f"--runtime reference --leader-runtime openclaw", within=400)
        if not final_text(answers).startswith("✓"):  # the leader's own words say why it stopped
            pytest.fail(f"{final_text(answers)}\nthe leader's log:\n{(await app.services.backend.logs(lead))[-4000:]}")
        leader = await app.store.workers.get(lead)
        member = await app.store.workers.get(ann)
        row = await app.store.teams.get(team)
        assert leader is not None
        assert member is not None
        assert row is not None
        assert row.room_id is not None
        assert leader.spec.get("runtime") == "openclaw"
        assert member.state == "Running"

        # Only the leader has the skill, with its team filled in.
        skill = (await app.services.objects.get(f"agents/{lead}/skills/team-operations/SKILL.md")).decode()
        assert f"You lead team **{team}**" in skill
        assert "`!worker sleep <worker>`" in skill
        assert not await app.services.objects.exists(f"agents/{ann}/skills/team-operations/SKILL.md")

        # The team's last step rewrote the leader's config with its members; OpenClaw reloads its
        # Matrix channel for that, dropping what arrives meanwhile ("Gateway is draining"). Wait
        # for the channel's second start, as its log shows it, before talking to the leader.
        deadline = time.monotonic() + 300
        while (await app.services.backend.logs(lead)).count(MATRIX_START) < 2:
            assert time.monotonic() < deadline, "the leader's Matrix channel never restarted"
            await asyncio.sleep(1.0)

        # The admin asks the leader; the leader's model answers with the command; the bot runs it.
        room = row.room_id
        lead_id = f"@{lead}:{setup.synapse.server_name}"
        await join(setup, setup.admin, room)
        gateway.models.script("put the member to sleep", f"!worker sleep {ann}")
        await mention(setup, setup.admin, room, lead_id, "please put the member to sleep")
        await answer_from(setup, setup.admin, room, lead_id, f"!worker sleep {ann}", within=240)
        deadline = time.monotonic() + 120
        while (row_ann := await app.store.workers.get(ann)) is not None and row_ann.state != "Sleeping":
            assert time.monotonic() < deadline, f"{ann} is {row_ann.state}, not asleep"
            await asyncio.sleep(0.5)
        assert (await app.services.backend.status(ann)).state.value == "stopped"
        ops = await app.store.ops.find(subject=f"worker:{ann}", limit=20)
        sleeps = [op for op in ops if op.kind == "worker.sleep"]
        assert [op.actor for op in sleeps] == [lead_id]

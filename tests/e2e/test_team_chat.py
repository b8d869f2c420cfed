"""Teams from chat on the whole app: bad input reaches no server; an admin creates a team; its leader,
speaking in the team room with its own account, sees only its team and grows it within its quota;
the admin deletes the team with its workers.

Workers run a shell loop (readiness: the process runs): this is about the team commands, the agent
has its own end-to-end test.
"""

from __future__ import annotations

import re
from pathlib import Path

from hiclaw_bot.app import running
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from hiclaw_bot.flows import names
from hiclaw_bot.flows.worker_steps import ACCESS_TOKEN
from hiclaw_bot.types import RoomAlias
from tests.e2e.test_worker_chat import account_exists, app_config, final_text
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import Account, ChatSetup, ask, progress_shows, server_admin, talking

LOOP = ["sh", "-c", "while true; do sleep 1; done"]


async def test_a_team_from_chat(setup: ChatSetup, tmp_path: Path) -> None:
    bot = await server_admin(setup)
    setup = ChatSetup(setup.synapse, bot, setup.admin, setup.stranger, setup.data_dir)
    async with HigressConsoleSimulator(initialized=True) as gateway:
        config = app_config(setup, bot, gateway, tmp_path)
        backend = config.backend.model_copy(update={
            "ready_check": "running", "process": config.backend.process.model_copy(update={"command": LOOP})})
        config = config.model_copy(update={"backend": backend})
        async with running(config) as app, talking(setup, setup.admin) as talk:
            team, leader, ann, cal = unique("red"), unique("lead"), unique("ann"), unique("cal")
            await app.store.workers.insert("taken", backend="process", state="Running", desired_state="Running",
                                           team="blue", model="qwen-max", image="img", spec={})
            calls_before = sum(gateway.calls.values())
            bad = {
                f"!team create {team} --leader {leader} --workers {ann},{leader}": "both the leader and a member",
                f"!team create {team} --leader {leader} --workers taken": "is in team `blue`",
                f"!team create {team} --leader {leader} --model gpt-9": "not allowed",
                f"!team create {team} --leader {leader} --workers a,b,c,d,e": "limited to 5 (quotas.max_workers",
                f"!team create Bad --leader {leader}": "NAME 'Bad'",
                f"!team add {team} {ann}": f"no team named `{team}`",
            }
            for command, expected in bad.items():
                _, answers = await ask(talk, command)
                assert expected in final_text(answers), (command, final_text(answers))
            assert sum(gateway.calls.values()) == calls_before, "bad input reached the gateway"
            assert not await account_exists(setup, leader)
            assert await app.services.backend.list() == []

            command, answers = await ask(talk, f"!team create {team} --leader {leader} --workers {ann} --max-workers 3",
                                   within=90)
            assert f"✓ team {team} is ready — created in " in final_text(answers), final_text(answers)
            assert await progress_shows(talk, command, "✓ join"), "progress was shown"
            room_id = await app.services.matrix.resolve_alias(
                RoomAlias(names.full_alias(names.team_room_alias(team), config.matrix.server_name)))

            # The leader, in its team room, with its own account.
            token = await app.store.secrets.get(f"worker:{leader}", ACCESS_TOKEN)
            assert token is not None
            as_leader = Account(names.user_id(leader, config.matrix.server_name), "", token.reveal())
            async with talking(setup, as_leader, room_id) as lead:
                _, answers = await ask(lead, "!worker list")
                assert ann in final_text(answers)
                assert "taken" not in final_text(answers)
                _, answers = await ask(lead, "!worker wake taken")
                assert "may not" in final_text(answers)
                _, answers = await ask(lead, f"!worker create {cal}", within=90)
                assert f"✓ {cal} is in team {team} — added in " in final_text(answers), final_text(answers)
                _, answers = await ask(lead, f"!worker create {unique('dan')}")
                assert "3 of its 3 workers" in final_text(answers), final_text(answers)
            assert (await app.store.workers.get(cal)).team == team  # type: ignore[union-attr]
            assert names.user_id(cal, config.matrix.server_name) in await app.services.matrix.joined_members(room_id)

            _, answers = await ask(talk, f"!team status {team}")
            assert all(w in final_text(answers) for w in (leader, ann, cal))
            _, answers = await ask(talk, f"!worker delete {leader}")
            assert "!confirm" not in final_text(answers), "refused before anyone is asked to confirm"
            assert f"!team delete {team}" in final_text(answers)

            _, answers = await ask(talk, f"!team delete {team} --with-workers")
            code = re.search(r"!confirm ([A-Z0-9]+)", final_text(answers))
            assert code is not None, final_text(answers)
            _, answers = await ask(talk, f"!confirm {code.group(1)}", within=90)
            assert f"✓ team {team} is gone — deleted in " in final_text(answers), final_text(answers)
            assert await app.services.backend.list() == []
            assert await app.store.teams.get(team) is None
            _, answers = await ask(talk, "!team list")
            assert "No teams yet" in final_text(answers)

"""Code execution on the bot's host through a worker's environment.

The attack: ``--env PYTHONWARNINGS=all:0:antigravity.x:0:0 --env "BROWSER=/bin/sh -c '…' %s"``. The
reference agent is Python: the warning filter imports ``antigravity``, which opens a web browser,
which runs ``$BROWSER``: a shell command, as the bot's user, when the process backend starts the
worker. ``!worker create`` is open to admins and leaders, ``!worker update`` to team-level humans too.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from backends import WorkerSpec
from backends.process import ProcessBackend
from hiclaw_bot.app import running
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import ask, talking
from tests.security.conftest import ChatSetup, answer, app_config, register


def payload(marker: Path) -> list[str]:
    return ["--env", "PYTHONWARNINGS=all:0:antigravity.x:0:0", "--env", f"\"BROWSER=/bin/sh -c 'touch {marker}' %s\""]


async def appears(path: Path, within: float = 4.0) -> bool:
    """Whether ``path`` appears within ``within`` seconds (the payload runs as a process starts)."""
    for _ in range(int(within / 0.1)):
        if await asyncio.to_thread(path.exists):
            return True
        await asyncio.sleep(0.1)
    return await asyncio.to_thread(path.exists)


async def test_create_and_update_refuse_interpreter_variables(secure: ChatSetup, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    member = await register(secure.synapse, "member")
    config = app_config(secure, tmp_path)
    async with running(config) as app:
        async with talking(secure, secure.admin) as talk:
            name = unique("evil")
            _, answers = await ask(talk, " ".join(["!worker", "create", name, *payload(marker)]), within=60)
            assert "PYTHONWARNINGS" in answer(answers), answer(answers)
            assert await app.store.workers.get(name) is None
            assert not await appears(marker)

            worker = unique("w")
            _, answers = await ask(talk, f"!worker create {worker}", within=60)
            assert answer(answers).startswith("✓"), answer(answers)
        # A team-level human of the worker's team may update it: the same payload, through update.
        await app.store.workers.update(worker, team="red")
        await app.store.humans.upsert("member", user_id=member.user_id, level="team", state="Active", teams=["red"])
        row = await app.store.workers.get(worker)
        assert row is not None
        assert row.room_id is not None
        spec_before = row.spec
        # The member talks to the bot in the worker's room (the bot's own invites go to humans of the team).
        await app.services.matrix.invite(row.room_id, member.user_id)
        await app.services.matrix.join(row.room_id, token=member.token)
        async with talking(secure, member, row.room_id) as talk:
            _, answers = await ask(talk, " ".join(["!worker", "update", worker, *payload(marker)]), within=60)
            assert "PYTHONWARNINGS" in answer(answers), answer(answers)
        row = await app.store.workers.get(worker)
        assert row is not None
        assert row.spec == spec_before
        assert not await appears(marker)


async def test_the_process_backend_drops_such_variables_even_if_stored(tmp_path: Path) -> None:
    """Defence in depth: a spec stored before the rule existed still never runs the payload."""
    marker = tmp_path / "pwned"
    backend = ProcessBackend(unique("sec"), tmp_path / "workers")
    spec = WorkerSpec(name=unique("old"), image="none", command=[sys.executable, "-c", "import time; time.sleep(60)"],
                      env={"PYTHONWARNINGS": "all:0:antigravity.x:0:0",
                           "BROWSER": f"/bin/sh -c 'touch {marker}' %s", "GREETING": "hello"})
    await backend.create(spec)
    try:
        await backend.start(spec.name)
        assert not await appears(marker)
        result = await backend.exec(spec.name, [sys.executable, "-c", "import os; print(os.environ.get('GREETING'))"],
                                    10)
        assert result.stdout.strip() == "hello"
    finally:
        await backend.delete(spec.name)

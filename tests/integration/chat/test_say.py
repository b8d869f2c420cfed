"""``hiclaw-bot say``: a person's side of the conversation, as a library call and as the CLI."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import yaml

from hiclaw_bot.chat.say import BotMessage, say
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from tests.integration.chat.conftest import ChatSetup, running_bot

ROOT = Path(__file__).resolve().parents[3]


async def test_say_follows_edits_until_the_final_answer(setup: ChatSetup) -> None:
    config = setup.config(admin_password=setup.admin.password)
    heard: list[BotMessage] = []
    async with running_bot(config, setup.db_path):
        assert await say(config, "!demo run spoken --steps 2 --delay 0.3", show=heard.append, within=30)
        assert await say(config, "!help op list", show=heard.append, within=30)  # the same DM again
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                           access_token=setup.admin.token) as client:
        assert len(await client.joined_rooms()) == 1  # the second say found the DM of the first
    assert heard[0].text.startswith("⏳ running: demo.run demo:spoken")
    assert any(m.edited for m in heard)
    finals = [m for m in heard if m.final]
    assert "succeeded" in finals[0].text
    assert "!op list" in finals[1].text


async def test_the_say_command(setup: ChatSetup) -> None:
    config = setup.config()
    path = setup.data_dir / "say.yaml"
    matrix = config.matrix.model_dump(mode="json")
    matrix["bot"]["password"] = setup.bot.password
    matrix["registration"]["token"] = setup.synapse.registration_token
    path.write_text(yaml.safe_dump({"matrix": matrix, "data_dir": str(setup.data_dir),
                                    "storage": {"kind": "local", "directory": str(setup.data_dir / "o")}}))
    async with running_bot(config, setup.db_path):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from hiclaw_bot.cli import main; main()",
            "say", "--config", str(path), "--timeout", "30", "!op list",
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HICLAW_SAY_PASSWORD": setup.admin.password, "COLUMNS": "200"},
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert "No operations yet." in out.decode()
    assert setup.admin.password not in out.decode() + err.decode()

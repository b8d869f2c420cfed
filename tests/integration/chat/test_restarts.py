"""Restart safety against a real Synapse: no command answered twice, none lost, old ones not run."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import yaml

from hiclaw_bot.chat.record import SYNC_KEY
from hiclaw_bot.chat.say import BotMessage
from storage import Operation, Store
from tests.integration.chat.conftest import ChatSetup, answers_to, ask, running_bot, talking

ROOT = Path(__file__).resolve().parents[3]


async def test_a_restart_replaying_the_sync_answers_nothing_twice(setup: ChatSetup) -> None:
    config = setup.config()
    async with running_bot(config, setup.db_path) as running, talking(setup, setup.admin) as talk:
        before = await running.store.sync.get(SYNC_KEY)
        first, _ = await ask(talk, "!help")
        room = talk.room_id
    assert before is not None
    assert room is not None

    # As if the process had died after marking the command but before the token moved on:
    store = await Store.open(setup.db_path)
    try:
        await store.sync.set(SYNC_KEY, before)
    finally:
        await store.close()

    async with talking(setup, setup.admin, room) as talk:
        second = await talk.send("!op list")  # sent while the bot is down
        async with running_bot(config, setup.db_path):
            [answer] = [m async for m in talk.replies(second, within=20)]
            assert answer.text == "No operations yet."
            third, _ = await ask(talk, "!help")

    for command in (first, second, third):
        assert len(await answers_to(setup, setup.admin, room, command)) == 1, command


async def test_commands_older_than_the_limit_are_answered_not_run(setup: ChatSetup) -> None:
    config = setup.config(command_max_age="1.5s")
    async with running_bot(config, setup.db_path), talking(setup, setup.admin) as talk:
        room = talk.room_id
    async with talking(setup, setup.admin, room) as talk:
        late = await talk.send("!demo run late")
        await asyncio.sleep(2.0)
        async with running_bot(config, setup.db_path) as running:
            [answer] = [m async for m in talk.replies(late, within=20)]
            assert answer.text.startswith("ignored: sent while the bot was down for 2 seconds")
            assert await running.store.ops.find() == []
            fresh, [reply] = await ask(talk, "!op list")
            assert reply.text == "No operations yet."
            assert fresh


@asynccontextmanager
async def bot_process(setup: ChatSetup, config_path: Path, **env: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """The bot in a child process; killed with SIGKILL on exit if still alive."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.chat.bot_app", str(config_path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        if line.strip() != b"ready":
            assert process.stderr is not None
            raise AssertionError(f"the bot did not start: {(await process.stderr.read()).decode()[-2000:]}")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


def write_config(setup: ChatSetup) -> Path:
    config = setup.config()
    config_path = setup.data_dir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config.model_dump(mode="json") | {
        "matrix": config.matrix.model_dump(mode="json") | {
            "bot": {"localpart": config.matrix.bot.localpart, "password": setup.bot.password, "device_id": "HICLAWBOT"},
            "registration": {"mode": "token", "token": setup.synapse.registration_token},
        },
        "storage": {"kind": "local", "directory": str(setup.data_dir / "objects")},
        "data_dir": str(setup.data_dir),
    }))
    return config_path


async def only_op(setup: ChatSetup) -> Operation:
    store = await Store.open(setup.db_path)
    try:
        [op] = await store.ops.find()
    finally:
        await store.close()
    return op


async def test_a_result_lost_to_a_crash_is_told_once_after_the_restart(setup: ChatSetup) -> None:
    """Killed after the operation finished, before its final message: the next start tells it, in
    the command's thread, once; a start after that tells nothing more."""
    config_path = write_config(setup)
    marker = setup.data_dir / "killed-before-result"
    async with bot_process(setup, config_path, HICLAW_TEST_KILL_BEFORE_RESULT=str(marker)) as first, \
            talking(setup, setup.admin) as talk:
        started = await talk.send("!demo run told --steps 2 --delay 0.05")
        assert await asyncio.wait_for(first.wait(), 30) == -signal.SIGKILL
        assert marker.exists()
        op = await only_op(setup)
        assert (op.state, op.reported_at) == ("succeeded", None)
        async with bot_process(setup, config_path):
            told = [m async for m in talk.replies(started, within=30)]
        async with bot_process(setup, config_path):
            await asyncio.sleep(2)  # a third start has nothing left to tell
    room = talk.room_id
    assert room is not None
    assert told[-1].final
    assert "succeeded" in told[-1].text
    finals = [a for a in await answers_to(setup, setup.admin, room, started) if a.content["io.hiclaw.reply"]["final"]]
    assert len(finals) == 1
    assert (await only_op(setup)).reported_at == op.finished_at


async def test_sigkill_mid_operation_then_restart(setup: ChatSetup) -> None:
    config_path = write_config(setup)
    async with bot_process(setup, config_path) as first, talking(setup, setup.admin) as talk:
        helped, _ = await ask(talk, "!help")
        started = await talk.send("!demo run crash --steps 4 --delay 0.6")
        progress: list[BotMessage] = []
        async for message in talk.replies(started, within=20):
            progress.append(message)
            if message.edited and "✓ step-1" in message.text:
                break
        first.send_signal(signal.SIGKILL)
        await first.wait()
        room = talk.room_id
        assert room is not None
        while_down = await talk.send("!help")
        async with bot_process(setup, config_path):
            rest = [m async for m in talk.replies(started, within=30)]
            [late] = [m async for m in talk.replies(while_down, within=20)]
            assert "!op list" in late.text

    final = rest[-1]
    assert final.final
    assert "succeeded" in final.text
    progress_ids = {m.event_id for m in progress + rest if not m.final}
    assert len(progress_ids) == 1, "the restarted bot posted a second progress message"
    for command in (helped, while_down):
        assert len(await answers_to(setup, setup.admin, room, command)) == 1
    op_answers = await answers_to(setup, setup.admin, room, started)
    assert sorted(a.content["io.hiclaw.reply"]["final"] for a in op_answers) == [False, True]
    store = await Store.open(setup.db_path)
    try:
        [op] = await store.ops.find()
        steps = await store.steps.of(op.op_id)
    finally:
        await store.close()
    assert op.state == "succeeded"
    assert op.progress_event_id in progress_ids
    assert steps[0].calls == 1  # step-1 finished before the kill and was not run again


async def test_a_backlog_longer_than_the_timeline_limit_is_fetched(setup: ChatSetup) -> None:
    config = setup.config()
    async with running_bot(config, setup.db_path, timeline_limit=3), talking(setup, setup.admin) as talk:
        room = talk.room_id
    async with talking(setup, setup.admin, room) as talk:
        sent = [await talk.send(f"!help op {verb}") for verb in ("list", "show", "retry", "abort", "list", "show")]
        async with running_bot(config, setup.db_path, timeline_limit=3):
            for event_id in sent:
                [answer] = [m async for m in talk.replies(event_id, within=20)]
                assert answer.text.startswith("`!op ")
    assert room is not None
    for event_id in sent:
        assert len(await answers_to(setup, setup.admin, room, event_id)) == 1

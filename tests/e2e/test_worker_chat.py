"""The product from chat: the whole app (``hiclaw_bot.app.running``) on real Synapse, the gateway
simulator, a local object store and the process backend running the reference agent.

Bad input must get a clear answer and cause no external call: the gateway simulator's call
counter, the homeserver's account list and the backend's worker list prove it at the servers.
"""

from __future__ import annotations

import re
from pathlib import Path

from hiclaw_bot.app import running
from hiclaw_bot.clients.matrix_admin import MatrixAdmin
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import (
    Account,
    ChatSetup,
    ask,
    final_text,
    gateway_section,
    progress_shows,
    server_admin,
    talking,
)


def app_config(setup: ChatSetup, bot: Account, gateway: HigressConsoleSimulator, tmp: Path) -> Config:
    return setup.app_config(tmp, bot=bot, gateway=gateway_section(gateway),
                            backend={"kind": "process", "instance": unique("e2e")},
                            quotas={"allowed_models": ["qwen-max", "qwen-plus"], "max_workers": 5},
                            lifecycle={"ready_timeout": "40s"}, api={"enabled": False})


async def account_exists(setup: ChatSetup, localpart: str) -> bool:
    """Synapse gives every registered account a display name (its localpart); none means no account."""
    async with MatrixAdmin(setup.synapse.url, server_name=setup.synapse.server_name,
                           access_token=setup.synapse.admin_token) as probe:
        return await probe.displayname(probe.user_id(localpart)) is not None


async def test_worker_life_from_chat_and_bad_input_touches_nothing(setup: ChatSetup, tmp_path: Path) -> None:
    bot = await server_admin(setup)
    setup = ChatSetup(setup.synapse, bot, setup.admin, setup.stranger, setup.data_dir)
    async with HigressConsoleSimulator(initialized=True) as gateway:
        config = app_config(setup, bot, gateway, tmp_path)
        async with running(config) as app, talking(setup, setup.admin) as talk:
            calls_before = sum(gateway.calls.values())
            bob = unique("bob")
            bad = {
                "!worker create Bad_Name": "names use lowercase letters",
                f"!worker create {bob} --model gpt-9": "not allowed",
                "!worker status ghost": "no worker named",
                "!worker wake ghost": "no worker named",
                "!worker create": "missing",
                f"!worker create {bob} --skills no-such-skill": "Unknown skill",
            }
            for command, expected in bad.items():
                _, answers = await ask(talk, command)
                assert expected in final_text(answers), (command, final_text(answers))
            assert sum(gateway.calls.values()) == calls_before, "bad input reached the gateway"
            assert not await account_exists(setup, bob)
            assert await app.services.backend.list() == []

            worker = unique("alice")
            command, answers = await ask(talk, f"!worker create {worker}", within=60)
            assert f"✓ {worker} is running — created in " in final_text(answers), final_text(answers)
            assert await progress_shows(talk, command, "✓ ready"), "progress was shown"
            assert await account_exists(setup, worker), "the probe sees accounts that exist"
            _, answers = await ask(talk, f"!worker create {worker}")
            assert "already exists" in final_text(answers)
            # Two commands on one worker at once: the second is refused, and never stops the worker.
            first = await talk.send(f"!worker update {worker} --env MOOD=busy")
            _, answers = await ask(talk, f"!worker sleep {worker}")
            assert "busy" in final_text(answers).lower(), final_text(answers)
            updated = [m async for m in talk.replies(first, within=60)]
            assert f"✓ {worker} runs its new settings — updated in " in final_text(updated), final_text(updated)
            row = await app.store.workers.get(worker)
            assert row is not None
            assert row.state == "Running"
            assert (await app.services.backend.status(worker)).state.value == "running"

            _, answers = await ask(talk, "!worker list")
            assert worker in final_text(answers)
            assert "Running" in final_text(answers)

            _, answers = await ask(talk, f"!worker delete {worker}")
            code = re.search(r"!confirm ([A-Z0-9]+)", final_text(answers))
            assert code is not None, final_text(answers)
            assert f"consumer worker-{worker}" not in str(gateway.consumers)
            _, answers = await ask(talk, f"!confirm {code.group(1)}", within=60)
            assert f"✓ {worker} is gone — deleted in " in final_text(answers), final_text(answers)
            assert f"worker-{worker}" not in gateway.consumers
            assert await app.services.backend.list() == []
            assert await app.store.workers.get(worker) is None

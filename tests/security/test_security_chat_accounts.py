"""Account takeover: a worker name only ever maps to an account this bot registered.

The attack: ``!worker create victim`` where ``@victim`` was registered outside the bot. The account
step found our password refused, read the ledger, found the ``intended`` row the engine had just
written, and reset victim's password: the bot then held the only working login. The same name
trick reached the configured admins' accounts and the bot's own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hiclaw_bot.app import running
from hiclaw_bot.flows import worker as flows
from tests.integration.chat.conftest import ask, talking
from tests.security.conftest import ChatSetup, answer, app_config, logs_in, register


def localpart(user_id: str) -> str:
    return user_id[1:].split(":")[0]


async def test_an_admin_cannot_take_over_an_outside_account_or_an_admins(secure: ChatSetup, tmp_path: Path) -> None:
    victim = await register(secure.synapse, "victim")
    config = app_config(secure, tmp_path)
    async with running(config) as app, talking(secure, secure.admin) as talk:
        for target, reason in ((victim, "did not register"), (secure.admin, "an admin's account"),
                               (secure.bot, "the bot's own account")):
            _, answers = await ask(talk, f"!worker create {localpart(target.user_id)}", within=60)
            assert reason in answer(answers), answer(answers)
            assert await app.store.workers.get(localpart(target.user_id)) is None
        assert await app.services.backend.list() == []
    assert await logs_in(secure, victim), "the victim's password no longer opens its account"
    assert await logs_in(secure, secure.admin)
    assert await logs_in(secure, secure.bot)


async def test_the_account_step_refuses_an_account_it_did_not_make(secure: ChatSetup, tmp_path: Path) -> None:
    """Past the chat check (an operation submitted directly, a race with a registration), the
    account step itself must not take the account: an ``intended`` ledger row is no proof."""
    victim = await register(secure.synapse, "victim")
    name = localpart(victim.user_id)
    config = app_config(secure, tmp_path)
    async with running(config) as app:
        submitted = await app.engine.submit(flows.CREATE, flows.subject(name),
                                     {"name": name, "model": "qwen-max", "image": config.backend.default_image,
                                      "team": None, "skills": [], "mcp": [], "env": {}, "idle_timeout": None},
                                     actor=secure.admin.user_id)
        done = await asyncio.wait_for(app.engine.wait(submitted.op.op_id), 60)
        assert done.state != "succeeded"
        assert "did not register" in (done.error or ""), done.error
        assert await app.services.backend.list() == []
    assert await logs_in(secure, victim), "the victim's password no longer opens its account"

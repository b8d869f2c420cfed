"""The running bot (``hiclaw_bot.app.running``) serves the API: ready once its Matrix sync is live,
its metrics follow the engine, and admins read the audit log in chat with ``!audit``."""

from __future__ import annotations

import aiohttp

from hiclaw_bot.app import running
from hiclaw_bot.config import Config
from hiclaw_bot.devstack.service import free_port
from tests.fixtures.synapse import unique
from tests.integration.chat.conftest import ChatSetup, ask, setup, talking

__all__ = ["setup"]

TOKEN = "app-api-token-0123456789abcdef0123456789"


def app_config(setup: ChatSetup, port: int) -> Config:
    return setup.app_config(setup.data_dir, backend={"kind": "process", "instance": unique("api")},
                            api={"listen": f"127.0.0.1:{port}", "token": TOKEN, "token_name": "ci"})


async def test_the_running_bot_serves_the_api_and_answers_audit(setup: ChatSetup) -> None:
    port = free_port()
    config = app_config(setup, port)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with running(config) as app, aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
        assert app.api is not None
        async with http.get("/readyz") as response:
            ready = await response.json()
            assert response.status == 200, ready
        async with http.get("/api/v1/workers") as response:
            assert response.status == 401
        async with http.post("/api/v1/workers/ghost/wake", headers=headers) as response:
            assert response.status == 404

        async with talking(setup, setup.admin) as talk:
            _, answers = await ask(talk, "!worker wake ghost")
            assert "no worker named" in answers[-1].text
            _, answers = await ask(talk, "!audit")
        text = answers[-1].text
        assert "worker wake" in text
        assert "api:ci" in text, "the API's refusal is in the same log"
        assert setup.admin.user_id in text

        async with http.get("/api/v1/audit", headers=headers, params={"worker": "ghost"}) as response:
            entries = (await response.json())["entries"]
        decisions = [(e["actor"], e["decision"]) for e in entries]
        assert decisions == [(setup.admin.user_id, "not-found"), ("api:ci", "not-found")]

    async with aiohttp.ClientSession() as http:
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=2)):
                raise AssertionError("the API still answers after the bot stopped")
        except aiohttp.ClientConnectionError:
            pass

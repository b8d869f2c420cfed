"""The simulator's data plane: OpenAI-compatible calls behind consumer key-auth, answered by the
scripted echo model; authorizing and deauthorizing go through the real client and console API."""

from __future__ import annotations

import json

import aiohttp

from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from tests.integration.gateway.conftest import ADMIN


async def _client(sim: HigressConsoleSimulator) -> HigressClient:
    async with aiohttp.ClientSession() as session:
        await session.post(f"{sim.url}/system/init",
                           json={"adminUser": {"name": ADMIN, "displayName": ADMIN, "password": "pw-console"}})
    return HigressClient(sim.url, ADMIN, "pw-console", timeout=2.0, backoff=0.01)


async def _chat(sim: HigressConsoleSimulator, key: str | None, text: str, *, model: str = "qwen-max",
                stream: bool = False) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    context = "<<<BEGIN_OPENCLAW_INTERNAL_CONTEXT>>>\nConversation data\n<<<END_OPENCLAW_INTERNAL_CONTEXT>>>"
    body = {"model": model, "messages": [{"role": "system", "content": "be brief"},
                                         {"role": "user", "content": [{"type": "text", "text": text}]},
                                         {"role": "user", "content": context}], "stream": stream}
    async with aiohttp.ClientSession() as session, \
            session.post(f"{sim.gateway_url}/v1/chat/completions", json=body, headers=headers) as response:
        raw = await response.text()
    if response.status != 200:
        return response.status, raw
    if not stream:
        return 200, json.loads(raw)["choices"][0]["message"]["content"]
    chunks = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: {")]
    assert raw.rstrip().endswith("data: [DONE]")
    return 200, "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)


async def test_key_auth_follows_the_allow_list_and_the_echo_model_answers(sim: HigressConsoleSimulator) -> None:
    async with await _client(sim) as gateway:
        await gateway.ensure_consumer("worker-ann", "key-ann")
        assert (await _chat(sim, "key-ann", "hello"))[0] == 401  # a consumer, not on the route
        assert (await _chat(sim, None, "hello"))[0] == 401
        await gateway.authorize("worker-ann", "all")
        assert await _chat(sim, "key-ann", "hello there") == (200, "echo: hello there")
        sim.models.script("what is the plan", "!worker sleep ann")
        assert await _chat(sim, "key-ann", "tell me what is the plan", stream=True) == (200, "!worker sleep ann")
        assert await _chat(sim, "key-ann", "again", model="qwen-plus", stream=True) == (200, "echo: again")
        await gateway.deauthorize("worker-ann", "all")
        status, body = await _chat(sim, "key-ann", "hello")
        assert status == 401
        assert "Key Auth" in body
    calls = [(c.consumer, c.model, c.status) for c in sim.models.calls]
    assert calls == [("worker-ann", "qwen-max", 401), (None, "qwen-max", 401), ("worker-ann", "qwen-max", 200),
                     ("worker-ann", "qwen-max", 200), ("worker-ann", "qwen-plus", 200),
                     ("worker-ann", "qwen-max", 401)]


async def test_models_are_listed_to_an_authorized_consumer(sim: HigressConsoleSimulator) -> None:
    async with await _client(sim) as gateway:
        await gateway.ensure_consumer("worker-bo", "key-bo")
        await gateway.authorize("worker-bo", "all")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{sim.gateway_url}/v1/models") as response:
            assert response.status == 401
        async with session.get(f"{sim.gateway_url}/v1/models", headers={"Authorization": "Bearer key-bo"}) as response:
            models = [m["id"] for m in (await response.json())["data"]]
    assert "qwen-max" in models

"""The API served on a free port over the real worker flows: Synapse, the gateway simulator, a
local object store and the process backend (the ``stack`` of the flow tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from pydantic import SecretStr

from hiclaw_bot.api import ApiState, make_app, serving
from tests.integration.flows.conftest import Stack, stack

__all__ = ["Live", "stack"]

TOKEN = "integration-token-abcdef0123456789abcdef"


@dataclass
class Live:
    url: str
    state: ApiState
    stack: Stack
    session: aiohttp.ClientSession
    headers: dict[str, str]


@pytest.fixture
async def live(stack: Stack) -> AsyncIterator[Live]:
    state = ApiState(store=stack.store, engine=stack.engine, backend=stack.services.backend,
                     token=SecretStr(TOKEN), token_name="ci")
    stop = stack.engine.bus.listen(state.metrics.observe)
    try:
        async with serving(make_app(state)) as url, aiohttp.ClientSession(url) as session:
            yield Live(url, state, stack, session, {"Authorization": f"Bearer {TOKEN}"})
    finally:
        stop()

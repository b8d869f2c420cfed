"""A Higress console simulator per test, which must end the test without OpenAPI violations."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.devstack.higress_sim import DEFAULT_AI_ROUTES, HigressConsoleSimulator

ADMIN = "admin"
ADMIN_PASSWORD = "console-admin-password"
MCP_SERVERS: list[dict[str, Any]] = [
    {"name": "github", "type": "OPEN_API", "domains": [], "description": "GitHub tools"},
    {"name": "github-enterprise", "type": "OPEN_API", "domains": []},
    {"name": "search", "type": "DIRECT_ROUTE", "domains": [],
     "consumerAuthInfo": {"type": "key-auth", "enable": True, "allowedConsumers": ["manager"]}},
]
SECOND_ROUTE: dict[str, Any] = {
    "name": "reasoning",
    "domains": [],
    "pathPredicate": {"matchType": "PRE", "matchValue": "/reasoning", "caseSensitive": False},
    "upstreams": [{"provider": "default", "weight": 100, "modelMapping": {}}],
    "authConfig": {"enabled": True, "allowedCredentialTypes": ["key-auth"], "allowedConsumers": ["manager"]},
}


@pytest.fixture
async def sim() -> AsyncIterator[HigressConsoleSimulator]:
    """A fresh (uninitialised) console with the default AI route, a second one, and three MCP servers.

    A test that provokes violations on purpose clears ``sim.violations`` after asserting them.
    """
    async with HigressConsoleSimulator(ai_routes=[*DEFAULT_AI_ROUTES, SECOND_ROUTE], mcp_servers=MCP_SERVERS) as s:
        yield s
        assert s.violations == [], "the simulator saw calls the OpenAPI document does not allow"


@pytest.fixture
async def gateway(sim: HigressConsoleSimulator) -> AsyncIterator[HigressClient]:
    """A client of ``sim`` with short backoffs, so retry tests stay fast."""
    async with HigressClient(sim.url, ADMIN, ADMIN_PASSWORD, timeout=2.0, backoff=0.01) as client:
        yield client

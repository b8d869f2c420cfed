"""Concurrent authorizations must not lose each other, even with other writers on the same route.

Upstream lost updates here (AgentTeams #469: "5 created, 2 always 403"): GET-modify-PUT of a
whole allow list, by concurrent writers. These tests run the console bug #744 as well (the default
of the simulator), so a writer's stale 409 corrupts the data plane until someone writes again.
"""

from __future__ import annotations

import asyncio
import base64

import aiohttp

from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from tests.integration.gateway.conftest import ADMIN, ADMIN_PASSWORD

ROUTE = "/v1/ai/routes/default"


def _workers(prefix: str, count: int) -> list[str]:
    return [f"worker-{prefix}{i:02d}" for i in range(count)]


def _assert_consistent(sim: HigressConsoleSimulator, expected: set[str]) -> None:
    console = sim.ai_routes["default"]["authConfig"]["allowedConsumers"]
    assert expected <= set(console), f"lost: {sorted(expected - set(console))}"
    assert len(console) == len(set(console)), "duplicates in the allow list"
    assert sim.route_allow["default"] == console, "the data plane disagrees with the console"


async def test_fifty_concurrent_authorizations(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    names = _workers("a", 50)
    await asyncio.gather(*(gateway.authorize(name, ["default"]) for name in names))
    _assert_consistent(sim, set(names))
    assert sim.count("PUT", ROUTE) <= 100
    await asyncio.gather(*(gateway.deauthorize(name, ["default"]) for name in names))
    assert sim.route_allow["default"] == []


async def test_fifty_with_a_second_client_and_a_raw_writer(sim: HigressConsoleSimulator,
                                                           gateway: HigressClient) -> None:
    names, others = _workers("a", 50), _workers("b", 20)
    stop = asyncio.Event()
    raw_writes = 0

    async def raw_writer() -> None:
        """Another tool editing the route by hand: GET-modify-PUT with the version, until a PUT succeeds.

        It never stops on a 409: after #744 that would leave the data plane in its stale state.
        """
        nonlocal raw_writes
        auth = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()}
        async with aiohttp.ClientSession(headers=auth) as http:
            while True:
                async with http.get(sim.url + ROUTE) as response:
                    route = (await response.json())["data"]
                route["customLabels"] = {"edited": str(raw_writes)}
                async with http.put(sim.url + ROUTE, json=route) as response:
                    assert response.status in (200, 409)
                    if response.status == 409:
                        continue
                raw_writes += 1
                if stop.is_set():
                    return
                await asyncio.sleep(0.005)

    await gateway.list_ai_routes()  # initialise the console before the raw writer logs in with Basic
    writer = asyncio.create_task(raw_writer())
    async with HigressClient(sim.url, ADMIN, ADMIN_PASSWORD, backoff=0.01, max_attempts=50) as second:
        await asyncio.gather(
            *(gateway.authorize(name, ["default"]) for name in names),
            *(second.authorize(name, ["default"]) for name in others),
        )
    stop.set()
    await writer
    assert raw_writes > 0
    _assert_consistent(sim, set(names) | set(others))
    assert sim.ai_routes["default"]["customLabels"] == {"edited": str(raw_writes - 1)}

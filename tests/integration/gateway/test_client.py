"""The Higress client against the console simulator over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import logging

import aiohttp
import pytest

from hiclaw_bot.clients.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    TransientClientError,
    UnauthorizedError,
)
from hiclaw_bot.clients.higress import ConsumerInUseError, HigressClient
from hiclaw_bot.devstack.higress_sim import HigressConsoleSimulator
from tests.integration.gateway.conftest import ADMIN, ADMIN_PASSWORD

KEY = "sk-gateway-key-alice-9f8e7d6c5b4a"
ROUTE = "/v1/ai/routes/default"


async def test_fresh_console_is_initialised_then_logged_in(sim: HigressConsoleSimulator,
                                                           gateway: HigressClient) -> None:
    assert await gateway.list_consumers() == []
    assert [r.name for r in await gateway.list_ai_routes()] == ["default", "reasoning"]
    assert sim.count("POST", "/system/init") == 1
    assert sim.count("POST", "/session/login") == 2  # refused before init, accepted after
    assert gateway.stats.logins == 2


async def test_relogin_after_the_session_is_invalidated(sim: HigressConsoleSimulator,
                                                        gateway: HigressClient) -> None:
    await gateway.list_consumers()
    sim.expire_sessions()
    assert await gateway.list_consumers() == []  # the 401 call is repeated after a new login
    assert sim.count("GET", "/v1/consumers") == 3
    assert sim.count("POST", "/system/init") == 1


async def test_wrong_password_is_unauthorized(sim: HigressConsoleSimulator, gateway: HigressClient,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await gateway.list_consumers()  # initialises the console with the right password
    async with HigressClient(sim.url, ADMIN, "not-the-password") as intruder:
        with pytest.raises(UnauthorizedError) as caught:
            await intruder.list_consumers()
        assert "not-the-password" not in str(caught.value)
        assert "not-the-password" not in repr(intruder)
    assert "not-the-password" not in caplog.text
    assert ADMIN_PASSWORD not in caplog.text


async def test_ensure_consumer_upserts_and_verifies(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    await gateway.ensure_consumer("worker-alice", KEY)
    await gateway.ensure_consumer("worker-alice", KEY)
    await gateway.ensure_consumer("worker-alice", KEY + "-rotated")
    assert sim.consumers["worker-alice"]["credentials"][0]["values"] == [KEY + "-rotated"]
    assert sim.count("GET", "/v1/consumers/worker-alice") == 3
    assert await gateway.list_consumers() == ["worker-alice"]


async def test_ensure_consumer_treats_409_as_a_lost_write(sim: HigressConsoleSimulator,
                                                          gateway: HigressClient) -> None:
    sim.inject("POST", "/v1/consumers", status=409)  # a WasmPlugin race: nothing was written
    await gateway.ensure_consumer("worker-alice", KEY)
    assert sim.count("POST", "/v1/consumers") == 2
    assert sim.is_authorized(KEY, ai_route="default") is False  # exists, but not authorized yet
    assert "worker-alice" in sim.consumers


async def test_ensure_consumer_accepts_a_write_applied_before_a_failure(sim: HigressConsoleSimulator,
                                                                       gateway: HigressClient) -> None:
    sim.inject("POST", "/v1/consumers", status=409, apply=True)
    await gateway.ensure_consumer("worker-alice", KEY)
    assert sim.count("POST", "/v1/consumers") == 1


async def test_key_in_use_is_invalid_and_secret_free(gateway: HigressClient,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await gateway.ensure_consumer("worker-alice", KEY)
    with pytest.raises(InvalidRequestError, match="already in use by consumer: worker-alice") as caught:
        await gateway.ensure_consumer("worker-bob", KEY)
    assert KEY not in str(caught.value)
    assert KEY not in caplog.text


async def test_authorize_and_deauthorize(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    await gateway.ensure_consumer("worker-alice", KEY)
    assert await gateway.authorize("worker-alice") == ["default", "reasoning"]
    assert sim.is_authorized(KEY, ai_route="default")
    assert sim.is_authorized(KEY, ai_route="reasoning")
    allow = await gateway.route_allow_lists()
    assert allow == {"default": ("worker-alice",), "reasoning": ("manager", "worker-alice")}
    puts = sim.count("PUT", ROUTE)
    await gateway.authorize("worker-alice", ["default"])  # already there: no write
    assert sim.count("PUT", ROUTE) == puts
    assert await gateway.deauthorize("worker-alice", ["reasoning"]) == ["reasoning"]
    assert await gateway.route_allow_lists() == {"default": ("worker-alice",), "reasoning": ("manager",)}
    await gateway.deauthorize("worker-alice", ["default", "no-such-route"])  # gone counts as done
    assert not sim.is_authorized(KEY, ai_route="default")
    with pytest.raises(NotFoundError):
        await gateway.authorize("worker-alice", ["no-such-route"])
    with pytest.raises(TypeError):
        await gateway.authorize("worker-alice", "default")


async def test_bug_744_a_stale_put_that_rewrote_the_data_plane_is_repaired(
        sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    await gateway.list_ai_routes()
    sim.inject("PUT", ROUTE, delay=0.3)  # hold our PUT while another writer gets in first
    task = asyncio.create_task(gateway.authorize("worker-alice", ["default"]))
    while not sim.count("PUT", ROUTE):  # noqa: ASYNC110 - polling the simulator's call counter
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN}:{ADMIN_PASSWORD}".encode()).decode()}
        async with http.get(sim.url + ROUTE, headers=auth) as response:
            route = (await response.json())["data"]
        route["authConfig"]["allowedConsumers"].append("worker-external")
        async with http.put(sim.url + ROUTE, json=route, headers=auth) as response:
            assert response.status == 200
    await task
    # Our stale PUT answered 409 after REPLACing the data-plane list without "worker-external";
    # the client read the route again and wrote both, so console and data plane agree again.
    assert gateway.stats.conflicts == 1
    assert sim.ai_routes["default"]["authConfig"]["allowedConsumers"] == ["worker-external", "worker-alice"]
    assert sim.route_allow["default"] == ["worker-external", "worker-alice"]


async def test_a_write_applied_before_a_409_is_not_repeated(sim: HigressConsoleSimulator,
                                                            gateway: HigressClient) -> None:
    sim.inject("PUT", ROUTE, status=409, apply=True)
    await gateway.authorize("worker-alice", ["default"])
    assert sim.count("PUT", ROUTE) == 1  # the re-GET shows the write: no second PUT
    assert gateway.stats.conflicts == 1
    assert sim.route_allow["default"] == ["worker-alice"]


async def test_a_stale_version_is_reread_and_retried(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    sim.inject("PUT", ROUTE, status=409)  # nothing written: the client must GET again and PUT again
    await gateway.authorize("worker-alice", ["default"])
    puts = [r for r in sim.requests if r.method == "PUT" and r.path == ROUTE]
    assert [(r.status, r.fault) for r in puts] == [(409, True), (200, False)]
    assert sim.route_allow["default"] == ["worker-alice"]


async def test_conflicts_without_end_are_reported(sim: HigressConsoleSimulator) -> None:
    async with HigressClient(sim.url, ADMIN, ADMIN_PASSWORD, max_attempts=3, backoff=0.001) as gateway:
        for _ in range(3):
            sim.inject("PUT", ROUTE, status=409)
        with pytest.raises(ConflictError, match="still conflicting after 3 writes"):
            await gateway.authorize("worker-alice", ["default"])


async def test_transient_failures_inside_a_write_are_retried(sim: HigressConsoleSimulator,
                                                             gateway: HigressClient) -> None:
    sim.inject("GET", ROUTE, status=503)
    sim.inject("PUT", ROUTE, status=500, apply=True)  # written, but the answer was lost
    await gateway.authorize("worker-alice", ["default"])
    assert sim.count("PUT", ROUTE) == 1  # the re-GET showed the write: no second PUT
    assert sim.route_allow["default"] == ["worker-alice"]


@pytest.mark.parametrize(("status", "error"), [
    (500, TransientClientError), (503, TransientClientError), (429, TransientClientError),
    (400, InvalidRequestError), (404, NotFoundError), (409, ConflictError),
])
async def test_status_mapping(sim: HigressConsoleSimulator, gateway: HigressClient, status: int,
                              error: type[Exception]) -> None:
    await gateway.list_consumers()
    sim.inject("GET", "/v1/consumers", status=status)
    with pytest.raises(error, match=f"GET /v1/consumers answered {status}"):
        await gateway.list_consumers()


async def test_timeouts_and_unreachable_consoles_are_transient(sim: HigressConsoleSimulator) -> None:
    async with HigressClient(sim.url, ADMIN, ADMIN_PASSWORD, timeout=0.2) as gateway:
        await gateway.list_consumers()
        sim.inject("GET", "/v1/consumers", delay=0.5)
        with pytest.raises(TransientClientError, match="timed out"):
            await gateway.list_consumers()
    async with HigressClient("http://127.0.0.1:9", ADMIN, ADMIN_PASSWORD) as gateway:
        with pytest.raises(TransientClientError, match="ClientConnectorError"):
            await gateway.list_consumers()


async def test_delete_consumer(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    await gateway.ensure_consumer("worker-alice", KEY)
    await gateway.authorize("worker-alice")
    await gateway.authorize_mcp("worker-alice", ["github"])
    with pytest.raises(ConsumerInUseError):
        await gateway.delete_consumer("worker-alice")
    await gateway.deauthorize("worker-alice")
    with pytest.raises(ConsumerInUseError):  # the MCP allow list still names it
        await gateway.delete_consumer("worker-alice")
    await gateway.deauthorize_mcp("worker-alice")
    await gateway.delete_consumer("worker-alice")
    await gateway.delete_consumer("worker-alice")  # missing is success
    assert "worker-alice" not in sim.consumers


async def test_mcp_authorization(sim: HigressConsoleSimulator, gateway: HigressClient) -> None:
    await gateway.ensure_consumer("worker-alice", KEY)
    assert await gateway.list_mcp_servers() == ["github", "github-enterprise", "search"]
    assert await gateway.authorize_mcp("worker-alice", ["search", "github"]) == ["search", "github"]
    assert sim.is_authorized(KEY, mcp_server="search")
    allow = await gateway.mcp_allow_lists()
    assert allow == {"github": ("worker-alice",), "github-enterprise": (), "search": ("manager", "worker-alice")}
    with pytest.raises(NotFoundError, match="nothing"):
        await gateway.authorize_mcp("worker-alice", ["github", "nothing"])
    assert await gateway.deauthorize_mcp("worker-alice", ["search", "nothing"]) == ["search"]
    assert sim.mcp_allow["search"] == ["manager"]
    assert not sim.is_authorized(KEY, mcp_server="search")
    await gateway.authorize_mcp("worker-alice")
    assert all("worker-alice" in sim.mcp_allow[name] for name in ("github", "github-enterprise", "search"))


async def test_secrets_stay_out_of_logs_and_reprs(sim: HigressConsoleSimulator, gateway: HigressClient,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim.inject("POST", "/v1/consumers", status=500)
    with pytest.raises(TransientClientError) as caught:
        await gateway.ensure_consumer("worker-alice", KEY)
    await gateway.ensure_consumer("worker-alice", KEY)
    await gateway.authorize("worker-alice")
    for text in (caplog.text, str(caught.value), repr(caught.value), repr(gateway), repr(gateway.stats)):
        assert KEY not in text
        assert ADMIN_PASSWORD not in text

"""The Higress console simulator over raw HTTP: does it behave like the console the reference describes?

These tests speak plain aiohttp, not our client, so that a client bug cannot hide a simulator bug.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hiclaw_bot.devstack.higress_sim import (
    ERRATA,
    HigressConsoleSimulator,
    SpecDriftError,
    find_spec,
    load_spec,
)

KEY = "sk-worker-alice-0123456789"
CONSUMER = {"name": "worker-alice", "credentials": [{"type": "key-auth", "source": "BEARER", "values": [KEY]}]}


class Console:
    """Raw HTTP against the simulator, logged in as the admin unless told otherwise."""

    def __init__(self, sim: HigressConsoleSimulator, http: aiohttp.ClientSession) -> None:
        self.sim, self.http = sim, http

    async def call(self, method: str, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any, str]:
        async with self.http.request(method, self.sim.url + path, json=body, **kwargs) as response:
            raw = await response.text()
            return response.status, json.loads(raw) if raw else None, raw

    async def route(self, name: str = "default") -> dict[str, Any]:
        status, body, _ = await self.call("GET", f"/v1/ai/routes/{name}")
        assert status == 200
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
async def console(sim: HigressConsoleSimulator) -> AsyncIterator[Console]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        c = Console(sim, http)
        admin = {"name": "admin", "password": "pw", "displayName": "Admin"}
        assert (await c.call("POST", "/system/init", {"adminUser": admin}))[0] == 201
        assert (await c.call("POST", "/session/login", {"username": "admin", "password": "pw"}))[0] == 201
        yield c


def test_the_document_is_verbatim_and_every_erratum_applies(tmp_path: Path) -> None:
    digest = hashlib.sha256(find_spec().read_bytes()).hexdigest()
    assert digest.startswith("387239ef")  # the reference's sha256 387239ef…ee67: the file is untouched
    assert digest.endswith("ee67")
    spec = load_spec()
    assert [erratum(spec) for erratum in ERRATA] == [False] * len(ERRATA)  # nothing left to patch
    # A document on which an erratum has nothing to fix is reported, not silently double-patched.
    fixed = json.loads(find_spec().read_text())
    fixed["info"]["version"] = "2.2.4"
    (tmp_path / "fixed.json").write_text(json.dumps(fixed))
    with pytest.raises(SpecDriftError, match="_erratum_info_version"):
        load_spec(tmp_path / "fixed.json")


async def test_session_init_login_cookie_and_basic(sim: HigressConsoleSimulator) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        c = Console(sim, http)
        status, body, _ = await c.call("GET", "/v1/ai/routes")
        assert status == 401
        assert body == {"success": False,
                        "message": "com.alibaba.higress.console.controller.exception.AuthException: Login required."}
        assert (await c.call("POST", "/session/login", {"username": "admin", "password": "pw"}))[0] == 401
        assert (await c.call("POST", "/system/init", {"adminUser": {"name": "admin"}}))[0] == 400
        init = {"adminUser": {"name": "admin", "password": "pw", "displayName": "Admin"}}
        assert (await c.call("POST", "/system/init", init))[0] == 201
        assert (await c.call("POST", "/system/init", init))[0] == 500  # already initialised
        assert (await c.call("POST", "/session/login", {"username": "admin", "password": ""}))[0] == 400
        async with http.post(sim.url + "/session/login", json={"username": "admin", "password": "pw"}) as response:
            assert response.status == 201
            assert await response.json() == {"name": "admin", "displayName": "admin"}
            cookie = response.cookies["_hi_sess"]
            assert cookie["httponly"] is True
            assert cookie["path"] == "/"
            assert not cookie["max-age"]
        assert (await c.call("GET", "/v1/ai/routes"))[0] == 200
        sim.expire_sessions()
        assert (await c.call("GET", "/v1/ai/routes"))[0] == 401
    basic = "Basic " + base64.b64encode(b"admin:pw").decode()
    async with aiohttp.ClientSession() as http, http.get(sim.url + "/v1/consumers",
                                                        headers={"Authorization": basic}) as response:
        assert response.status == 200


async def test_envelopes_and_statuses(console: Console) -> None:
    status, body, _ = await console.call("POST", "/v1/consumers", CONSUMER)
    assert (status, body) == (201, CONSUMER)  # raw object, no envelope
    status, body, _ = await console.call("POST", "/v1/consumers", CONSUMER)
    assert status == 201  # an upsert: never "exists"
    status, body, _ = await console.call("GET", "/v1/consumers/worker-alice")
    assert (status, body) == (200, {"success": True, "data": CONSUMER})
    status, body, raw = await console.call("GET", "/v1/consumers/nobody")
    assert (status, raw) == (404, "")
    status, body, _ = await console.call("GET", "/v1/consumers")
    assert body == {"success": True, "data": [CONSUMER], "total": 1}
    status, body, _ = await console.call("PUT", "/v1/consumers/worker-alice", {"credentials": CONSUMER["credentials"]})
    assert (status, body) == (200, CONSUMER)  # PUT: raw, name from the URL
    assert (await console.call("PUT", "/v1/consumers/worker-alice", {**CONSUMER, "name": "x"}))[0] == 400
    assert (await console.call("DELETE", "/v1/consumers/worker-alice"))[:3:2] == (204, "")
    assert (await console.call("DELETE", "/v1/consumers/worker-alice"))[0] == 204  # missing: a no-op
    assert console.sim.violations == []


async def test_consumer_rules(console: Console) -> None:
    empty_values = {"name": "w", "credentials": [{"type": "key-auth", "source": "BEARER", "values": []}]}
    assert (await console.call("POST", "/v1/consumers", empty_values))[0] == 400
    assert (await console.call("POST", "/v1/consumers", {"name": "w", "credentials": []}))[0] == 400
    header = {"name": "w", "credentials": [{"type": "key-auth", "source": "HEADER", "values": ["v"]}]}
    assert (await console.call("POST", "/v1/consumers", header))[0] == 400
    assert (await console.call("POST", "/v1/consumers", CONSUMER))[0] == 201
    status, body, _ = await console.call("POST", "/v1/consumers", {**CONSUMER, "name": "worker-bob"})
    assert status == 500
    assert body["message"] == "java.lang.IllegalArgumentException: Key auth credential already in use by consumer: " \
                              "worker-alice"
    route = await console.route()
    route["authConfig"]["allowedConsumers"] = ["worker-alice"]
    assert (await console.call("PUT", "/v1/ai/routes/default", route))[0] == 200
    status, body, _ = await console.call("DELETE", "/v1/consumers/worker-alice")
    assert status == 500
    assert body["message"].endswith("Consumer worker-alice is still in use")
    assert console.sim.is_authorized(KEY, ai_route="default")
    assert not console.sim.is_authorized("another-key", ai_route="default")


async def test_ai_route_versions_and_bug_744(console: Console) -> None:
    sim = console.sim
    route = await console.route()
    stale = json.loads(json.dumps(route))
    route["authConfig"]["allowedConsumers"] = ["worker-a"]
    status, written, _ = await console.call("PUT", "/v1/ai/routes/default", route)
    assert status == 200
    assert int(written["version"]) > int(route["version"])
    stale["authConfig"]["allowedConsumers"] = ["worker-stale"]
    status, body, _ = await console.call("PUT", "/v1/ai/routes/default", stale)
    assert status == 409
    assert "ResourceConflictException" in body["message"]
    # #744: the console still shows the accepted list, the data plane has the stale writer's.
    assert (await console.route())["authConfig"]["allowedConsumers"] == ["worker-a"]
    assert sim.route_allow["default"] == ["worker-stale"]
    # Without a version a PUT is an unconditional overwrite.
    del stale["version"]
    assert (await console.call("PUT", "/v1/ai/routes/default", stale))[0] == 200
    assert (await console.route())["authConfig"]["allowedConsumers"] == ["worker-stale"]


async def test_clean_409_when_the_bug_is_switched_off(console: Console) -> None:
    console.sim.stale_put_applies = False
    route = await console.route()
    assert (await console.call("PUT", "/v1/ai/routes/default", route))[0] == 200
    route["authConfig"]["allowedConsumers"] = ["worker-stale"]
    assert (await console.call("PUT", "/v1/ai/routes/default", route))[0] == 409
    assert console.sim.route_allow["default"] == []


async def test_ai_route_rules(console: Console) -> None:
    route = await console.route()
    without_auth = {k: v for k, v in route.items() if k != "authConfig"}
    console.sim.route_allow["default"] = ["worker-a"]
    assert (await console.call("POST", "/v1/ai/routes", without_auth))[0] == 409
    assert console.sim.route_allow["default"] == []  # a POST on an existing route REPLACEs its list first
    bad_provider = {**route, "upstreams": [{"provider": "nobody", "weight": 100}]}
    assert (await console.call("PUT", "/v1/ai/routes/default", bad_provider))[0] == 400
    weights = {**route, "upstreams": [{"provider": "default", "weight": 60}, {"provider": "default", "weight": 30}]}
    assert (await console.call("PUT", "/v1/ai/routes/default", weights))[0] == 400
    exact = {**route, "pathPredicate": {"matchType": "EXACT", "matchValue": "/"}}
    assert (await console.call("PUT", "/v1/ai/routes/default", exact))[0] == 400
    status, body, _ = await console.call("PUT", "/v1/ai/routes/missing", {**route, "name": "missing"})
    assert status == 500  # the console fails to replace a ConfigMap that does not exist
    assert "BusinessException" in body["message"]
    assert (await console.call("DELETE", "/v1/ai/routes/missing"))[0] == 204


async def test_mcp_servers(console: Console) -> None:
    status, body, _ = await console.call("GET", "/v1/mcpServer")
    assert [s["name"] for s in body["data"]] == ["github", "github-enterprise", "search"]
    assert all("consumerAuthInfo" not in s for s in body["data"])  # the list omits the allow lists
    status, body, _ = await console.call("GET", "/v1/mcpServer/search")
    assert body["data"]["consumerAuthInfo"] == {"type": "key-auth", "enable": True, "allowedConsumers": ["manager"]}
    status, body, _ = await console.call("GET", "/v1/mcpServer/nothing")
    assert status == 502
    assert "NotFoundException" in body["message"]
    add = {"mcpServerName": "search", "consumers": ["worker-manager-2"]}
    assert (await console.call("PUT", "/v1/mcpServer/consumers", add))[0] == 204
    assert (await console.call("PUT", "/v1/mcpServer/consumers", add))[0] == 204  # ADD is idempotent
    status, body, _ = await console.call("GET", "/v1/mcpServer/consumers",
                                         params={"mcpServerName": "search", "consumerName": "manager"})
    assert [i["consumerName"] for i in body["data"]] == ["manager", "worker-manager-2"]  # a substring match
    assert body["data"][0]["mcpServerName"] == "mcp-server-search.internal"
    assert (await console.call("DELETE", "/v1/mcpServer/consumers", add))[0] == 204
    assert console.sim.mcp_allow["search"] == ["manager"]
    missing = {"mcpServerName": "nothing", "consumers": ["x"]}
    assert (await console.call("PUT", "/v1/mcpServer/consumers", missing))[0] == 500
    assert (await console.call("GET", "/v1/mcpServer/consumers"))[0] == 400
    replace = {"name": "search", "type": "DIRECT_ROUTE", "consumerAuthInfo": {"enable": True, "allowedConsumers": []}}
    assert (await console.call("PUT", "/v1/mcpServer", replace))[0] == 200
    assert console.sim.mcp_allow["search"] == []  # consumerAuthInfo REPLACEs


async def test_violations_fail_loudly_and_stay_secret_free(console: Console, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    bad = {"name": "w", "credentials": [{"type": "key-auth", "source": "NOWHERE", "values": [KEY]}]}
    assert (await console.call("POST", "/v1/consumers", bad))[0] == 500
    assert (await console.call("GET", "/v1/domains"))[0] == 500  # in the document, not simulated
    assert [(v.direction, v.path) for v in console.sim.violations] == [("request", "/v1/consumers"),
                                                                      ("request", "/v1/domains")]
    assert "NOWHERE" in console.sim.violations[0].detail
    assert KEY not in console.sim.violations[0].detail
    assert KEY not in caplog.text
    assert KEY not in repr(console.sim.requests)
    console.sim.violations.clear()


async def test_response_validation_catches_simulator_drift() -> None:
    broken = {"name": "broken", "domains": "not-a-list", "upstreams": [{"provider": "default", "weight": 100}]}
    async with HigressConsoleSimulator(initialized=True, ai_routes=[broken]) as sim, aiohttp.ClientSession() as http:
        auth = "Basic " + base64.b64encode(f"{sim.username}:{sim.password}".encode()).decode()
        async with http.get(sim.url + "/v1/ai/routes/broken", headers={"Authorization": auth}) as response:
            assert response.status == 500
        assert [(v.direction, v.status) for v in sim.violations] == [("response", 200)]


async def test_fault_knobs(console: Console) -> None:
    sim = console.sim
    sim.inject("GET", "/v1/consumers", nth=2, status=503)
    assert (await console.call("GET", "/v1/consumers"))[0] == 200
    assert (await console.call("GET", "/v1/consumers"))[0] == 503
    assert (await console.call("GET", "/v1/consumers"))[0] == 200
    sim.inject("POST", "/v1/consumers", status=409)  # fail without writing
    assert (await console.call("POST", "/v1/consumers", CONSUMER))[0] == 409
    assert "worker-alice" not in sim.consumers
    sim.inject("POST", "/v1/consumers", status=500, apply=True)  # write, then fail
    assert (await console.call("POST", "/v1/consumers", CONSUMER))[0] == 500
    assert "worker-alice" in sim.consumers
    sim.inject("GET", "/v1/consumers", delay=0.3)
    with pytest.raises(TimeoutError):
        await console.call("GET", "/v1/consumers", timeout=aiohttp.ClientTimeout(total=0.1))
    assert sim.count("POST", "/v1/consumers") == 2
    assert sim.count("GET", "/v1/consumers") == 4
    logged = [r for r in sim.requests if r.path == "/v1/consumers" and r.method == "POST"]
    assert [(r.status, r.fault) for r in logged] == [(409, True), (500, True)]
    assert logged[0].body["credentials"][0]["values"] == "***"

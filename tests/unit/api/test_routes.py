"""The API over HTTP: authentication, readiness, reads, and wake/sleep as audited operations."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_spec_validator import validate

from backends import WorkerStatus
from backends.process import ProcessBackend
from hiclaw_bot.api import make_app, openapi_document, serving
from storage import Store
from tests.unit.api.conftest import TOKEN, Api


async def get(api: Api, path: str, *, auth: bool = True, **params: str) -> tuple[int, Any]:
    async with api.session.get(path, headers=api.auth if auth else {}, params=params) as response:
        body = await response.json() if response.content_type == "application/json" else await response.text()
        return response.status, body


async def post(api: Api, path: str) -> tuple[int, Any, str | None]:
    async with api.session.post(path, headers=api.auth) as response:
        return response.status, await response.json(), response.headers.get("Location")


async def add_worker(store: Store, name: str, state: str = "Running", team: str | None = None) -> None:
    await store.workers.insert(name, backend="process", state=state, desired_state=state, team=team,
                               image="img:1", model="m", spec={"env": {"API_KEY": "sk-do-not-show"}})


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", "Bearer", f"bearer {TOKEN}x", TOKEN])
async def test_api_routes_need_the_bearer_token(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    for path in ("/api/v1/workers", "/api/v1/ops", "/api/v1/audit"):
        async with api.session.get(path, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert TOKEN not in await response.text()
    async with api.session.post("/api/v1/workers/w/wake", headers=headers) as response:
        assert response.status == 401
    assert await api.state.store.ops.find() == [], "a refused request changes nothing"


async def test_health_readiness_metrics_and_the_document_are_open(api: Api) -> None:
    assert await get(api, "/healthz", auth=False) == (200, {"status": "ok"})
    status, body = await get(api, "/readyz", auth=False)
    assert (status, body["not_ready"]) == (200, []), body
    status, text = await get(api, "/metrics", auth=False)
    assert status == 200
    assert "hiclaw_workers" in text
    status, document = await get(api, "/api/v1/openapi.json", auth=False)
    assert status == 200
    assert document["openapi"].startswith("3.")


async def test_readiness_names_what_is_not_ready(api: Api) -> None:
    api.state.matrix_ready = lambda: False
    status, body = await get(api, "/readyz", auth=False)
    assert status == 503
    assert body["not_ready"] == ["matrix"]
    assert body["checks"]["backend"] == "ok"


class SilentBackend(ProcessBackend):
    """A backend that never answers a status call (a hung Docker daemon, an unreachable API server)."""

    async def status(self, name: str) -> WorkerStatus:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")


async def test_readiness_gives_up_on_a_silent_backend(api: Api, tmp_path: Path) -> None:
    backend = SilentBackend("silent", tmp_path / "silent")
    state = dataclasses.replace(api.state, backend=backend, probe_timeout=0.1)
    async with serving(make_app(state)) as url, aiohttp.ClientSession(url) as session, \
            session.get("/readyz") as response:
        body = await response.json()
    assert response.status == 503
    assert body["not_ready"] == ["backend"]
    assert body["checks"]["backend"] == "no answer within 0.1s"


async def test_workers_are_listed_with_their_operation_and_without_their_spec(api: Api) -> None:
    store = api.state.store
    await add_worker(store, "ann")
    await add_worker(store, "bob", "Sleeping")
    status, body = await get(api, "/api/v1/workers")
    assert status == 200
    assert [w["name"] for w in body["workers"]] == ["ann", "bob"]
    assert body["count"] == 2
    assert "sk-do-not-show" not in str(body)
    status, one = await get(api, "/api/v1/workers/bob")
    assert (status, one["state"], one["operation"]) == (200, "Sleeping", None)
    assert (await get(api, "/api/v1/workers/nobody"))[0] == 404
    status, problem = await get(api, "/api/v1/workers/Not_A_Name")
    assert status == 400
    assert "names use lowercase" in problem["error"]


async def test_wake_and_sleep_start_audited_operations(api: Api) -> None:
    store, engine = api.state.store, api.state.engine
    await add_worker(store, "cat", "Sleeping")
    status, accepted, location = await post(api, "/api/v1/workers/cat/wake")
    assert status == 202
    assert accepted["kind"] == "worker.wake"
    assert location == f"/api/v1/ops/{accepted['op_id']}"
    assert (await engine.wait(accepted["op_id"])).state == "succeeded"
    op = await store.ops.get(accepted["op_id"])
    assert op is not None
    assert op.actor == "api:operator"
    status, detail = await get(api, location)
    assert status == 200
    assert [s["status"] for s in detail["steps"]] == ["done"]
    assert (await store.workers.get("cat")).state == "Running"  # type: ignore[union-attr]

    status, accepted, _ = await post(api, "/api/v1/workers/cat/sleep")
    assert status == 202
    await engine.wait(accepted["op_id"])
    status, conflict, _ = await post(api, "/api/v1/workers/cat/sleep")
    assert (status, conflict["error"]) == (409, "cat is already asleep")
    status, missing, _ = await post(api, "/api/v1/workers/ghost/wake")
    assert status == 404
    assert "ghost" in missing["error"]

    status, log = await get(api, "/api/v1/audit", worker="cat")
    decisions = [(e["command"], e["decision"], e["actor"]) for e in log["entries"]]
    assert decisions == [("worker sleep", "already", "api:operator"), ("worker sleep", "started", "api:operator"),
                         ("worker wake", "started", "api:operator")]
    started = [e for e in log["entries"] if e["decision"] == "started"]
    assert all(e["op_id"] is not None for e in started)
    status, everything = await get(api, "/api/v1/audit", limit="1")
    assert [e["subject"] for e in everything["entries"]] == ["worker:ghost"]


async def test_a_busy_worker_answers_409_with_the_holder(api: Api) -> None:
    store, engine = api.state.store, api.state.engine
    await add_worker(store, "dan", "Sleeping", team="slow")
    status, first, _ = await post(api, "/api/v1/workers/dan/wake")
    assert status == 202
    status, busy, _ = await post(api, "/api/v1/workers/dan/sleep")
    assert status == 409
    assert busy["op_id"] == first["op_id"]
    _, listed = await get(api, "/api/v1/workers")
    assert listed["workers"][0]["operation"]["op_id"] == first["op_id"]
    api.gate.set()
    assert (await engine.wait(first["op_id"])).state == "succeeded"


@pytest.mark.parametrize(("path", "params"), [
    ("/api/v1/ops", {"limit": "0"}), ("/api/v1/ops", {"limit": "ten"}), ("/api/v1/ops", {"state": "weird"}),
    ("/api/v1/audit", {"worker": "BAD NAME"}), ("/api/v1/audit", {"limit": "501"}), ("/api/v1/ops/x1", {}),
])
async def test_bad_input_gets_a_400_naming_it(api: Api, path: str, params: dict[str, str]) -> None:
    status, body = await get(api, path, auth=True, **params)
    assert status == 400
    assert set(body) == {"error"}
    assert body["error"]


async def test_no_configured_token_refuses_every_api_request(api: Api) -> None:
    api.state.token = None  # the middleware takes the token when the app is built: build another
    async with serving(make_app(api.state)) as url, aiohttp.ClientSession(url) as session:
        async with session.get("/api/v1/workers", headers=api.auth) as response:
            assert response.status == 401
            assert "no token configured" in (await response.json())["error"]
        async with session.get("/healthz") as response:
            assert response.status == 200


async def test_metrics_may_require_the_token(api: Api) -> None:
    api.state.protect_metrics = True
    async with serving(make_app(api.state)) as url, aiohttp.ClientSession(url) as session:
        async with session.get("/metrics") as response:
            assert response.status == 401
        async with session.get("/metrics", headers=api.auth) as response:
            assert response.status == 200



async def test_the_openapi_document_is_valid_and_documents_every_route(api: Api) -> None:
    document = openapi_document()
    validate(document)
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    served = {(route.method, route.resource.canonical) for route in make_app(api.state).router.routes()
              if route.method != "HEAD" and route.resource is not None}
    assert documented == served

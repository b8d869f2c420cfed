"""The API drives the real worker flows, and every answer it gives matches its OpenAPI document.

The schema checks use schemathesis: generated requests for every documented operation (a small
number of examples, enough to cover each route and its error answers), plus the success and
conflict answers of wake and sleep on a real worker, which random names never reach.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from backends import WorkerState
from hiclaw_bot.api import openapi_document
from hiclaw_bot.flows.worker import CREATE, subject
from tests.fixtures.synapse import unique
from tests.integration.api.conftest import Live

EXAMPLES = 150


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if match and match[1] == name and ",".join(sorted((match[2] or "").split(","))) == wanted:
            return float(match[3])
    return 0.0


async def call(live: Live, method: str, path: str) -> tuple[int, Any]:
    async with live.session.request(method, path, headers=live.headers) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def test_sleep_and_wake_run_the_real_flows_and_show_in_metrics_and_audit(live: Live) -> None:
    stack, engine = live.stack, live.stack.engine
    worker = unique("api")
    created = await engine.submit(CREATE, subject(worker), {"name": worker, "model": "qwen-max",
                                                            "image": "hiclaw/worker-agent:1"})
    assert (await engine.wait(created.op.op_id)).state == "succeeded"

    status, row = await call(live, "GET", f"/api/v1/workers/{worker}")
    assert (status, row["state"], row["operation"]) == (200, "Running", None)

    status, accepted = await call(live, "POST", f"/api/v1/workers/{worker}/sleep")
    assert status == 202
    assert (await engine.wait(accepted["op_id"])).state == "succeeded"
    assert (await stack.services.backend.status(worker)).state is not WorkerState.RUNNING
    assert (await call(live, "POST", f"/api/v1/workers/{worker}/sleep"))[0] == 409

    status, waking = await call(live, "POST", f"/api/v1/workers/{worker}/wake")
    assert status == 202
    status, busy = await call(live, "POST", f"/api/v1/workers/{worker}/sleep")
    assert (status, busy["op_id"]) == (409, waking["op_id"])
    assert (await engine.wait(waking["op_id"])).state == "succeeded"
    assert (await stack.services.backend.status(worker)).state is WorkerState.RUNNING

    _, text = await call(live, "GET", "/metrics")
    for system in ("matrix", "higress", "storage", "backend"):
        assert sample(text, "hiclaw_external_call_duration_seconds_count", system=system) > 0, system
    assert sample(text, "hiclaw_step_duration_seconds_count", kind="worker.sleep", step="stop") == 1
    assert sample(text, "hiclaw_operations_finished_total", kind="worker.wake", outcome="succeeded") == 1
    assert sample(text, "hiclaw_workers", state="Running") >= 1
    assert sample(text, "hiclaw_operations", kind="worker.create", state="succeeded") >= 1

    _, log = await call(live, "GET", f"/api/v1/audit?worker={worker}")
    assert [(e["command"], e["decision"]) for e in log["entries"]] == [
        ("worker sleep", "busy"), ("worker wake", "started"), ("worker sleep", "already"),
        ("worker sleep", "started"),
    ]
    assert {e["actor"] for e in log["entries"]} == {"api:ci"}

    # The answers random names never reach, checked against the document too.
    schema = schemathesis.openapi.from_dict(openapi_document())

    def conforming() -> None:
        for verb, expected in (("sleep", 202), ("sleep", 409), ("wake", 202)):
            case = schema[f"/api/v1/workers/{{name}}/{verb}"]["POST"].Case(path_parameters={"name": worker})
            response = case.call_and_validate(base_url=live.url, headers=live.headers)
            assert response.status_code == expected, response.text
            if expected == 202:
                op_id = response.json()["op_id"]
                asyncio.run_coroutine_threadsafe(engine.wait(op_id), loop).result(timeout=60)
        schema["/api/v1/workers/{name}"]["GET"].Case(path_parameters={"name": worker}).call_and_validate(
            base_url=live.url, headers=live.headers)
        schema["/api/v1/workers"]["GET"].Case().call_and_validate(base_url=live.url, headers=live.headers)
        schema["/api/v1/audit"]["GET"].Case(query={"worker": worker}).call_and_validate(
            base_url=live.url, headers=live.headers)

    loop = asyncio.get_running_loop()
    await asyncio.to_thread(conforming)


async def test_every_generated_request_gets_a_documented_answer(live: Live) -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())

    exercised: set[str] = set()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=schema.as_strategy())
    def conforms(case: Any) -> None:
        exercised.add(case.operation.label)
        case.call_and_validate(base_url=live.url, headers=live.headers)

    await asyncio.to_thread(conforms)
    documented = {result.ok().label for result in schema.get_all_operations()}
    assert exercised == documented, f"not exercised: {documented - exercised}"
    assert await live.stack.store.ops.find() == [], "random names reach no worker, so nothing ran"

"""Faults on the real stack: transient ones are retried and succeed; a permanent one fails the
operation at its step with a reason, and a retry resumes there without repeating earlier calls."""

from __future__ import annotations

from hiclaw_bot.flows import names
from hiclaw_bot.flows.worker import CREATE, subject
from hiclaw_bot.types import UserId
from tests.fixtures.synapse import unique
from tests.integration.flows.conftest import Stack

PARAMS = {"model": "qwen-max", "image": "hiclaw/worker-agent:1"}


async def test_gateway_5xx_and_delays_are_retried(stack: Stack) -> None:
    worker = unique("flaky")
    route = next(iter(stack.gateway.ai_routes))
    stack.gateway.inject("POST", "/v1/consumers", status=503)
    stack.gateway.inject("PUT", f"/v1/ai/routes/{route}", status=503)
    stack.gateway.inject("GET", "/v1/ai/routes", delay=0.5)
    sub = await stack.engine.submit(CREATE, subject(worker), {"name": worker, **PARAMS})
    op = await stack.engine.wait(sub.op.op_id)
    assert op.state == "succeeded", (op.failed_step, op.error)
    assert names.consumer(worker) in stack.gateway.consumers
    assert stack.gateway.route_allow[route].count(names.consumer(worker)) == 1
    assert stack.gateway.count("POST", "/v1/consumers") >= 2, "the 503 was retried"
    assert not stack.gateway.violations
    await stack.services.backend.delete(worker)


async def test_a_permanent_failure_names_its_step_and_retry_resumes_there(stack: Stack) -> None:
    worker = unique("stuck")
    stack.gateway.inject("POST", "/v1/consumers", status=400)
    sub = await stack.engine.submit(CREATE, subject(worker), {"name": worker, **PARAMS})
    op = await stack.engine.wait(sub.op.op_id)
    assert op.state == "failed"
    assert op.failed_step == "gateway_consumer"
    assert op.error is not None
    assert "400" in op.error or "invalid" in op.error.lower()
    done_before = {s.name for s in await stack.store.steps.of(op.op_id) if s.status == "done"}
    assert {"register", "secrets"} <= done_before
    consumer_posts = stack.gateway.count("POST", "/v1/consumers")

    op = await stack.engine.retry(op.op_id)
    op = await stack.engine.wait(op.op_id)
    assert op.state == "succeeded", (op.failed_step, op.error)
    calls = {s.name: s.calls for s in await stack.store.steps.of(op.op_id)}
    assert all(calls[name] == 1 for name in done_before), ("a done step ran again", calls)
    assert calls["gateway_consumer"] == 2, "the failed step ran again, once"
    user_id = UserId(f"@{worker}:{stack.config.matrix.server_name}")
    assert len(await stack.services.matrix.rooms_of(user_id)) == 1, "exactly one room"
    assert stack.gateway.count("POST", "/v1/consumers") == consumer_posts + 1
    await stack.services.backend.delete(worker)

"""Faults on the real stack: transient ones are retried and succeed; a permanent one fails the
operation at its step with a reason, and a retry resumes there without repeating earlier calls."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from hiclaw_bot.app import open_services
from hiclaw_bot.config import S3StorageConfig
from hiclaw_bot.devstack.seaweed import SeaweedServer
from hiclaw_bot.devstack.service import Service
from hiclaw_bot.engine import Engine, EventKind, ProgressEvent, RetryPolicy
from hiclaw_bot.flows import names
from hiclaw_bot.flows.services import Services
from hiclaw_bot.flows.worker import CREATE, register_worker_flows, subject
from hiclaw_bot.types import UserId
from tests.fixtures.synapse import SynapseEnv, unique
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


def patient_engine(stack: Stack, services: Services | None = None) -> Engine:
    """An engine whose retries outlast a server restart (about 10 s of backoff)."""
    engine = Engine(stack.store, retry=RetryPolicy(max_attempts=10, initial=0.3, maximum=2.0, jitter=0.1))
    register_worker_flows(engine, services or stack.services)
    return engine


async def create_through_an_outage(stack: Stack, engine: Engine, worker: str, server: Service, step: str) -> None:
    """Stop ``server``, create ``worker``, and start the server again only once ``step`` has met the
    outage and is retrying: the create succeeds, ``step`` having taken more than one attempt."""
    back = asyncio.Event()

    async def start_on_retry(events: asyncio.Queue[ProgressEvent]) -> None:
        while True:
            event = await events.get()
            if event.kind is EventKind.STEP_RETRYING and event.step == step:
                await server.start()
                back.set()
                return

    await server.stop()
    async with engine.subscribe() as events:
        restart = asyncio.create_task(start_on_retry(events))
        try:
            sub = await engine.submit(CREATE, subject(worker), {"name": worker, **PARAMS})
            op = await engine.wait(sub.op.op_id)
        finally:
            restart.cancel()
            await asyncio.gather(restart, return_exceptions=True)
            if not back.is_set():
                await server.start()
            await engine.stop()
    assert op.state == "succeeded", (op.failed_step, op.error)
    retried = {s.name: s.attempts for s in await stack.store.steps.of(op.op_id)}
    assert retried[step] > 1, f"the {step} step met the outage and retried"


async def test_synapse_restarted_during_a_create(stack: Stack, synapse: SynapseEnv) -> None:
    worker = unique("restart")
    await create_through_an_outage(stack, patient_engine(stack), worker, synapse.server, "account")
    user_id = UserId(f"@{worker}:{stack.config.matrix.server_name}")
    assert len(await stack.services.matrix.rooms_of(user_id)) == 1
    await stack.services.backend.delete(worker)


async def test_s3_stopped_and_restarted_during_a_create(stack: Stack, seaweed: SeaweedServer,
                                                         synapse: SynapseEnv) -> None:
    worker = unique("s3")
    config = stack.config.model_copy(update={"storage": S3StorageConfig(
        endpoint=seaweed.endpoint_url, bucket=unique("bucket"), access_key=SecretStr(seaweed.access_key),
        secret_key=SecretStr(seaweed.secret_key), region=seaweed.region)})
    async with open_services(config, stack.store, bot_token=synapse.admin_token,
                             backend=stack.services.backend) as services:
        await create_through_an_outage(stack, patient_engine(stack, services), worker, seaweed, "config")
        assert f"agents/{worker}/openclaw.json" in await services.objects.list(f"agents/{worker}/")
        await services.backend.delete(worker)

"""The HTTP operations surface: health, readiness, metrics, workers, operations, audit.

Reads go straight to the store, one or two queries per request whatever the number of workers.
``wake`` and ``sleep`` start the very engine operations the chat commands start, so they are
durable, serialised with everything else on the worker, and visible in ``!op list``; each request
that changes or tries to change something writes an audit row, the operation's in the same
transaction that records the operation.

Every answer is JSON described by ``openapi.yaml`` (served at ``/api/v1/openapi.json``); bad
input gets a 400 naming the problem and touches nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, NoReturn, Protocol

import yaml
from aiohttp import web
from pydantic import SecretStr

from backends import WorkerBackend
from hiclaw_bot.api import views
from hiclaw_bot.api.auth import bearer_auth
from hiclaw_bot.api.metrics import CONTENT_TYPE, Metrics
from hiclaw_bot.engine import Engine, SubjectBusy
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows import worker_rules as rules
from hiclaw_bot.types import Refused
from storage import Store, Tx, Worker

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/api/v1/openapi.json"})
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
OP_STATES = ("queued", "running", "failed", "compensating", "succeeded", "compensated", "cancelled")
READINESS_PROBE = "hiclaw-readyz"
"""A worker name nobody uses: asking the backend for its status is the cheapest real round trip."""
MAX_LIMIT = 500


@dataclass
class ApiState:
    """What the API reads and drives; the composition root (or a test, or a benchmark) builds it."""

    store: Store
    engine: Engine
    backend: WorkerBackend
    """The default backend: the readiness probe asks it."""
    metrics: Metrics = field(default_factory=Metrics)
    others: Mapping[str, WorkerBackend] = field(default_factory=dict)
    """The other backends served, by kind: a worker's row says which one it lives on."""
    token: SecretStr | None = None
    token_name: str = "operator"  # noqa: S105 (who the token stands for, not a secret)
    matrix_ready: Callable[[], bool] = lambda: True
    protect_metrics: bool = False
    probe_timeout: float = 2.0

    @property
    def actor(self) -> str:
        return f"api:{self.token_name}"


class Check(Protocol):
    """A wake or sleep rule of :mod:`~hiclaw_bot.flows.worker_rules`."""

    def __call__(self, row: Worker, backend: WorkerBackend, *, idle: bool = True) -> Awaitable[None]: ...


STATE = web.AppKey("state", ApiState)


@cache
def openapi_document() -> dict[str, Any]:
    """The API's OpenAPI document (``openapi.yaml`` beside this module), parsed once."""
    document: dict[str, Any] = yaml.safe_load(resources.files("hiclaw_bot.api").joinpath("openapi.yaml").read_text())
    return document


def make_app(state: ApiState) -> web.Application:
    """The aiohttp application, unstarted (serve it with :func:`hiclaw_bot.api.server.serving`)."""
    open_paths = OPEN_PATHS if state.protect_metrics else OPEN_PATHS | {"/metrics"}
    app = web.Application(middlewares=[bearer_auth(state.token, open_paths=open_paths)])
    app[STATE] = state
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/api/v1/workers", list_workers)
    app.router.add_get("/api/v1/workers/{name}", get_worker)
    app.router.add_post("/api/v1/workers/{name}/wake", wake)
    app.router.add_post("/api/v1/workers/{name}/sleep", sleep)
    app.router.add_get("/api/v1/ops", list_ops)
    app.router.add_get("/api/v1/ops/{op_id}", get_op)
    app.router.add_get("/api/v1/audit", audit)
    return app


# -- input ------------------------------------------------------------------------------------------


def _error(status: type[web.HTTPError], message: str) -> NoReturn:
    raise status(text=json.dumps({"error": message}), content_type="application/json")


def _name(value: str, what: str = "worker name") -> str:
    if not NAME.match(value):
        _error(web.HTTPBadRequest, f"{what} {value[:70]!r}: names use lowercase letters, digits and '-', "
                                   f"start with a letter or digit, and have at most 63 characters")
    return value


def _limit(request: web.Request, default: int = 50) -> int:
    text = request.query.get("limit")
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        _error(web.HTTPBadRequest, f"limit {text[:20]!r}: expected a whole number")
    if not 1 <= value <= MAX_LIMIT:
        _error(web.HTTPBadRequest, f"limit must be between 1 and {MAX_LIMIT}")
    return value


# -- health ---------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers, the Matrix sync loop is live and the backend answers."""
    state = request.app[STATE]
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.store.db.schema_version(), state.probe_timeout)
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 (any failure means not ready; its class is enough to act on)
        checks["database"] = f"failed ({type(exc).__name__})"
    checks["matrix"] = "ok" if state.matrix_ready() else "not syncing"
    try:
        await asyncio.wait_for(state.backend.status(READINESS_PROBE), state.probe_timeout)
        checks["backend"] = "ok"
    except TimeoutError:
        checks["backend"] = f"no answer within {state.probe_timeout:g}s"
    except Exception as exc:  # noqa: BLE001 (as above)
        checks["backend"] = f"unreachable ({type(exc).__name__})"
    not_ready = [name for name, result in checks.items() if result != "ok"]
    return web.json_response({"status": "not ready" if not_ready else "ready", "checks": checks,
                              "not_ready": not_ready}, status=503 if not_ready else 200)


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await state.metrics.render(state.store)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# -- workers --------------------------------------------------------------------------------------


async def list_workers(request: web.Request) -> web.Response:
    rows = await request.app[STATE].store.summary.workers_with_ops()
    return web.json_response({"workers": [views.worker(r.worker, r.op) for r in rows], "count": len(rows)})


async def get_worker(request: web.Request) -> web.Response:
    name = _name(request.match_info["name"])
    rows = await request.app[STATE].store.summary.workers_with_ops(name=name)
    if not rows:
        _error(web.HTTPNotFound, f"there is no worker named {name}")
    return web.json_response(views.worker(rows[0].worker, rows[0].op))


async def wake(request: web.Request) -> web.Response:
    return await _change(request, flows.WAKE, "wake", rules.check_wake)


async def sleep(request: web.Request) -> web.Response:
    return await _change(request, flows.SLEEP, "sleep", rules.check_sleep)


async def _change(request: web.Request, kind: str, verb: str, check: Check) -> web.Response:
    """Start ``kind`` on the worker, as ``!worker <verb>`` would (by the same rule); every outcome is audited."""
    state = request.app[STATE]
    store, command = state.store, f"worker {verb}"
    name = _name(request.match_info["name"])
    subject = flows.subject(name)

    async def record(decision: str, *, op_id: int | None = None, detail: str | None = None,
                     tx: Tx | None = None) -> None:
        await store.audit.add(actor=state.actor, command=command, decision=decision, subject=subject,
                              op_id=op_id, detail=detail, tx=tx)

    row = await store.workers.get(name)
    if row is None:
        await record("not-found")
        _error(web.HTTPNotFound, f"there is no worker named {name}")
    # Only an idle worker can be "already" anywhere: one under an operation is busy (answered below).
    idle = await store.ops.holder(subject) is None
    try:
        await check(row, state.others.get(row.backend, state.backend), idle=idle)
    except Refused as exc:
        await record("already")
        return web.json_response({"error": exc.reason.removesuffix(".")}, status=409)

    async def same_transaction(tx: Tx, op_id: int) -> None:
        await record("started", op_id=op_id, tx=tx)

    try:
        submission = await state.engine.submit(kind, subject, {"name": name}, actor=state.actor,
                                               same_transaction=same_transaction)
    except SubjectBusy as exc:
        holder = exc.holder
        await record("busy", detail=f"held by {holder.op_id}")
        return web.json_response({"error": f"{name} is busy with operation {holder.op_id} ({holder.kind}, "
                                           f"{holder.state})", "op_id": holder.op_id}, status=409)
    op = submission.op
    return web.json_response({"op_id": op.op_id, "kind": op.kind, "subject": op.subject, "state": op.state},
                             status=202, headers={"Location": f"/api/v1/ops/{op.op_id}"})


# -- operations and audit -------------------------------------------------------------------------


async def list_ops(request: web.Request) -> web.Response:
    state_filter = request.query.get("state")
    if state_filter is not None and state_filter not in OP_STATES:
        _error(web.HTTPBadRequest, f"state {state_filter[:30]!r}: expected one of {', '.join(OP_STATES)}")
    ops = await request.app[STATE].store.ops.find(states=[state_filter] if state_filter else None,
                                                  limit=_limit(request))
    return web.json_response({"operations": [views.operation(op) for op in ops]})


async def get_op(request: web.Request) -> web.Response:
    text = request.match_info["op_id"]
    if not text.isdigit() or len(text) > 18:
        _error(web.HTTPBadRequest, f"operation {text[:20]!r}: expected an operation number")
    store = request.app[STATE].store
    op = await store.ops.get(int(text))
    if op is None:
        _error(web.HTTPNotFound, f"there is no operation {int(text)}")
    steps = await store.steps.of(op.op_id)
    return web.json_response({**views.operation(op), "steps": [views.step(s) for s in steps]})


async def audit(request: web.Request) -> web.Response:
    worker = request.query.get("worker")
    subject = None if worker is None else flows.subject(_name(worker, "worker"))
    entries = await request.app[STATE].store.audit.recent_with_outcomes(subject=subject, limit=_limit(request))
    return web.json_response({"entries": [views.audit_entry(e, op_state) for e, op_state in entries]})

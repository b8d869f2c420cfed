"""Serving the API: on the configured address while the bot runs, or on a free port for tests
and benchmarks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

from aiohttp import web

from backends import WorkerBackend
from hiclaw_bot.api.routes import ApiState, make_app
from hiclaw_bot.config import ApiConfig
from hiclaw_bot.engine import Engine
from storage import Store

log = logging.getLogger("hiclaw_bot.api")


@asynccontextmanager
async def serving(app: web.Application, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app``; yields its base URL (``port=0`` picks a free port)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def open_api(settings: ApiConfig, store: Store, engine: Engine, backend: WorkerBackend, *,
                   matrix_ready: Callable[[], bool],
                   others: Mapping[str, WorkerBackend] | None = None) -> AsyncIterator[ApiState | None]:
    """The API of a running bot, when ``api.enabled``: metrics follow the engine from now on."""
    if not settings.enabled:
        yield None
        return
    state = ApiState(store=store, engine=engine, backend=backend, others=dict(others or {}), token=settings.token,
                     token_name=settings.token_name, matrix_ready=matrix_ready,
                     protect_metrics=settings.protect_metrics)
    stop_listening = engine.bus.listen(state.metrics.observe)
    host, _, port = settings.listen.rpartition(":")
    try:
        async with serving(make_app(state), host.strip("[]"), int(port)) as url:
            if settings.token is None:
                log.warning("api.token is not set: %s/api/v1 refuses every request", url)
            log.info("operations API on %s", url)
            yield state
    finally:
        stop_listening()

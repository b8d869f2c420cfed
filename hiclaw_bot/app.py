"""The composition root: one function that assembles the running bot from a configuration.

Store → engine → clients and backend → flows → commands → Matrix bot, in that order, and torn
down in reverse. Operations left unfinished by a previous process resume as the engine starts;
the bot's first sync then answers (or declines, when too old) what was said while it was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from hiclaw_bot.api import ApiState, open_api
from hiclaw_bot.chat import Bot, default_registry
from hiclaw_bot.chat.audit import register_audit_command
from hiclaw_bot.chat.gc import register_gc_command
from hiclaw_bot.chat.humans import register_human_commands
from hiclaw_bot.chat.matrix import login, new_client
from hiclaw_bot.chat.teams import register_team_commands
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.config import Config
from hiclaw_bot.engine import Engine, RetryPolicy, hook_from_env
from hiclaw_bot.flows.gc import register_gc_flow
from hiclaw_bot.flows.human import register_human_flows
from hiclaw_bot.flows.services import Services, open_services
from hiclaw_bot.flows.team import register_team_flows
from hiclaw_bot.flows.worker import register_worker_flows
from hiclaw_bot.lifecycle import Lifecycle
from storage import Store

log = logging.getLogger("hiclaw_bot")


@dataclass
class App:
    config: Config
    store: Store
    engine: Engine
    services: Services
    bot: Bot
    lifecycle: Lifecycle | None = None
    api: ApiState | None = None


async def bot_token(config: Config, store: Store) -> str:
    """Log the bot in once (reusing its stored token) so the admin clients act as the bot too."""
    account = config.matrix.bot
    client = new_client(config.matrix.homeserver, f"@{account.localpart}:{config.matrix.server_name}",
                        account.device_id)
    try:
        await login(client, account, store)
        return str(client.access_token)
    finally:
        await client.close()


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[App]:
    """The bot, started: engine resumed, Matrix synced. Everything stops on exit."""
    store = await Store.open(config.database_path)
    try:
        settings = config.engine
        engine = Engine(store, boundary_hook=hook_from_env(), max_concurrent_ops=settings.max_concurrent_ops,
                        retry=RetryPolicy(max_attempts=settings.max_attempts, initial=settings.backoff_initial,
                                          maximum=settings.backoff_max))
        token = await bot_token(config, store)
        async with open_services(config, store, bot_token=token) as services:
            register_worker_flows(engine, services)
            register_human_flows(engine, services)
            register_team_flows(engine, services)
            register_gc_flow(engine, services)
            registry = default_registry()
            register_worker_commands(registry, services)
            register_team_commands(registry, config, services.gateway)
            register_human_commands(registry, services)
            register_audit_command(registry)
            register_gc_command(registry, services)
            lifecycle = Lifecycle(services, engine)
            bot = Bot(config, store, engine, registry=registry, observers=[lifecycle.observe])
            # The API opens first: its metrics count the operations resumed below, and /readyz
            # answers "not ready" (rather than nothing) until the first sync.
            async with open_api(config.api, store, engine, services.backend,
                                matrix_ready=lambda: bot.ready) as api:
                resumed = await engine.start()
                if resumed:
                    log.info("resumed %d unfinished operation(s): %s", len(resumed), resumed)
                try:
                    await lifecycle.start()
                    await bot.start()
                    try:
                        yield App(config, store, engine, services, bot, lifecycle, api)
                    finally:
                        await bot.stop()
                finally:
                    await lifecycle.stop()
                    await engine.stop()
    finally:
        await store.close()


async def serve(config: Config) -> None:
    """Run until cancelled (SIGINT/SIGTERM in the CLI); with ``ha`` on, only while holding the Lease.

    The store is opened only after the Lease is ours; losing it raises ``LeadershipLost``.
    """
    if config.ha.enabled:
        from hiclaw_bot.leadership.leading import serve_while_leading  # needs the kubernetes extra

        await serve_while_leading(config.ha, lambda: _serve(config),
                                  standby_listen=config.api.listen if config.api.enabled else None)
        return
    await _serve(config)


async def _serve(config: Config) -> None:
    async with running(config) as app:
        log.info("hiclaw-bot is up as %s", app.bot.user_id)
        await asyncio.Event().wait()

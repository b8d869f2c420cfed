"""The composition root: the wiring of clients and backends, and the function that assembles the running bot.

Store → engine → clients and backend → flows → commands → Matrix bot, in that order, and torn
down in reverse. The clients and backends are built here from the configuration (and handed to
flows in :class:`~hiclaw_bot.flows.services.Services`), so no layer below builds its own.
Operations left unfinished by a previous process resume as the engine starts; the bot's first
sync then answers (or declines, when too old) what was said while it was down.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from backends import WorkerBackend
from hiclaw_bot.api import ApiState, open_api
from hiclaw_bot.chat import Bot, default_registry
from hiclaw_bot.chat.audit import register_audit_command
from hiclaw_bot.chat.gc import register_gc_command
from hiclaw_bot.chat.humans import register_human_commands
from hiclaw_bot.chat.leader_skill import render_team_operations
from hiclaw_bot.chat.matrix import login, new_client
from hiclaw_bot.chat.teams import register_team_commands
from hiclaw_bot.chat.workers import register_worker_commands
from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.clients.matrix_admin import (
    AppServiceRegistration,
    MatrixAdmin,
    SharedSecretRegistration,
    TokenRegistration,
)
from hiclaw_bot.clients.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore
from hiclaw_bot.clients.storage_identity import IamIdentities, LocalIdentities, StorageIdentities
from hiclaw_bot.config import Config, HigressConfig, LocalStorageConfig
from hiclaw_bot.engine import Engine, RetryPolicy, hook_from_env
from hiclaw_bot.flows import names
from hiclaw_bot.flows.gc import register_gc_flow
from hiclaw_bot.flows.human import register_human_flows
from hiclaw_bot.flows.services import Services, StrandedWorkers
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


# -- wiring: clients and backends from the configuration ---------------------------------------


def make_backend(config: Config, kind: str | None = None) -> WorkerBackend:
    settings = config.backend
    kind = kind or settings.kind
    if kind == "docker":
        from backends.docker import DockerBackend
        from backends.policy import DockerPolicy

        docker = settings.docker
        return DockerBackend(
            settings.instance, base_url=docker.host, network_mode=docker.network,
            policy=DockerPolicy(allowed_registries=tuple(docker.allowed_registries),
                                allow_host_network=docker.network == "host", default_image=settings.default_image),
        )
    if kind == "kubernetes":
        from backends.kubernetes import KubernetesBackend
        from backends.policy import ImagePolicy

        k8s = settings.kubernetes
        return KubernetesBackend(settings.instance, namespace=k8s.namespace, kubeconfig=k8s.kubeconfig,
                                 context=k8s.context, in_cluster=k8s.in_cluster,
                                 policy=ImagePolicy(tuple(k8s.allowed_registries), settings.default_image))
    from backends.confinement import Confinement, can_confine
    from backends.process import ProcessBackend

    process = settings.process
    command = process.command or [sys.executable, "-m", "hiclaw_bot.agent"]
    launcher = _agent_launcher() if process.preload and not process.command else None
    confinement = None
    if process.confine and can_confine():
        confinement = Confinement(uid_base=process.uid_base)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.data_dir.chmod(0o711)  # workers pass through to their own directory; they list nothing
    return ProcessBackend(settings.instance, config.data_dir / "workers", default_command=command,
                          stop_timeout=process.grace_period, confinement=confinement, launcher=launcher)


def _agent_launcher() -> list[str]:
    """The launcher's console script beside our interpreter (a name of its own in ``ps``), else the module."""
    script = Path(sys.executable).with_name("hiclaw-agent-launcher")
    return [str(script)] if script.exists() else [sys.executable, "-m", "hiclaw_bot.agent.launcher"]


async def open_identities(config: Config, backend: WorkerBackend) -> StorageIdentities:
    """The store's identity service (IAM on the S3 endpoint unless ``iam_endpoint`` says otherwise);
    for a local directory, what hands a confined worker its own folder."""
    storage = config.storage
    if isinstance(storage, LocalStorageConfig):
        from backends.process import ProcessBackend

        confinement = backend.confinement if isinstance(backend, ProcessBackend) else None
        if confinement is None:
            return LocalIdentities()
        prefix = names.storage_identity("")
        return LocalIdentities(storage.directory, lambda identity: confinement.ids(identity.removeprefix(prefix)))
    return await IamIdentities.open(
        bucket=storage.bucket, access_key=storage.access_key.get_secret_value(),
        secret_key=storage.secret_key.get_secret_value(), endpoint_url=storage.iam_endpoint or storage.endpoint,
        region=storage.region,
    )


async def open_objects(config: Config) -> ObjectStore:
    storage = config.storage
    if isinstance(storage, LocalStorageConfig):
        return LocalObjectStore(storage.directory)
    return await S3ObjectStore.open(
        bucket=storage.bucket, access_key=storage.access_key.get_secret_value(),
        secret_key=storage.secret_key.get_secret_value(), endpoint_url=storage.endpoint,
        region=storage.region, path_style=storage.path_style,
    )


@asynccontextmanager
async def open_services(config: Config, store: Store, *, bot_token: str,
                        backend: WorkerBackend | None = None) -> AsyncIterator[Services]:
    """Open every client; close them all on exit, whatever happens.

    Refuses (:class:`StrandedWorkers`) while a worker lives on a backend not offered here.
    """
    registration = config.matrix.registration
    mode: TokenRegistration | SharedSecretRegistration | AppServiceRegistration
    if registration.mode == "token":
        assert registration.token is not None
        mode = TokenRegistration(registration.token.get_secret_value())
    elif registration.mode == "shared_secret":
        assert registration.shared_secret is not None
        mode = SharedSecretRegistration(registration.shared_secret.get_secret_value())
    else:
        assert registration.as_token is not None
        mode = AppServiceRegistration(registration.as_token.get_secret_value())
    async with AsyncExitStack() as stack:
        matrix = await stack.enter_async_context(
            MatrixAdmin(config.matrix.homeserver, server_name=config.matrix.server_name,
                        access_token=bot_token, registration=mode))
        gateway: HigressClient | None = None
        if isinstance(config.gateway, HigressConfig):
            gateway = await stack.enter_async_context(
                HigressClient(config.gateway.console_url, config.gateway.username,
                              config.gateway.password.get_secret_value()))
        objects = await open_objects(config)
        stack.push_async_callback(objects.close)
        others: dict[str, WorkerBackend] = {}
        if backend is None:  # one handed in (tests) is the only one
            backend = make_backend(config)
            stack.push_async_callback(backend.close)
            for kind in config.backend.kinds[1:]:
                others[kind] = make_backend(config, kind)
                stack.push_async_callback(others[kind].close)
        identities = await open_identities(config, backend)
        stack.push_async_callback(identities.close)
        services = Services(config=config, store=store, matrix=matrix, gateway=gateway, objects=objects,
                            backend=backend, bot_user_id=await matrix.me(), identities=identities, others=others)
        stranded = services.stranded(await store.workers.all())
        if stranded:
            raise StrandedWorkers(stranded, list(services.backends), config.backend.instance)
        yield services


# -- the running bot -----------------------------------------------------------------------------


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
            register_team_commands(registry, config, services)
            register_human_commands(registry, services)
            register_audit_command(registry)
            register_gc_command(registry, services)
            services.leader_skill = render_team_operations(registry)
            lifecycle = Lifecycle(services, engine)
            bot = Bot(config, store, engine, registry=registry, observers=[lifecycle.observe])
            # The API opens first: its metrics count the operations resumed below, and /readyz
            # answers "not ready" (rather than nothing) until the first sync.
            async with open_api(config.api, store, engine, services.backend, others=services.others,
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

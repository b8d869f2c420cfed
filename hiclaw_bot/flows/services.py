"""The clients a flow talks through, built once from the configuration.

Flows receive this container instead of building clients themselves, so tests and the dev stack
can hand in the same real clients pointed at local servers, and the composition lives in one place.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from backends import WorkerBackend
from hiclaw_bot.agent.env import LocalStorage, S3Storage
from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.clients.matrix_admin import (
    AppServiceRegistration,
    MatrixAdmin,
    SharedSecretRegistration,
    TokenRegistration,
)
from hiclaw_bot.clients.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore
from hiclaw_bot.config import Config, HigressConfig, LocalStorageConfig
from hiclaw_bot.types import UserId
from storage import Store


@dataclass
class Services:
    config: Config
    store: Store
    matrix: MatrixAdmin
    """Acts as the bot: a Synapse server admin, so it can deactivate and reactivate accounts."""
    gateway: HigressClient | None
    objects: ObjectStore
    backend: WorkerBackend
    bot_user_id: UserId
    leader_skill: str | None = None
    """The ``team-operations`` skill, rendered by the chat layer from its command registry once the
    commands are registered (``{team}`` and ``{quota}`` left to fill); pushed to team leaders."""

    @property
    def domain(self) -> str:
        return self.config.matrix.server_name

    def storage_settings(self) -> LocalStorage | S3Storage:
        """How a worker reaches its files (the same store the bot writes to)."""
        storage = self.config.storage
        if isinstance(storage, LocalStorageConfig):
            return LocalStorage(storage.directory)
        return S3Storage(endpoint=storage.endpoint, bucket=storage.bucket,
                         access_key=storage.access_key.get_secret_value(),
                         secret_key=storage.secret_key.get_secret_value(),
                         region=storage.region, path_style=storage.path_style)


def make_backend(config: Config) -> WorkerBackend:
    settings = config.backend
    if settings.kind == "docker":
        from backends.docker import DockerBackend
        from backends.policy import DockerPolicy

        docker = settings.docker
        return DockerBackend(
            settings.instance, base_url=docker.host, network_mode=docker.network,
            policy=DockerPolicy(allowed_registries=tuple(docker.allowed_registries),
                                allow_host_network=docker.network == "host"),
        )
    if settings.kind == "kubernetes":
        from backends.kubernetes import KubernetesBackend

        k8s = settings.kubernetes
        return KubernetesBackend(settings.instance, namespace=k8s.namespace, kubeconfig=k8s.kubeconfig,
                                 context=k8s.context, in_cluster=k8s.in_cluster)
    from backends.process import ProcessBackend

    command = settings.process.command or [sys.executable, "-m", "hiclaw_bot.agent"]
    return ProcessBackend(settings.instance, config.data_dir / "workers", default_command=command,
                          stop_timeout=settings.process.grace_period)


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
    """Open every client; close them all on exit, whatever happens."""
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
        if backend is None:
            backend = make_backend(config)
            stack.push_async_callback(backend.close)
        yield Services(config=config, store=store, matrix=matrix, gateway=gateway, objects=objects,
                       backend=backend, bot_user_id=await matrix.me())

"""The clients a flow talks through, built once from the configuration.

Flows receive this container instead of building clients themselves, so tests and the dev stack
can hand in the same real clients pointed at local servers, and the composition lives in one place.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from backends import WorkerBackend
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
from hiclaw_bot.engine import PermanentError
from hiclaw_bot.flows import names
from hiclaw_bot.types import UserId
from storage import Store, Worker


@dataclass
class Services:
    config: Config
    store: Store
    matrix: MatrixAdmin
    """Acts as the bot: a Synapse server admin, so it can deactivate and reactivate accounts."""
    gateway: HigressClient | None
    objects: ObjectStore
    backend: WorkerBackend
    """The default backend (``backend.kind``): new workers go there unless they ask for another."""
    bot_user_id: UserId
    identities: StorageIdentities = field(default_factory=LocalIdentities)
    """Each worker's own key to the object store: the master key in ``config`` never leaves the bot."""
    others: Mapping[str, WorkerBackend] = field(default_factory=dict)
    """The other backends of ``backend.available``, by kind."""
    leader_skill: str | None = None
    """The ``team-operations`` skill, rendered by the chat layer from its command registry once the
    commands are registered (``{team}`` and ``{quota}`` left to fill); pushed to team leaders."""

    @property
    def domain(self) -> str:
        return self.config.matrix.server_name

    @property
    def backends(self) -> dict[str, WorkerBackend]:
        """Every backend this installation serves, by kind, the default first."""
        return {self.backend.name: self.backend, **self.others}

    def backend_for(self, row: Worker | None) -> WorkerBackend:
        """The backend a worker lives on; an error a person can act on when it is not served here.

        A worker without a row (a create before its first step, a delete after its last) is on
        the default backend.
        """
        if row is None:
            return self.backend
        if not self._serves(row):
            raise PermanentError(f"{row.name} runs on backend {describe_backend(row)}, which this configuration "
                                 "does not offer; add it to backend.available")
        return self.backends[row.backend]

    async def worker_backend(self, name: str) -> WorkerBackend:
        return self.backend_for(await self.store.workers.get(name))

    def stranded(self, rows: Iterable[Worker]) -> list[Worker]:
        """The workers whose backend this configuration does not offer."""
        return [row for row in rows if not self._serves(row)]

    def _serves(self, row: Worker) -> bool:
        """Its kind is served, on our instance (a row older than the instance column: ours)."""
        instance = self.config.backend.instance
        return row.backend in self.backends and (row.backend_instance or instance) == instance


def describe_backend(row: Worker) -> str:
    return f"{row.backend} (instance {row.backend_instance})" if row.backend_instance else row.backend


class StrandedWorkers(Exception):
    """Workers live on backends the configuration no longer offers: the bot does not start.

    Starting would leave them unmanaged (or, worse, let the reconciler recreate them elsewhere
    while their old runtimes still answer with the same tokens)."""

    def __init__(self, rows: Sequence[Worker], offered: Sequence[str], instance: str) -> None:
        listed = ", ".join(f"{row.name} on {describe_backend(row)}" for row in rows)
        super().__init__(f"{len(rows)} worker(s) live on a backend this configuration does not offer: {listed}. "
                         f"It offers {', '.join(offered)} (instance {instance}): add their backend to "
                         "backend.available (and the same backend.instance), or delete them with that configuration.")
        self.workers = [row.name for row in rows]


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

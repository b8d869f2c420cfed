"""The clients a flow talks through: a container, built once from the configuration by :mod:`hiclaw_bot.app`.

Flows receive this container instead of building clients themselves, so tests and the dev stack
can hand in the same real clients pointed at local servers, and the composition lives in one place
(``hiclaw_bot.app.open_services``), above every layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backends import WorkerBackend
from hiclaw_bot.clients.higress import HigressClient
from hiclaw_bot.clients.matrix_admin import (
    MatrixAdmin,
)
from hiclaw_bot.clients.objectstore import ObjectStore
from hiclaw_bot.clients.storage_identity import LocalIdentities, StorageIdentities
from hiclaw_bot.config import Config
from hiclaw_bot.engine import PermanentError
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

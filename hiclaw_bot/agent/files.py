"""Where a worker's files are, and reading its ``openclaw.json`` the way a real worker does.

Everything of worker ``<name>`` lives under ``agents/<name>/`` in the object store: the bot writes
``openclaw.json`` there, and the agent writes what it reports back under ``state/``. The bot pushes
the config before it starts the worker, but object stores and restarts can still race it, so the
first read retries for a while before the agent gives up.
"""

from __future__ import annotations

import asyncio
import logging

from hiclaw_bot.agent.env import LocalStorage, S3Storage, StorageAccess
from hiclaw_bot.agent.settings import MatrixSettings, parse_openclaw
from hiclaw_bot.clients.errors import NotFoundError, TransientClientError
from hiclaw_bot.clients.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore
from hiclaw_bot.types import WorkerName

__all__ = ["SettingsUnavailable", "activity_key", "open_store", "openclaw_key", "read_settings"]

logger = logging.getLogger(__name__)


class SettingsUnavailable(RuntimeError):
    """``openclaw.json`` could not be read after every attempt."""


def openclaw_key(worker: WorkerName) -> str:
    return f"agents/{worker}/openclaw.json"


def activity_key(worker: WorkerName) -> str:
    return f"agents/{worker}/state/activity.json"


async def open_store(storage: StorageAccess) -> ObjectStore:
    """The object store the environment points at."""
    match storage:
        case LocalStorage(directory=directory):
            return LocalObjectStore(directory)
        case S3Storage():
            return await S3ObjectStore.open(bucket=storage.bucket, access_key=storage.access_key,
                                            secret_key=storage.secret_key, endpoint_url=storage.endpoint,
                                            region=storage.region, path_style=storage.path_style)


async def read_settings(store: ObjectStore, worker: WorkerName, *, attempts: int = 8,
                        first_delay: float = 0.5, max_delay: float = 5.0) -> MatrixSettings:
    """Read and parse ``openclaw.json``, waiting (with doubling delays) while it is missing or unreachable.

    A file that is there but unusable fails at once: waiting will not fix it.
    """
    delay = first_delay
    attempt = 1
    while True:
        try:
            return parse_openclaw(await store.get(openclaw_key(worker)))
        except (NotFoundError, TransientClientError) as exc:
            if attempt >= attempts:
                raise SettingsUnavailable(f"{openclaw_key(worker)} could not be read after {attempts} "
                                          f"attempts: {exc}") from None
            logger.info("%s not readable yet (%s); retrying in %.1f s", openclaw_key(worker), exc, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
        attempt += 1

"""The environment contract between the bot and a worker it starts: which worker, and where its files are.

A worker finds everything else (its Matrix login, its allow lists, its model) in
``agents/<name>/openclaw.json`` in object storage, which the bot rewrites whenever something
changes. Only the way *to* that file has to come from outside, and it comes as environment
variables because every backend can set those: a process's ``env``, a container's ``Env``, a pod's
``env``. The names live here, once, and both sides use this module: the bot's flows build the
variables with :func:`worker_env`, the agent reads them back with :func:`read_env`.

The module is deliberately light (standard library and :mod:`hiclaw_bot.types` only): the flows
import it, and the agent imports it before it knows which object store it will open. It takes
plain values rather than the bot's ``Config`` so that a worker image never needs the bot's
configuration model.

Variables: ``HICLAW_WORKER_NAME``, ``HICLAW_FS_KIND`` (``local`` or ``s3``), then ``HICLAW_FS_DIR``
for a local directory, or ``HICLAW_FS_ENDPOINT``, ``HICLAW_FS_BUCKET``, ``HICLAW_FS_ACCESS_KEY``,
``HICLAW_FS_SECRET_KEY``, ``HICLAW_FS_REGION`` and ``HICLAW_FS_PATH_STYLE`` for S3. The bucket
is also given as ``HICLAW_OSS_BUCKET``, the name upstream's worker entrypoints read (they default it
to ``hiclaw-storage``, so an upstream worker on any other bucket needs it); reading prefers it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from hiclaw_bot.types import WorkerName

__all__ = [
    "FS_ACCESS_KEY",
    "FS_BUCKET",
    "FS_DIR",
    "FS_ENDPOINT",
    "FS_KIND",
    "FS_PATH_STYLE",
    "FS_REGION",
    "FS_SECRET_KEY",
    "OSS_BUCKET",
    "WORKER_NAME",
    "AgentEnv",
    "EnvError",
    "LocalStorage",
    "S3Storage",
    "StorageAccess",
    "read_env",
    "worker_env",
]

WORKER_NAME = "HICLAW_WORKER_NAME"
FS_KIND = "HICLAW_FS_KIND"
FS_DIR = "HICLAW_FS_DIR"
FS_ENDPOINT = "HICLAW_FS_ENDPOINT"
FS_BUCKET = "HICLAW_FS_BUCKET"
OSS_BUCKET = "HICLAW_OSS_BUCKET"
FS_ACCESS_KEY = "HICLAW_FS_ACCESS_KEY"
FS_SECRET_KEY = "HICLAW_FS_SECRET_KEY"  # noqa: S105 (the variable's name, not a secret)
FS_REGION = "HICLAW_FS_REGION"
FS_PATH_STYLE = "HICLAW_FS_PATH_STYLE"

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class EnvError(ValueError):
    """The worker's environment is incomplete or invalid; the message names the variable, never a value."""


@dataclass(frozen=True)
class LocalStorage:
    """A directory shared by the bot and its workers (the process backend of the dev stack)."""

    directory: Path


@dataclass(frozen=True)
class S3Storage:
    """An S3-compatible bucket; the secret key stays out of the repr."""

    endpoint: str
    bucket: str
    access_key: str
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    path_style: bool = True


StorageAccess = LocalStorage | S3Storage


@dataclass(frozen=True)
class AgentEnv:
    """What a worker learns from its environment."""

    worker: WorkerName
    storage: StorageAccess


def _check_worker(worker: str) -> WorkerName:
    if not _NAME.match(worker):
        raise EnvError(f"{WORKER_NAME} must be lower-case letters, digits and '-' (at most 63)")
    return WorkerName(worker)


def worker_env(storage: StorageAccess, worker: str) -> dict[str, str]:
    """The variables that tell ``worker``'s agent where its files are.

    A local directory is made absolute here, against the bot's working directory, because the
    worker runs elsewhere. The result holds the S3 secret key: backends must treat it as a secret.
    """
    env: dict[str, str] = {WORKER_NAME: _check_worker(worker)}
    match storage:
        case LocalStorage(directory=directory):
            env |= {FS_KIND: "local", FS_DIR: str(directory.resolve())}
        case S3Storage():
            env |= {
                FS_KIND: "s3",
                FS_ENDPOINT: storage.endpoint,
                FS_BUCKET: storage.bucket,
                OSS_BUCKET: storage.bucket,
                FS_ACCESS_KEY: storage.access_key,
                FS_SECRET_KEY: storage.secret_key,
                FS_REGION: storage.region,
                FS_PATH_STYLE: "true" if storage.path_style else "false",
            }
    return env


def read_env(environ: Mapping[str, str]) -> AgentEnv:
    """Read :func:`worker_env`'s variables back; :class:`EnvError` names the first one missing or bad."""

    def need(name: str) -> str:
        value = environ.get(name, "").strip()
        if not value:
            raise EnvError(f"{name} is not set")
        return value

    worker = _check_worker(need(WORKER_NAME))
    kind = need(FS_KIND)
    if kind == "local":
        directory = Path(need(FS_DIR))
        if not directory.is_absolute():
            raise EnvError(f"{FS_DIR} must be an absolute path")
        return AgentEnv(worker, LocalStorage(directory))
    if kind == "s3":
        path_style = _BOOLEANS.get(environ.get(FS_PATH_STYLE, "true").strip().lower())
        if path_style is None:
            raise EnvError(f"{FS_PATH_STYLE} must be true or false")
        bucket = environ.get(OSS_BUCKET, "").strip() or need(FS_BUCKET)
        storage = S3Storage(endpoint=need(FS_ENDPOINT), bucket=bucket, access_key=need(FS_ACCESS_KEY),
                            secret_key=need(FS_SECRET_KEY), region=environ.get(FS_REGION, "").strip() or "us-east-1",
                            path_style=path_style)
        return AgentEnv(worker, storage)
    raise EnvError(f"{FS_KIND} must be 'local' or 's3'")

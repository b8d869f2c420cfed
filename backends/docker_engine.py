"""The Docker SDK side of the Docker backend: what a worker container runs under, and what it reads back.

:class:`~backends.docker.DockerBackend` keeps the contract (create, update, locks, threads);
this module keeps what only talks to the engine: the confinement every container gets, the
SDK's and ``requests``' exceptions mapped to the backend's error tree, a container's status read
from its attributes, the exit code of an exec, and the named network the workers join.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container

from backends.base import (
    LABEL_INSTANCE,
    LABEL_SPEC_HASH,
    WorkerState,
    WorkerStatus,
)
from backends.errors import (
    BackendError,
    Conflict,
    ExecTimeout,
    InvalidSpec,
    NotFound,
    TransientBackendError,
    Unavailable,
)

T = TypeVar("T")
BACKEND = "docker"
WORKER_USER = "10001:10001"
"""The worker image's unprivileged user (``docker/worker-agent``); forced whatever the image says."""
WORK_DIR = "/home/worker"
PIDS_LIMIT = 256
_ENGINE_NETWORKS = frozenset({"none", "host", "bridge", "default"})


def confinement() -> dict[str, Any]:
    """What every worker container runs under (fresh each time: the SDK may keep what it is given).

    The agent needs no capability (it binds no low port, owns no file it did not make, changes no
    uid), so none is kept, and nothing it runs may gain one (``no-new-privileges`` stops setuid
    binaries). The image cannot be changed from inside: the agent writes to two tmpfs, ``/tmp``
    and its home (the work directory it starts in); its files of record live in object storage. The pids limit
    keeps a fork bomb inside its own container.
    """
    return {
        "user": WORKER_USER,
        "security_opt": ["no-new-privileges:true"],
        "cap_drop": ["ALL"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=64m",  # noqa: S108 -- the container's own tmpfs
                  WORK_DIR: "rw,nosuid,nodev,size=256m,uid=10001,gid=10001,mode=0700"},
        "pids_limit": PIDS_LIMIT,
        "working_dir": WORK_DIR,
    }


_STOPPED_EXIT_CODES = frozenset({0, 137, 143})  # clean exit, or SIGKILL / SIGTERM from a stop


def ensure_network(client: docker.DockerClient, name: str, instance: str) -> None:
    """Create the named network the workers join (a bridge, labelled ours) when it is missing.

    ``none``, ``host``, ``bridge`` and ``default`` are the engine's own and never created; a
    lost race with another replica shows up as the network existing on the second look.
    """
    if name in _ENGINE_NETWORKS or name.startswith("container:"):
        return
    def exists() -> bool:  # the engine's name filter matches substrings
        return any(network.name == name for network in client.networks.list(names=[name]))

    if exists():
        return
    try:
        client.networks.create(name, driver="bridge", check_duplicate=True,
                               labels={LABEL_INSTANCE: instance})
    except docker.errors.APIError as exc:
        if not exists():
            raise BackendError(BACKEND, f"cannot create network {name}: {exc.explanation}") from exc


def translated(call: Callable[[Any], T], client: Any) -> T:
    """Run ``call`` and turn the SDK's and ``requests``' exceptions into the backend's tree."""
    try:
        return call(client)
    except docker.errors.ImageNotFound as exc:
        raise BackendError(BACKEND, f"image not found on the engine: {exc.explanation}") from exc
    except docker.errors.NotFound as exc:
        raise NotFound(BACKEND, str(exc.explanation)) from exc
    except docker.errors.APIError as exc:
        status = exc.status_code or 0
        if status == 409:
            raise Conflict(BACKEND, str(exc.explanation)) from exc
        if status == 429 or status >= 500:
            raise TransientBackendError(BACKEND, f"engine answered {status}: {exc.explanation}") from exc
        raise BackendError(BACKEND, f"engine answered {status}: {exc.explanation}") from exc
    except requests.exceptions.Timeout as exc:
        raise TransientBackendError(BACKEND, "the engine did not answer in time") from exc
    except (requests.exceptions.ConnectionError, docker.errors.DockerException) as exc:
        raise Unavailable(BACKEND, f"cannot reach the Docker engine: {type(exc).__name__}") from exc


def get_container(client: docker.DockerClient, container_name: str) -> Container | None:
    try:
        return client.containers.get(container_name)
    except docker.errors.NotFound:
        return None


def check_argv(argv: Sequence[str]) -> builtins.list[str]:
    command = list(argv)
    if not command or not all(isinstance(arg, str) for arg in command):
        raise InvalidSpec(BACKEND, "exec needs a non-empty list of strings")
    return command


def collect(stream: Iterator[tuple[bytes | None, bytes | None]]) -> tuple[bytes, bytes]:
    stdout, stderr = bytearray(), bytearray()
    for out, err in stream:
        stdout += out or b""
        stderr += err or b""
    return bytes(stdout), bytes(stderr)


def exec_exit_code(client: docker.DockerClient, exec_id: str, deadline: float) -> int:
    """The exec's exit code; the engine may report it a moment after the output ends."""
    while True:
        info = client.api.exec_inspect(exec_id)
        if not info["Running"] and info["ExitCode"] is not None:
            return int(info["ExitCode"])
        if time.monotonic() >= deadline:
            raise ExecTimeout(BACKEND, "the command's output ended but it did not exit")
        time.sleep(0.01)


def status_of(name: str, attrs: Mapping[str, Any]) -> WorkerStatus:
    state = attrs["State"]
    status = state["Status"]
    image = attrs["Config"]["Image"]
    spec_hash = (attrs["Config"].get("Labels") or {}).get(LABEL_SPEC_HASH)
    started_at = _parse_time(state.get("StartedAt"))
    code = state.get("ExitCode")
    if status == "running":
        observed, detail = WorkerState.RUNNING, ""
    elif status == "restarting":
        observed, detail = WorkerState.STARTING, "restarting"
    elif status == "created":
        observed, detail = WorkerState.STOPPED, "created, never started"
    elif status == "exited" and not state.get("OOMKilled") and code in _STOPPED_EXIT_CODES:
        observed, detail = WorkerState.STOPPED, f"exited with code {code}"
    elif status in ("exited", "dead"):
        oom = " (out of memory)" if state.get("OOMKilled") else ""
        observed, detail = WorkerState.FAILED, f"exited with code {code}{oom}"
    elif status == "paused":
        observed, detail = WorkerState.STOPPED, "paused"
    else:
        observed, detail = WorkerState.UNKNOWN, f"container state {status!r}"
    return WorkerStatus(name, observed, image, spec_hash, started_at, detail)


def _parse_time(value: str | None) -> datetime | None:
    """Docker's RFC 3339 times carry nanoseconds; Python keeps microseconds. Year 1 means never."""
    if not value or value.startswith("0001-"):
        return None
    head, _, fraction = value.rstrip("Z").partition(".")
    parsed = datetime.fromisoformat(f"{head}.{fraction[:6].ljust(6, '0')}" if fraction else head)
    return parsed.replace(tzinfo=UTC)

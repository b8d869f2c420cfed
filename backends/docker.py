"""Workers as Docker containers, through the ``docker`` SDK kept off the event loop.

The SDK is synchronous (``requests`` over the engine's socket), so every call runs in a bounded
thread pool owned by the backend: a slow engine can tie up those threads, never the bot's loop.

Existence is always decided by inspecting the deterministic name (``containers.get``), never by
reading a status code off a create: a 409 on create only sends us back to inspect. Containers run
with ``init=True`` so the engine's tiny init forwards SIGTERM and reaps children; without it a
shell as PID 1 ignores SIGTERM and every stop waits out its full timeout.

An update never edits the running container. It creates the new one beside it under a temporary
name (``<name>.next``), starts it and waits until it proves ready (it keeps running for a settle
period, or a configured readiness command succeeds); only then is the old one removed and the new
one renamed into place. If the new one fails it is removed and the old one keeps running. Should
the bot die between "remove old" and "rename new", the next call that changes the worker finishes
the rename: ``<name>.next`` only outlives its old container once it has proved ready.

Every request passes :class:`backends.policy.DockerPolicy` before it is sent.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container
from docker.types.daemon import CancellableStream

from backends.base import (
    LABEL_INSTANCE,
    LABEL_SPEC_HASH,
    LABEL_WORKER,
    BackendRef,
    ExecResult,
    WorkerSpec,
    WorkerState,
    WorkerStatus,
    check_instance,
    check_name,
    object_name,
    parse_quantity,
    worker_labels,
)
from backends.docker_engine import (
    BACKEND,
    check_argv,
    collect,
    confinement,
    ensure_network,
    exec_exit_code,
    get_container,
    status_of,
    translated,
)
from backends.errors import (
    BackendError,
    Conflict,
    ExecTimeout,
    InvalidSpec,
    NotFound,
    UpdateFailed,
)
from backends.policy import DockerPolicy

T = TypeVar("T")
NEXT_SUFFIX = ".next"
_RESERVED_OPTIONS = frozenset({"name", "image", "command", "environment", "labels", "init", "detach",
                               "network_mode", "nano_cpus", "cpu_shares", "mem_limit", "mem_reservation",
                               "user", "security_opt", "cap_drop", "read_only", "pids_limit", "tmpfs",
                               "working_dir"})


class DockerBackend:
    """Workers as containers ``hiclaw-worker-<name>`` on one Docker engine.

    ``base_url`` defaults to the environment (``DOCKER_HOST``...). ``create_options`` are extra
    keyword arguments for ``containers.create`` (named volumes, ``cap_add``...); the policy checks
    them like everything else. ``settle_seconds`` is how long a new container must keep running
    during an update to count as ready, unless ``readiness_command`` is given: then it is ready
    when that command exits 0 inside it (tried until ``ready_timeout``).
    """

    name = BACKEND

    def __init__(self, instance: str, *, base_url: str | None = None, network_mode: str = "none",
                 policy: DockerPolicy | None = None, create_options: Mapping[str, Any] | None = None,
                 stop_timeout: float = 10.0, settle_seconds: float = 2.0,
                 readiness_command: Sequence[str] | None = None, ready_timeout: float = 60.0,
                 max_threads: int = 8, api_timeout: float = 60.0) -> None:
        check_instance(BACKEND, instance)
        reserved = sorted(_RESERVED_OPTIONS & set(create_options or {}))
        if reserved:
            raise InvalidSpec(BACKEND, f"create_options may not set {', '.join(reserved)}")
        self.instance = instance
        self._base_url = base_url
        self._network_mode = network_mode
        self._policy = policy or DockerPolicy()
        self._create_options = dict(create_options or {})
        self._stop_timeout = stop_timeout
        self._settle_seconds = settle_seconds
        self._readiness_command = list(readiness_command) if readiness_command else None
        self._ready_timeout = ready_timeout
        self._max_threads = max_threads
        self._api_timeout = api_timeout
        self._pool = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="docker-backend")
        self._client: docker.DockerClient | None = None
        self._connecting = asyncio.Lock()
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the contract ---------------------------------------------------------------------------

    async def create(self, spec: WorkerSpec, *, replace: bool = False) -> BackendRef:
        request = self._request(spec, object_name(spec.name))
        async with self._lock(spec.name):
            def create(client: docker.DockerClient) -> tuple[Container, bool]:
                existing = self._find(client, spec.name, recover=True)
                if existing is None:
                    try:
                        return client.containers.create(**request), False
                    except docker.errors.APIError as exc:
                        if exc.status_code != 409:
                            raise
                        existing = self._find(client, spec.name, recover=False)
                        if existing is None:
                            raise
                return existing, True

            container, adopted = await self._run(create)
            found_hash = container.labels.get(LABEL_SPEC_HASH)
            if adopted and found_hash != spec.spec_hash:
                if not replace:
                    raise Conflict(BACKEND, f"worker {spec.name} exists with spec hash {found_hash}, "
                                            f"not {spec.spec_hash}")
                await self._update_locked(spec.name, spec)
                container = await self._run(lambda client: self._require(client, spec.name))
        return BackendRef(BACKEND, spec.name, object_name(spec.name), str(container.id),
                          spec.spec_hash, adopted)

    async def start(self, name: str) -> None:
        check_name(BACKEND, name)
        async with self._lock(name):
            def start(client: docker.DockerClient) -> None:
                container = self._require(client, name)
                if not container.attrs["State"]["Running"]:
                    container.start()
            await self._run(start)

    async def stop(self, name: str) -> None:
        check_name(BACKEND, name)
        async with self._lock(name):
            def stop(client: docker.DockerClient) -> None:
                container = self._require(client, name)
                if container.attrs["State"]["Running"]:
                    container.stop(timeout=math.ceil(self._stop_timeout))
            await self._run(stop)

    async def update(self, name: str, spec: WorkerSpec) -> None:
        check_name(BACKEND, name)
        if spec.name != name:
            raise InvalidSpec(BACKEND, f"spec is for worker {spec.name}, not {name}")
        async with self._lock(name):
            await self._update_locked(name, spec)

    async def delete(self, name: str) -> None:
        check_name(BACKEND, name)
        async with self._lock(name):
            def delete(client: docker.DockerClient) -> None:
                for cname in (object_name(name), object_name(name) + NEXT_SUFFIX):
                    container = get_container(client, cname)
                    if container is not None:
                        self._owned(container)
                        with suppress(docker.errors.NotFound):
                            container.remove(force=True, v=True)
            await self._run(delete)

    async def status(self, name: str) -> WorkerStatus:
        check_name(BACKEND, name)
        container = await self._run(lambda client: self._find(client, name, recover=False))
        if container is None:
            return WorkerStatus(name, WorkerState.NOT_FOUND)
        return status_of(name, container.attrs)

    async def exec(self, name: str, argv: Sequence[str], timeout: float) -> ExecResult:  # noqa: ASYNC109
        check_name(BACKEND, name)
        command = check_argv(argv)
        container = await self._run(lambda client: self._require(client, name, recover=False))
        if not container.attrs["State"]["Running"]:
            raise Conflict(BACKEND, f"worker {name} is not running")

        def begin(client: docker.DockerClient) -> tuple[str, CancellableStream[tuple[bytes | None, bytes | None]]]:
            exec_id = client.api.exec_create(container.id, command, stdout=True, stderr=True)["Id"]
            return exec_id, client.api.exec_start(exec_id, stream=True, demux=True)

        exec_id, stream = await self._run(begin)
        loop = asyncio.get_running_loop()
        collected = loop.run_in_executor(self._pool, collect, stream)
        try:
            stdout, stderr = await asyncio.wait_for(asyncio.shield(collected), timeout)
        except TimeoutError:
            stream.close()  # shuts the socket down: the reading thread stops
            await collected
            raise ExecTimeout(BACKEND, f"command in worker {name} did not finish in {timeout:g}s; "
                                       "Docker cannot cancel it, it runs on until it exits") from None
        exit_code = await self._run(lambda client: exec_exit_code(client, exec_id, time.monotonic() + timeout))
        return ExecResult(exit_code, stdout.decode(errors="replace"), stderr.decode(errors="replace"))

    async def logs(self, name: str, tail: int | None = None) -> str:
        check_name(BACKEND, name)

        def logs(client: docker.DockerClient) -> bytes:
            container = self._require(client, name, recover=False)
            return container.logs(stdout=True, stderr=True, tail="all" if tail is None else tail)
        return (await self._run(logs)).decode(errors="replace")

    async def list(self) -> builtins.list[WorkerStatus]:
        def containers(client: docker.DockerClient) -> builtins.list[Container]:
            filters: dict[str, str | builtins.list[str] | bool] = {
                "label": [f"{LABEL_INSTANCE}={self.instance}", LABEL_WORKER]}
            return client.containers.list(all=True, filters=filters)
        by_worker: dict[str, Container] = {}
        for container in await self._run(containers):
            worker = container.labels[LABEL_WORKER]
            if container.name == object_name(worker) or worker not in by_worker:
                by_worker[worker] = container
        return [status_of(worker, by_worker[worker].attrs) for worker in sorted(by_worker)]

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await asyncio.get_running_loop().run_in_executor(self._pool, client.close)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- update ---------------------------------------------------------------------------------

    async def _update_locked(self, name: str, spec: WorkerSpec) -> None:
        cname = object_name(name)
        request = self._request(spec, cname + NEXT_SUFFIX)

        def prepare(client: docker.DockerClient) -> tuple[Container, Container | None]:
            old = self._require(client, name)
            if old.labels.get(LABEL_SPEC_HASH) == spec.spec_hash:
                return old, None
            stale = get_container(client, cname + NEXT_SUFFIX)
            if stale is not None:
                stale.remove(force=True)
            try:
                new = client.containers.create(**request)
            except docker.errors.APIError as exc:
                raise UpdateFailed(BACKEND, f"could not create the new container: {exc.explanation}") from exc
            return old, new

        old, new = await self._run(prepare)
        if new is None:
            return
        if old.attrs["State"]["Running"]:
            failure = await self._start_and_wait_ready(new)
            if failure is not None:
                await self._run(lambda client: new.remove(force=True))
                raise UpdateFailed(BACKEND, f"worker {name} kept its previous version: {failure}")

        def take_over(client: docker.DockerClient) -> None:
            old.stop(timeout=math.ceil(self._stop_timeout))
            old.remove(force=True, v=True)
            new.rename(cname)
        await self._run(take_over)

    async def _start_and_wait_ready(self, new: Container) -> str | None:
        """Start ``new``; None once it is ready, else why it is not."""
        try:
            await self._run(lambda client: new.start())
        except BackendError as exc:
            return f"the new container did not start: {exc.message}"
        deadline = time.monotonic() + (self._ready_timeout if self._readiness_command else self._settle_seconds)
        while True:
            state = await self._run(lambda client: client.api.inspect_container(str(new.id))["State"])
            if not state["Running"] or state["Restarting"]:
                return f"the new container exited with code {state['ExitCode']}"
            if self._readiness_command is not None:
                try:
                    probe = await self._probe(str(new.id), self._readiness_command)
                except BackendError:
                    probe = -1
                if probe == 0:
                    return None
            if time.monotonic() >= deadline:
                return "the readiness command never succeeded" if self._readiness_command else None
            await asyncio.sleep(0.1)

    async def _probe(self, container_id: str, command: builtins.list[str]) -> int:
        """Exit code of ``command`` run to completion in a container (the readiness probe)."""
        def probe(client: docker.DockerClient) -> int:
            exit_code, _ = client.containers.get(container_id).exec_run(command)
            return -1 if exit_code is None else exit_code
        return await self._run(probe)

    # -- plumbing -------------------------------------------------------------------------------

    def _request(self, spec: WorkerSpec, container_name: str) -> dict[str, Any]:
        """The ``containers.create`` arguments for ``spec``; refused by the policy before any call."""
        request: dict[str, Any] = {
            **self._create_options,
            "name": container_name,
            "image": spec.image,
            "command": list(spec.command) if spec.command is not None else None,
            "environment": dict(spec.env),
            "labels": worker_labels(spec, self.instance),
            "init": True,
            "detach": True,
            "network_mode": self._network_mode,
            **confinement(),
        }
        resources = spec.resources
        if resources is not None:
            if resources.cpu_limit:
                request["nano_cpus"] = int(parse_quantity(resources.cpu_limit) * 10**9)
            if resources.cpu_request:
                request["cpu_shares"] = max(2, int(parse_quantity(resources.cpu_request) * 1024))
            if resources.memory_limit:
                request["mem_limit"] = int(parse_quantity(resources.memory_limit))
            if resources.memory_request:
                request["mem_reservation"] = int(parse_quantity(resources.memory_request))
        self._policy.check(request)
        return request

    def _find(self, client: docker.DockerClient, name: str, *, recover: bool) -> Container | None:
        """The worker's container by name; a proven ``.next`` left by an interrupted update counts.

        ``recover`` finishes that update by renaming it: only for calls that hold the worker's lock,
        never while an update of this backend may be between its two steps.
        """
        container = get_container(client, object_name(name))
        if container is not None:
            return self._owned(container)
        pending = get_container(client, object_name(name) + NEXT_SUFFIX)
        if pending is not None and recover:
            self._owned(pending).rename(object_name(name))
            pending.reload()
        return None if pending is None else self._owned(pending)

    def _require(self, client: docker.DockerClient, name: str, *, recover: bool = True) -> Container:
        container = self._find(client, name, recover=recover)
        if container is None:
            raise NotFound(BACKEND, f"worker {name} has no container")
        return container

    def _owned(self, container: Container) -> Container:
        """Refuse a container another bot instance made: names are shared by the whole engine."""
        if container.labels.get(LABEL_INSTANCE) != self.instance:
            raise Conflict(BACKEND, f"container {container.name} belongs to another bot instance")
        return container

    @asynccontextmanager
    async def _lock(self, name: str) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            yield

    async def _run(self, call: Callable[[docker.DockerClient], T]) -> T:
        client = await self._connect()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(translated, call, client))

    async def _connect(self) -> docker.DockerClient:
        async with self._connecting:
            if self._client is None:
                def connect() -> docker.DockerClient:
                    options: dict[str, Any] = {"timeout": int(self._api_timeout), "max_pool_size": self._max_threads}
                    if self._base_url is None:
                        return docker.from_env(**options)
                    return docker.DockerClient(base_url=self._base_url, **options)
                def connect_with_network() -> docker.DockerClient:
                    client = connect()
                    ensure_network(client, self._network_mode, self.instance)
                    return client

                loop = asyncio.get_running_loop()
                self._client = await loop.run_in_executor(self._pool, translated,
                                                          lambda _: connect_with_network(), None)
            return self._client

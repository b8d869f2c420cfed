"""One harness per backend, so a single contract suite runs against Docker, Kubernetes and processes.

Each test gets a backend with an instance id of its own, so tests never see each other's
workers; at teardown every worker that instance still lists is deleted, then the backend closed.
The services come from the session fixtures: the private dockerd, and the fake (or real)
Kubernetes API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from backends.base import WorkerBackend, WorkerSpec, WorkerState, WorkerStatus
from backends.process import ProcessBackend
from tests.fixtures.backends import (
    FAILING_COMMAND,
    WORKER_COMMAND,
    close_all,
    docker_backend,
    kubernetes_backend,
    unique,
)
from tests.fixtures.dockerd import DockerEngine
from tests.fixtures.k8s import KubeTarget

BACKENDS = ("docker", "kubernetes", "process")

BackendFactory = Callable[[str], WorkerBackend]


@dataclass
class Harness:
    """A backend plus what the contract tests need to know about its kind."""

    kind: str
    backend: WorkerBackend
    image_v1: str
    image_v2: str
    bad_image: str | None  # an image that never runs (Kubernetes); else a command that exits
    factory: BackendFactory
    others: list[WorkerBackend] = field(default_factory=list)

    @classmethod
    @asynccontextmanager
    async def opened(cls, kind: str, factory: BackendFactory, images: dict[str, str]) -> AsyncIterator[Harness]:
        """A harness on a fresh instance; every backend it made is emptied and closed after."""
        harness = cls(kind, factory(unique("test-")), images["v1"], images["v2"], images.get("bad"), factory)
        try:
            yield harness
        finally:
            await close_all(harness.backend, *harness.others)

    def spec(self, name: str, *, version: int = 1, greeting: str = "hello") -> WorkerSpec:
        image = self.image_v1 if version == 1 else self.image_v2
        return WorkerSpec(name, image, WORKER_COMMAND, {"GREETING": greeting}, {"hiclaw-test": "contract"})

    def failing_spec(self, name: str) -> WorkerSpec:
        """A version that never becomes ready."""
        if self.bad_image is not None:
            return WorkerSpec(name, self.bad_image, WORKER_COMMAND, {"GREETING": "broken"})
        return WorkerSpec(name, self.image_v2, FAILING_COMMAND, {"GREETING": "broken"})

    def another_instance(self) -> WorkerBackend:
        """A second backend of the same kind on the same engine, under another instance id."""
        backend = self.factory(unique("other-"))
        self.others.append(backend)
        return backend

    async def running(self, spec: WorkerSpec) -> WorkerSpec:
        await self.backend.create(spec)
        await self.backend.start(spec.name)
        await self.wait_for(spec.name, WorkerState.RUNNING)
        return spec

    async def wait_for(self, name: str, state: WorkerState, timeout: float = 30.0) -> WorkerStatus:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            status = await self.backend.status(name)
            if status.state == state:
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} stayed {status.state} ({status.detail}), never {state}")
            await asyncio.sleep(0.05)


def kube_images(target: KubeTarget) -> dict[str, str]:
    return {"v1": target.image_v1, "v2": target.image_v2, "bad": target.bad_image}


@pytest.fixture(params=BACKENDS)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, BackendFactory, dict[str, str]]:
    """(kind, factory by instance id, images). Sync, so it may pull in the session services."""
    kind = request.param
    if kind == "docker":
        engine: DockerEngine = request.getfixturevalue("dockerd")
        return kind, lambda instance: docker_backend(engine, instance), {"v1": engine.image_v1, "v2": engine.image_v2}
    if kind == "kubernetes":
        target: KubeTarget = request.getfixturevalue("kube")
        return kind, lambda instance: kubernetes_backend(target, instance), kube_images(target)
    return kind, lambda instance: ProcessBackend(instance, tmp_path / "workers", settle_seconds=0.5, stop_timeout=2), \
        {"v1": "localhost/hiclaw-test/busybox:1", "v2": "localhost/hiclaw-test/busybox:2"}


@pytest.fixture
async def harness(backend_factory: tuple[str, BackendFactory, dict[str, str]]) -> AsyncIterator[Harness]:
    async with Harness.opened(*backend_factory) as harness:
        yield harness

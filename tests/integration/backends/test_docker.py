"""What only the Docker backend promises: the docker-proxy policy, the container it makes, and an
update that never leaves the worker without a container."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import docker
import docker.types
import pytest

from backends.base import LABEL_INSTANCE, LABEL_SPEC_HASH, LABEL_WORKER, Resources, WorkerSpec, WorkerState
from backends.docker import DockerBackend
from backends.errors import Conflict, InvalidSpec, PolicyViolation, Unavailable, UpdateFailed
from backends.policy import DockerPolicy, normalise_image
from tests.fixtures.backends import WORKER_COMMAND, docker_backend, owned, unique
from tests.fixtures.dockerd import DockerEngine

NOWHERE = "unix:///nonexistent/hiclaw/docker.sock"  # any engine call here fails with Unavailable


@pytest.fixture
async def backend(dockerd: DockerEngine) -> AsyncIterator[DockerBackend]:
    async with owned(docker_backend(dockerd, unique("test-"))) as backend:
        yield backend


def worker(name: str, image: str = "localhost/hiclaw-test/busybox:1", **env: str) -> WorkerSpec:
    return WorkerSpec(name, image, WORKER_COMMAND, env or {"GREETING": "hello"})


@pytest.mark.parametrize(("options", "rule"), [
    ({"network_mode": "host"}, "network mode 'host'"),
    ({"create_options": {"privileged": True}}, "privileged"),
    ({"create_options": {"volumes": {"/etc": {"bind": "/host-etc", "mode": "ro"}}}}, "bind mounts"),
    ({"create_options": {"volumes": ["/var/run/docker.sock:/docker.sock"]}}, "bind mounts"),
    ({"create_options": {"mounts": [docker.types.Mount("/host", "/", type="bind")]}}, "bind mounts"),
    ({"create_options": {"cap_add": ["SYS_ADMIN"]}}, "SYS_ADMIN"),
    ({"create_options": {"cap_add": ["CAP_NET_ADMIN", "chown"]}}, "NET_ADMIN"),
    ({"create_options": {"cap_add": ["ALL"]}}, "ALL"),
    ({"create_options": {"pid_mode": "host"}}, "PID mode 'host'"),
    ({"network_mode": "container:other"}, "network mode"),
])
async def test_policy_refuses_before_any_engine_call(options: dict[str, Any], rule: str) -> None:
    backend = DockerBackend("policy", base_url=NOWHERE, **options)
    with pytest.raises(PolicyViolation) as refused:
        await backend.create(worker("alice"))
    assert rule in refused.value.rule
    with pytest.raises(PolicyViolation):
        await backend.update("alice", worker("alice"))
    await backend.close()


async def test_policy_refuses_foreign_registries() -> None:
    backend = DockerBackend("policy", base_url=NOWHERE)
    with pytest.raises(PolicyViolation, match=r"image 'ghcr\.io/acme/worker:1' \(registry 'ghcr\.io'\) is not allowed"):
        await backend.create(worker("alice", "ghcr.io/acme/worker:1"))
    await backend.close()


@pytest.mark.parametrize(("image", "full"), [
    ("attacker/x", "docker.io/attacker/x"), ("busybox", "docker.io/library/busybox"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"), ("index.docker.io/attacker/x:1", "docker.io/attacker/x:1"),
])
async def test_a_short_name_is_docker_hubs_and_refused(image: str, full: str) -> None:
    """A name without a registry is not "local": the engine pulls it from Docker Hub."""
    assert normalise_image(image) == full
    backend = DockerBackend("policy", base_url=NOWHERE, policy=DockerPolicy(allowed_registries=("ghcr.io",)))
    with pytest.raises(PolicyViolation, match=re.escape(f"image '{full}'")):
        await backend.create(worker("alice", image))
    await backend.close()


@pytest.mark.parametrize(("image", "policy", "options"), [
    ("localhost:5000/worker:1", DockerPolicy(), {}),
    ("127.0.0.1/worker:1", DockerPolicy(), {}),
    ("registry-7.example.com/worker:1", DockerPolicy(allowed_registries=("registry-*.example.com",)), {}),
    ("localhost/worker:1", DockerPolicy(allow_host_network=True), {"network_mode": "host"}),
    ("hiclaw/worker-agent:latest", DockerPolicy(default_image="hiclaw/worker-agent:latest"), {}),
    ("busybox", DockerPolicy(allowed_registries=("docker.io/library/*",)), {}),
    ("localhost/worker:1", DockerPolicy(), {"create_options": {"volumes": {"worker-data": {"bind": "/data"}},
                                                     "cap_add": ["NET_BIND_SERVICE"]}}),
])
async def test_policy_lets_the_allowed_through(image: str, policy: DockerPolicy, options: dict[str, Any]) -> None:
    backend = DockerBackend("policy", base_url=NOWHERE, policy=policy, **options)
    with pytest.raises(Unavailable):  # past the policy: the (absent) engine is reached
        await backend.create(worker("alice", image))
    await backend.close()


def test_reserved_create_options_are_refused() -> None:
    with pytest.raises(InvalidSpec, match="labels, name"):
        DockerBackend("x", create_options={"name": "other", "labels": {}})


async def test_an_unreachable_engine_is_transient() -> None:
    backend = DockerBackend("nowhere", base_url=NOWHERE)
    with pytest.raises(Unavailable) as failed:
        await backend.status("alice")
    assert failed.value.transient
    await backend.close()


async def test_the_container_it_makes(backend: DockerBackend, docker_client: docker.DockerClient) -> None:
    spec = WorkerSpec(unique(), "localhost/hiclaw-test/busybox:1", WORKER_COMMAND, {"GREETING": "hi"}, {"team": "a"},
                      Resources(cpu_limit="500m", memory_limit="64Mi", memory_request="32Mi"))
    ref = await backend.create(spec)
    container = docker_client.containers.get(f"hiclaw-worker-{spec.name}")
    host = container.attrs["HostConfig"]
    assert container.id == ref.external_id
    assert (host["Init"], host["NetworkMode"], host["Privileged"]) == (True, "none", False)
    assert (host["NanoCpus"], host["Memory"], host["MemoryReservation"]) == (5 * 10**8, 64 * 2**20, 32 * 2**20)
    assert container.labels == {LABEL_WORKER: spec.name, LABEL_SPEC_HASH: spec.spec_hash,
                                LABEL_INSTANCE: backend.instance, "team": "a"}
    await backend.start(spec.name)
    await backend.stop(spec.name)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 143  # the init forwarded SIGTERM: no 10 s wait, no SIGKILL


async def test_update_replaces_the_container_under_the_same_name(backend: DockerBackend,
                                                                 docker_client: docker.DockerClient) -> None:
    name = unique()
    old = await backend.create(worker(name))
    await backend.start(name)
    await backend.update(name, worker(name, "localhost/hiclaw-test/busybox:2"))
    containers = docker_client.containers.list(all=True, filters={"label": f"{LABEL_WORKER}={name}"})
    assert [c.name for c in containers] == [f"hiclaw-worker-{name}"]
    assert containers[0].id != old.external_id
    result = await backend.exec(name, ["sh", "-c", "echo $IMAGE_VERSION"], 10)
    assert result.stdout == "2\n"


async def test_failed_update_removes_the_new_container(backend: DockerBackend,
                                                      docker_client: docker.DockerClient) -> None:
    name = unique()
    old = await backend.create(worker(name))
    await backend.start(name)
    with pytest.raises(UpdateFailed, match="exited with code 3"):
        await backend.update(name, WorkerSpec(name, "localhost/hiclaw-test/busybox:2", ["sh", "-c", "exit 3"]))
    with pytest.raises(UpdateFailed, match="could not create the new container"):
        await backend.update(name, worker(name, "localhost/hiclaw-test/not-imported:1"))
    containers = docker_client.containers.list(all=True, filters={"label": f"{LABEL_WORKER}={name}"})
    assert [(c.id, c.status) for c in containers] == [(old.external_id, "running")]


async def test_readiness_command_decides_an_update(dockerd: DockerEngine) -> None:
    backend = DockerBackend(unique("test-"), base_url=dockerd.base_url, readiness_command=["test", "-f", "ready"],
                            ready_timeout=1.0, stop_timeout=2)
    name = unique()
    try:
        await backend.create(worker(name))
        await backend.start(name)
        never_ready = WorkerSpec(name, "localhost/hiclaw-test/busybox:2", WORKER_COMMAND, {"GREETING": "never"})
        with pytest.raises(UpdateFailed, match="readiness command never succeeded"):
            await backend.update(name, never_ready)
        ready = WorkerSpec(name, "localhost/hiclaw-test/busybox:2", ["sh", "-c", "touch ready; exec sleep 600"])
        await backend.update(name, ready)
        assert (await backend.status(name)).spec_hash == ready.spec_hash
    finally:
        await backend.delete(name)
        await backend.close()


async def test_an_interrupted_update_is_finished_by_the_next_call(backend: DockerBackend,
                                                                 docker_client: docker.DockerClient) -> None:
    """The bot died after removing the old container and before renaming the new one."""
    name = unique()
    await backend.create(worker(name))
    new_spec = worker(name, "localhost/hiclaw-test/busybox:2")
    docker_client.containers.get(f"hiclaw-worker-{name}").remove(force=True)
    labels = {LABEL_WORKER: name, LABEL_SPEC_HASH: new_spec.spec_hash, LABEL_INSTANCE: backend.instance}
    docker_client.containers.run("localhost/hiclaw-test/busybox:2", WORKER_COMMAND, name=f"hiclaw-worker-{name}.next",
                          labels=labels, init=True, network_mode="none", detach=True)
    assert (await backend.status(name)).spec_hash == new_spec.spec_hash  # observed, not yet moved
    await backend.start(name)  # a call that changes the worker finishes the rename
    assert [c.name for c in docker_client.containers.list(filters={"label": f"{LABEL_WORKER}={name}"})] == [
        f"hiclaw-worker-{name}"]
    assert (await backend.status(name)).state == WorkerState.RUNNING


async def test_another_instances_container_is_not_ours(backend: DockerBackend, dockerd: DockerEngine) -> None:
    other = DockerBackend(unique("other-"), base_url=dockerd.base_url)
    name = unique()
    await other.create(worker(name))
    try:
        for call in (lambda: backend.create(worker(name)), lambda: backend.start(name), lambda: backend.delete(name),
                     lambda: backend.status(name)):
            with pytest.raises(Conflict, match="another bot instance"):
                await call()
        assert await backend.list() == []
    finally:
        await other.delete(name)
        await other.close()

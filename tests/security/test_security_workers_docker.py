"""A Docker worker runs confined: read back from the real dockerd, and tried from inside.

The HostConfig the engine reports is what it enforces; the commands run inside the container
show the effect (no root, no writable image, no way to gain a privilege).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import docker
import pytest

from backends.base import Resources, WorkerSpec
from backends.docker import DockerBackend
from backends.errors import InvalidSpec, PolicyViolation
from backends.policy import DockerPolicy
from tests.fixtures.backends import WORKER_COMMAND, docker_backend, owned, unique
from tests.fixtures.dockerd import DockerEngine


@pytest.fixture
async def backend(dockerd: DockerEngine) -> AsyncIterator[DockerBackend]:
    async with owned(docker_backend(dockerd, unique("sec-"))) as backend:
        yield backend


async def test_the_engine_reports_the_confinement(backend: DockerBackend, docker_client: docker.DockerClient,
                                                  dockerd: DockerEngine) -> None:
    spec = WorkerSpec(unique(), dockerd.image_v1, WORKER_COMMAND, {"GREETING": "hi"},
                      resources=Resources(cpu_limit="1", memory_limit="1Gi", cpu_request="100m",
                                          memory_request="256Mi"))
    await backend.create(spec)
    container = docker_client.containers.get(f"hiclaw-worker-{spec.name}")
    host = container.attrs["HostConfig"]
    assert container.attrs["Config"]["User"] == "10001:10001"
    assert host["CapDrop"] == ["ALL"]
    assert not host.get("CapAdd")
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["ReadonlyRootfs"] is True
    assert set(host["Tmpfs"]) == {"/tmp", "/home/worker"}
    assert container.attrs["Config"]["WorkingDir"] == "/home/worker"
    assert host["PidsLimit"] == 256
    assert (host["NanoCpus"], host["Memory"]) == (10**9, 2**30)
    assert host["Privileged"] is False
    assert host["NetworkMode"] == "none"


async def test_inside_the_container(backend: DockerBackend, dockerd: DockerEngine) -> None:
    name = unique()
    await backend.create(WorkerSpec(name, dockerd.image_v1, WORKER_COMMAND))
    await backend.start(name)
    ids = await backend.exec(name, ["id", "-u"], 10)
    assert ids.stdout.strip() == "10001"
    assert (await backend.exec(name, ["sh", "-c", "touch /etc/planted"], 10)).exit_code != 0, "the image is read-only"
    assert (await backend.exec(name, ["sh", "-c", "echo x > /tmp/ok && echo y > ok"], 10)).exit_code == 0
    status = await backend.exec(name, ["sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"], 10)
    assert "CapEff:\t0000000000000000" in status.stdout
    assert "NoNewPrivs:\t1" in status.stdout


@pytest.mark.parametrize("option", [{"user": "0"}, {"cap_drop": []}, {"read_only": False}, {"pids_limit": -1},
                                    {"security_opt": []}, {"working_dir": "/"}])
def test_the_confinement_cannot_be_configured_away(option: dict[str, object]) -> None:
    with pytest.raises(InvalidSpec, match="create_options may not set"):
        DockerBackend("x", create_options=option)


@pytest.mark.parametrize("image", ["attacker/x", "busybox", "docker.io/library/busybox:latest"])
async def test_a_short_name_does_not_slip_past_the_allowed_registries(image: str) -> None:
    backend = DockerBackend("policy", base_url="tcp://127.0.0.1:9",
                            policy=DockerPolicy(allowed_registries=("ghcr.io",), default_image="hiclaw/worker-agent:1"))
    with pytest.raises(PolicyViolation, match=r"docker\.io"):
        await backend.create(WorkerSpec("alice", image, WORKER_COMMAND))
    await backend.close()

"""A Kubernetes worker runs under the restricted Pod Security Standard, with limits, behind a
NetworkPolicy, and only from allowed images. What the backend makes is read back from the API
server (the fake one validates every object against the official schemas, strictly)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import yaml
from kubernetes.aio import client

from backends.base import Resources, WorkerSpec
from backends.errors import PolicyViolation
from backends.kubernetes import KubernetesBackend
from backends.policy import ImagePolicy
from tests.fixtures.backends import WORKER_COMMAND, kubernetes_backend, owned, unique
from tests.fixtures.k8s import KubeTarget
from tests.integration.deploy.manifests import MANIFESTS


@pytest.fixture
async def backend(kube: KubeTarget) -> AsyncIterator[KubernetesBackend]:
    async with owned(kubernetes_backend(kube, unique("sec-"), registries=("docker.io",))) as backend:
        yield backend


async def test_the_pod_template_is_restricted_and_limited(backend: KubernetesBackend, kube: KubeTarget,
                                                          kube_api: Any) -> None:
    spec = WorkerSpec(unique(), kube.image_v1, WORKER_COMMAND, {"GREETING": "hi"},
                      resources=Resources(cpu_limit="1", memory_limit="1Gi", cpu_request="100m",
                                          memory_request="256Mi"))
    await backend.create(spec)
    await backend.start(spec.name)
    apps = client.AppsV1Api(kube_api)
    deployment = await apps.read_namespaced_deployment(f"hiclaw-worker-{spec.name}", kube.namespace)
    pod = deployment.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    assert pod.security_context.run_as_user == 10001
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    assert pod.automount_service_account_token is False
    [container] = pod.containers
    context = container.security_context
    assert (context.run_as_non_root, context.allow_privilege_escalation, context.read_only_root_filesystem) == \
        (True, False, True)
    assert context.capabilities.drop == ["ALL"]
    assert not context.capabilities.add
    assert context.seccomp_profile.type == "RuntimeDefault"
    assert container.resources.limits == {"cpu": "1", "memory": "1Gi"}
    assert container.resources.requests == {"cpu": "100m", "memory": "256Mi"}
    assert {m.mount_path for m in container.volume_mounts} == {"/tmp", "/home/worker"}


@pytest.mark.parametrize("image", ["attacker/x", "ghcr.io/acme/worker:1", "evil.example.com/docker.io/x"])
async def test_the_image_policy_applies_here_too(kube: KubeTarget, image: str) -> None:
    backend = KubernetesBackend("policy", namespace=kube.namespace, kubeconfig=kube.kubeconfig,
                                policy=ImagePolicy(allowed_registries=("docker.io/library/*",)))
    with pytest.raises(PolicyViolation, match="is not allowed"):
        await backend.create(WorkerSpec("alice", image, WORKER_COMMAND))
    await backend.close()


async def test_the_workers_network_policy_is_accepted_by_the_api_server(kube: KubeTarget, kube_api: Any) -> None:
    """Egress to the homeserver, gateway and object store (and DNS) only; no ingress at all."""
    manifest = yaml.safe_load((MANIFESTS / "networkpolicy-workers.yaml").read_text())
    manifest["metadata"]["namespace"] = kube.namespace
    manifest["metadata"]["name"] = unique("hiclaw-workers-")
    networking = client.NetworkingV1Api(kube_api)
    await networking.create_namespaced_network_policy(kube.namespace, manifest)
    try:
        stored = await networking.read_namespaced_network_policy(manifest["metadata"]["name"], kube.namespace)
        assert sorted(stored.spec.policy_types) == ["Egress", "Ingress"]
        assert not stored.spec.ingress
        [selector] = stored.spec.pod_selector.match_expressions
        assert (selector.key, selector.operator) == ("hiclaw.io/worker", "Exists")
        peers = [peer.pod_selector.match_labels for peer in stored.spec.egress[0].to]
        assert peers == [{"hiclaw.io/role": "homeserver"}, {"hiclaw.io/role": "gateway"},
                         {"hiclaw.io/role": "object-store"}]
        assert {port.port for port in stored.spec.egress[1].ports} == {53}
    finally:
        await networking.delete_namespaced_network_policy(manifest["metadata"]["name"], kube.namespace)

"""What only the Kubernetes backend promises: the objects it makes, scale-based sleep, rollback.

These tests run unchanged against a real cluster when ``KUBECONFIG`` is set (see
``tests/fixtures/k8s.py``); the few assertions on the fake's request log or knobs are skipped there.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.aio import client

from backends.base import LABEL_WORKER, WorkerSpec, WorkerState
from backends.errors import Conflict, InvalidSpec, TransientBackendError, Unavailable, UpdateFailed
from backends.kubernetes import KubernetesBackend
from tests.fakes.k8s_apiserver import FakeKubeApiServer
from tests.fixtures.backends import WORKER_COMMAND, eventually, kubernetes_backend, unique
from tests.fixtures.k8s import KubeTarget
from tests.integration.backends.conftest import Harness, kube_images


@pytest.fixture
async def k8s(kube: KubeTarget) -> AsyncIterator[Harness]:
    async with Harness.opened("kubernetes", lambda instance: kubernetes_backend(kube, instance),
                              kube_images(kube)) as harness:
        yield harness


@pytest.fixture
def raw(kube_api: Any) -> tuple[Any, Any]:
    """(AppsV1Api, CoreV1Api) of the official client, to look at what the backend made."""
    return client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)


def only_fake(kube: KubeTarget) -> FakeKubeApiServer:
    if kube.fake is None:
        pytest.skip("asserts on the fake API server's request log")
    return kube.fake


async def worker_objects(raw: tuple[Any, Any], kube: KubeTarget, name: str) -> tuple[list[Any], list[Any]]:
    _, core = raw
    selector = f"{LABEL_WORKER}={name}"
    secrets = (await core.list_namespaced_secret(kube.namespace, label_selector=selector)).items
    pods = (await core.list_namespaced_pod(kube.namespace, label_selector=selector)).items
    return secrets, pods


async def test_environment_lives_in_a_secret(k8s: Harness, kube: KubeTarget, raw: tuple[Any, Any]) -> None:
    name = unique()
    spec = WorkerSpec(name, kube.image_v1, WORKER_COMMAND, {"TOKEN": "s3cret-token"})
    await k8s.backend.create(spec)
    apps, core = raw
    deployment = await apps.read_namespaced_deployment(f"hiclaw-worker-{name}", kube.namespace)
    assert "s3cret-token" not in json.dumps(apps.api_client.sanitize_for_serialization(deployment))
    container = deployment.spec.template.spec.containers[0]
    assert container.env_from[0].secret_ref.name == f"hiclaw-worker-{name}-env-{spec.spec_hash}"
    secret = await core.read_namespaced_secret(container.env_from[0].secret_ref.name, kube.namespace)
    assert base64.b64decode(secret.data["TOKEN"]) == b"s3cret-token"
    strategy = deployment.spec.strategy.rolling_update
    assert (deployment.spec.replicas, strategy.max_surge, strategy.max_unavailable) == (0, 1, 0)


async def test_failed_rollout_is_rolled_back(k8s: Harness, kube: KubeTarget, raw: tuple[Any, Any]) -> None:
    name = unique()
    old = await k8s.running(k8s.spec(name))
    with pytest.raises(UpdateFailed, match="rolled back to its previous version"):
        await k8s.backend.update(name, k8s.failing_spec(name))
    apps, _ = raw
    deployment = await apps.read_namespaced_deployment(f"hiclaw-worker-{name}", kube.namespace)
    assert deployment.spec.template.spec.containers[0].image == old.image
    assert deployment.metadata.labels["hiclaw.io/spec-hash"] == old.spec_hash
    secrets, _ = await worker_objects(raw, kube, name)
    assert [s.metadata.name for s in secrets] == [f"hiclaw-worker-{name}-env-{old.spec_hash}"]
    if kube.fake is not None:
        patches = [r for r in kube.fake.requests if r.method == "PATCH" and r.path.endswith(f"hiclaw-worker-{name}")]
        assert [r.content_type for r in patches] == ["application/json-patch+json"] * 2


async def test_update_waits_for_the_new_pod_to_be_available(k8s: Harness, kube: KubeTarget) -> None:
    fake = only_fake(kube)
    name = unique()
    await k8s.running(k8s.spec(name))
    fake.cluster.ready_delay = 1.0
    try:
        started = time.monotonic()
        new = k8s.spec(name, version=2)
        await k8s.backend.update(name, new)
        assert time.monotonic() - started >= 1.0
    finally:
        fake.cluster.ready_delay = fake.ready_delay
    status = await k8s.backend.status(name)
    assert (status.state, status.spec_hash, status.detail) == (WorkerState.RUNNING, new.spec_hash, "")


async def test_sleep_and_wake_go_through_scale(k8s: Harness, kube: KubeTarget, raw: tuple[Any, Any]) -> None:
    name = unique()
    await k8s.running(k8s.spec(name))
    await k8s.backend.stop(name)
    assert (await k8s.backend.status(name)).state == WorkerState.STOPPED
    _, pods = await eventually(lambda: worker_objects(raw, kube, name), lambda found: not found[1], 30)
    assert pods == []
    assert await k8s.backend.logs(name) == ""  # asleep: no pod, no logs
    await k8s.backend.start(name)
    await k8s.wait_for(name, WorkerState.RUNNING)
    if kube.fake is not None:
        writes = [(r.method, r.path.rsplit("/", 1)[-1], r.content_type, r.body) for r in kube.fake.requests
                  if r.method in ("PATCH", "PUT") and f"hiclaw-worker-{name}" in r.path]
        assert writes == [("PATCH", "scale", "application/strategic-merge-patch+json", {"spec": {"replicas": r}})
                          for r in (1, 0, 1)]


async def test_delete_takes_secrets_and_pods(k8s: Harness, kube: KubeTarget, raw: tuple[Any, Any]) -> None:
    name = unique()
    await k8s.running(k8s.spec(name))
    await k8s.backend.update(name, k8s.spec(name, version=2))
    await k8s.backend.delete(name)
    secrets, pods = await eventually(lambda: worker_objects(raw, kube, name), lambda found: not found[1], 30)
    assert (secrets, pods) == ([], [])


async def test_another_instances_deployment_is_not_ours(k8s: Harness) -> None:
    name = unique()
    other = k8s.another_instance()
    await other.create(k8s.spec(name))
    with pytest.raises(Conflict, match="another bot instance"):
        await k8s.backend.create(k8s.spec(name))
    for call in (lambda: k8s.backend.delete(name), lambda: k8s.backend.status(name), lambda: k8s.backend.start(name)):
        with pytest.raises(Conflict):
            await call()
    assert await k8s.backend.list() == []


async def test_exec_speaks_the_websocket_protocol(k8s: Harness, kube: KubeTarget) -> None:
    name = unique()
    await k8s.running(k8s.spec(name))
    result = await k8s.backend.exec(name, ["sh", "-c", "echo a b; exit 7"], 10)
    assert (result.exit_code, result.stdout) == (7, "a b\n")
    fake = only_fake(kube)
    exec_request = [r for r in fake.requests if r.path.endswith("/exec")][-1]
    assert exec_request.query["command"] == ["sh", "-c", "echo a b; exit 7"]
    assert exec_request.query["container"] == ["worker"]


async def test_names_are_checked_before_any_request(k8s: Harness, kube: KubeTarget) -> None:
    fake = only_fake(kube)
    await k8s.backend.list()  # connected
    before = len(fake.requests)
    for call in (lambda: k8s.backend.status("Bad_Name"), lambda: k8s.backend.start("-x"),
                 lambda: k8s.backend.delete("a" * 64)):
        with pytest.raises(InvalidSpec):
            await call()
    assert len(fake.requests) == before


async def test_server_errors_are_transient(k8s: Harness, kube: KubeTarget) -> None:
    fake = only_fake(kube)
    name = unique()
    await k8s.backend.create(k8s.spec(name))
    fake.fail("GET", rf"/deployments/hiclaw-worker-{name}$", 503)
    with pytest.raises(TransientBackendError):
        await k8s.backend.status(name)
    assert (await k8s.backend.status(name)).state == WorkerState.STOPPED


async def test_an_unreachable_api_server_is_unavailable(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    backend = KubernetesBackend("x", kubeconfig=kubeconfig)
    with pytest.raises(Unavailable) as failed:
        await backend.status("alice")
    assert failed.value.transient
    await backend.close()
    with pytest.raises(Unavailable, match="cluster configuration"):
        await KubernetesBackend("x", kubeconfig=tmp_path / "missing").status("alice")
